import MarkdownIt from 'markdown-it';

/**
 * Markdown of full descriptions and comments (issue 14): CommonMark with raw HTML off (a `<script>`
 * is text), links only to http(s), mailto and same-site paths (no `javascript:`, `data:`,
 * `vbscript:`, `file:` or any other scheme), images only from this site (the Content-Security-Policy
 * says the same), links marked nofollow/ugc and opened without a referrer window handle.
 */
/** Longest Markdown rendered; a longer text is cut (the forms do not accept more). */
export const MAX_MARKDOWN = 25_000;

const SAFE_LINK = /^(https?:|mailto:|\/(?!\/)|#|\?|\.{0,2}\/?[^:]*$)/i;

function safeUrl(url: string): boolean {
  // markdown-it has normalised the URL; judge what a browser would see (entity-decoded, trimmed,
  // without control characters or whitespace that browsers strip from a scheme)
  const plain = url.replace(/[\u0000-\u0020\u007f-\u009f]/g, '');
  return SAFE_LINK.test(plain);
}

const md = new MarkdownIt('default', { html: false, linkify: true, typographer: false, breaks: false });
md.validateLink = safeUrl;
// headings inside a description sit below the page's own h1/h2
md.renderer.rules.heading_open = (tokens, idx, options, _env, self) => {
  const t = tokens[idx]!;
  const level = Math.min(6, Number(t.tag.slice(1)) + 2);
  t.tag = `h${level}`;
  return self.renderToken(tokens, idx, options);
};
md.renderer.rules.heading_close = (tokens, idx, options, _env, self) => {
  const t = tokens[idx]!;
  const level = Math.min(6, Number(t.tag.slice(1)) + 2);
  t.tag = `h${level}`;
  return self.renderToken(tokens, idx, options);
};
md.renderer.rules.link_open = (tokens, idx, options, _env, self) => {
  tokens[idx]!.attrSet('rel', 'nofollow ugc noopener noreferrer');
  return self.renderToken(tokens, idx, options);
};

/** Safe HTML for a Markdown text. */
export function renderMarkdown(text: string): string {
  return md.render(text.slice(0, MAX_MARKDOWN));
}
