import type { ComponentChildren, VNode } from 'preact';
import { renderToString } from 'preact-render-to-string';
import type { User } from '../db/users.js';
import { SCRIPT, STYLE } from './assets.js';

/** What every page knows of the request. */
export interface PageContext {
  readonly user: User | undefined;
  readonly csrf: string;
  /** The path of this page (for the login link's return and the current nav item). */
  readonly path: string;
  readonly signup: boolean;
}

/** The full document: doctype, head, header with search, main landmark, footer. */
export function renderPage(p: PageContext, title: string, body: VNode, opts: { query?: string; flash?: Flash } = {}): string {
  return (
    '<!doctype html>' +
    renderToString(
      <Layout p={p} title={title} query={opts.query} flash={opts.flash}>
        {body}
      </Layout>,
    )
  );
}

export interface Flash {
  readonly kind: 'ok' | 'error';
  readonly text: string;
}

function Layout(props: { p: PageContext; title: string; query: string | undefined; flash: Flash | undefined; children: ComponentChildren }): VNode {
  const { p } = props;
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="color-scheme" content="light dark" />
        <meta name="csrf-token" content={p.csrf} />
        <title>{`${props.title} · legacy-registry`}</title>
        <link rel="stylesheet" href={STYLE.path} />
        <script src={SCRIPT.path} defer></script>
      </head>
      <body>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <div class="wrap">
            <a class="brand" href="/">
              <span class="logo" aria-hidden="true">
                lr
              </span>
              legacy-registry
            </a>
            <nav class="main" aria-label="Main">
              <a href="/" aria-current={p.path === '/' ? 'page' : undefined}>
                Explore
              </a>
            </nav>
            <form class="search" role="search" action="/search" method="get">
              <label class="sr-only" for="q-top">
                Search repositories
              </label>
              <input id="q-top" type="search" name="q" placeholder="Search repositories" value={props.query ?? ''} maxLength={256} />
              <button type="submit" class="secondary">
                Search
              </button>
            </form>
            <div class="user">
              {p.user ? (
                <>
                  <a href={`/u/${p.user.username}/`}>{p.user.username}</a>
                  <a href="/account">Account</a>
                  {p.user.admin ? <a href="/admin/users">Admin</a> : null}
                  <form method="post" action="/logout">
                    <input type="hidden" name="_csrf" value={p.csrf} />
                    <button type="submit" class="link">
                      Log out
                    </button>
                  </form>
                </>
              ) : (
                <>
                  <a href={`/login${p.path !== '/' && p.path !== '/login' ? `?next=${encodeURIComponent(p.path)}` : ''}`}>Log in</a>
                  {p.signup ? (
                    <a class="button" href="/signup">
                      Sign up
                    </a>
                  ) : null}
                </>
              )}
            </div>
          </div>
        </header>
        <main id="main" class="wrap">
          {props.flash ? (
            <div class={`flash ${props.flash.kind}`} role={props.flash.kind === 'error' ? 'alert' : 'status'}>
              {props.flash.text}
            </div>
          ) : null}
          {props.children}
        </main>
        <footer>
          <div class="wrap">
            legacy-registry · a Docker v1 registry and index, bridged to v2/OCI · <a href="/search">all repositories</a>
          </div>
        </footer>
      </body>
    </html>
  );
}

/** A hidden CSRF field: every form of the UI carries one. */
export function Csrf(props: { token: string }): VNode {
  return <input type="hidden" name="_csrf" value={props.token} />;
}

export function repoHref(namespace: string, name: string): string {
  return namespace === 'library' ? `/_/${name}/` : `/u/${namespace}/${name}/`;
}

export function displayName(namespace: string, name: string): string {
  return namespace === 'library' ? name : `${namespace}/${name}`;
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v < 10 ? v.toFixed(1) : Math.round(v)} ${UNITS[u]}`;
}

export function Size(props: { bytes: number | undefined }): VNode {
  if (props.bytes === undefined) return <span class="muted">–</span>;
  return (
    <span data-bytes={String(props.bytes)} title={`${props.bytes} bytes`}>
      {formatBytes(props.bytes)}
    </span>
  );
}

export function ago(d: Date, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - d.getTime()) / 1000));
  if (s < 60) return 'just now';
  const m = Math.round(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'} ago`;
  const h = Math.round(m / 60);
  if (h < 48) return `${h} hour${h === 1 ? '' : 's'} ago`;
  const days = Math.round(h / 24);
  if (days < 60) return `${days} days ago`;
  return d.toISOString().slice(0, 10);
}

export function When(props: { at: Date | undefined }): VNode {
  if (!props.at || Number.isNaN(props.at.getTime())) return <span class="muted">–</span>;
  const iso = props.at.toISOString();
  return (
    <time datetime={iso} title={`${iso.slice(0, 19).replace('T', ' ')} UTC`}>
      {ago(props.at)}
    </time>
  );
}
