import type MarkdownIt from 'markdown-it';

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

/**
 * The renderer, built at the first page that shows Markdown: markdown-it and its dependencies cost
 * ~3 MiB of resident memory that a registry whose web UI nobody opens need not hold (issue 18).
 */
let renderer: Promise<MarkdownIt> | undefined;

async function build(): Promise<MarkdownIt> {
  const { default: MarkdownItCtor } = await import('markdown-it');
  const md = new MarkdownItCtor('default', { html: false, linkify: true, typographer: false, breaks: false });
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
  return md;
}

/** The Markdown renderer: `render(text)` gives safe HTML (loaded on first use). */
export async function markdownRenderer(): Promise<(text: string) => string> {
  if (!renderer) {
    renderer = build();
    // a failed load is tried again by the next page
    renderer.catch(() => {
      renderer = undefined;
    });
  }
  const md = await renderer;
  return (text) => md.render(text.slice(0, MAX_MARKDOWN));
}
