import { createHash } from 'node:crypto';

/**
 * The UI's only static files: one stylesheet and one small script, kept here as strings so that
 * `tsc` alone builds everything (no bundler, nothing copied). Served under a content-hashed name
 * with a year's cache; the Content-Security-Policy allows nothing else (no inline script or style).
 */
const CSS = String.raw`
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --surface: #ffffff; --surface-2: #eef1f5; --text: #1b1f24; --muted: #4f5a66;
  --border: #d5dbe2; --accent: #0b5cad; --accent-text: #ffffff; --accent-soft: #e3eefb;
  --danger: #b3261e; --danger-soft: #fbe9e7; --ok: #1e6b34; --ok-soft: #e4f4e8; --warn: #7a4b00;
  --code-bg: #eef1f5; --shadow: 0 1px 2px rgba(16,24,40,.06), 0 1px 3px rgba(16,24,40,.08);
  --radius: 10px; --mono: ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, Consolas, monospace;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1216; --surface: #171b21; --surface-2: #1f252d; --text: #e6e9ee; --muted: #a6b0bc;
    --border: #2c343e; --accent: #6cb0ff; --accent-text: #0b1320; --accent-soft: #16263a;
    --danger: #ff8a80; --danger-soft: #3a1d1b; --ok: #7fd99a; --ok-soft: #16301f; --warn: #f2c46d;
    --code-bg: #1f252d; --shadow: 0 1px 2px rgba(0,0,0,.4);
  }
}
* { box-sizing: border-box; }
html { font-size: 16px; }
body { margin: 0; background: var(--bg); color: var(--text); line-height: 1.5;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", "Liberation Sans", sans-serif; }
a { color: var(--accent); text-decoration-thickness: 1px; text-underline-offset: 2px; }
a:hover { text-decoration-thickness: 2px; }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; border-radius: 4px; }
.skip { position: absolute; left: -999px; top: 0; background: var(--surface); padding: .5rem 1rem; z-index: 10; }
.skip:focus { left: 1rem; top: 1rem; }
.wrap { max-width: 1100px; margin: 0 auto; padding: 0 1.25rem; }
header.top { background: var(--surface); border-bottom: 1px solid var(--border); }
header.top .wrap { display: flex; align-items: center; gap: 1rem; min-height: 60px; flex-wrap: wrap; padding-top: .5rem; padding-bottom: .5rem; }
.brand { font-weight: 700; font-size: 1.1rem; color: var(--text); text-decoration: none; display: flex; align-items: center; gap: .5rem; }
.brand .logo { width: 28px; height: 28px; border-radius: 7px; background: var(--accent); color: var(--accent-text);
  display: inline-grid; place-items: center; font-size: .85rem; font-weight: 800; }
nav.main { display: flex; gap: 1rem; align-items: center; }
nav.main a { color: var(--text); text-decoration: none; font-weight: 500; }
nav.main a:hover, nav.main a[aria-current="page"] { color: var(--accent); }
form.search { flex: 1 1 240px; display: flex; gap: .4rem; max-width: 460px; }
.user { margin-left: auto; display: flex; gap: .75rem; align-items: center; flex-wrap: wrap; }
.user form { margin: 0; }
main.wrap { padding-top: 1.75rem; padding-bottom: 3rem; }
footer { border-top: 1px solid var(--border); color: var(--muted); font-size: .875rem; padding: 1.25rem 0 2rem; }
h1 { font-size: 1.75rem; line-height: 1.25; margin: 0 0 .5rem; }
h2 { font-size: 1.25rem; margin: 0 0 .75rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 .5rem; }
p { margin: 0 0 .75rem; }
.muted { color: var(--muted); }
.mono, code, pre, kbd { font-family: var(--mono); font-size: .875em; }
code { background: var(--code-bg); padding: .1em .35em; border-radius: 5px; }
pre { background: var(--code-bg); padding: .75rem 1rem; border-radius: 8px; overflow-x: auto; }
pre code { background: none; padding: 0; }
.card { background: var(--surface); border: 1px solid var(--border); border-radius: var(--radius); box-shadow: var(--shadow); padding: 1.25rem; margin-bottom: 1.25rem; }
.grid { display: grid; gap: 1.25rem; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
.cols { display: grid; gap: 1.25rem; grid-template-columns: minmax(0, 2fr) minmax(0, 1fr); }
@media (max-width: 860px) { .cols { grid-template-columns: minmax(0, 1fr); } .cols > .side { order: -1; } }
.hero { background: linear-gradient(135deg, var(--accent-soft), var(--surface)); border: 1px solid var(--border);
  border-radius: 14px; padding: 2rem 1.5rem; margin-bottom: 1.75rem; }
.hero h1 { font-size: 2rem; }
.hero form.search { max-width: 640px; margin-top: 1rem; }
ul.repos { list-style: none; margin: 0; padding: 0; }
ul.repos li { padding: .8rem 0; border-top: 1px solid var(--border); }
ul.repos li:first-child { border-top: 0; }
.repo-name { font-weight: 600; font-size: 1.02rem; word-break: break-word; }
.meta { display: flex; gap: .9rem; flex-wrap: wrap; color: var(--muted); font-size: .875rem; margin-top: .2rem; }
.badge { display: inline-block; font-size: .75rem; font-weight: 600; padding: .1rem .5rem; border-radius: 999px;
  border: 1px solid var(--border); background: var(--surface-2); color: var(--muted); vertical-align: middle; }
.badge.official { background: var(--accent-soft); color: var(--accent); border-color: transparent; }
.badge.private { background: var(--danger-soft); color: var(--danger); border-color: transparent; }
.badge.v1 { background: var(--ok-soft); color: var(--ok); border-color: transparent; }
.badge.v2 { background: var(--accent-soft); color: var(--accent); border-color: transparent; }
input[type=text], input[type=search], input[type=password], input[type=email], select, textarea {
  font: inherit; color: var(--text); background: var(--surface); border: 1px solid var(--border); border-radius: 8px;
  padding: .5rem .7rem; width: 100%; }
textarea { min-height: 8rem; resize: vertical; font-family: var(--mono); font-size: .9rem; }
label { display: block; font-weight: 600; margin: .75rem 0 .3rem; }
.hint { color: var(--muted); font-size: .85rem; margin-top: .25rem; }
button, .button { font: inherit; font-weight: 600; cursor: pointer; border-radius: 8px; padding: .5rem .95rem;
  border: 1px solid var(--accent); background: var(--accent); color: var(--accent-text); text-decoration: none; display: inline-block; }
button.secondary, .button.secondary { background: var(--surface); color: var(--accent); border-color: var(--border); }
button.danger { background: var(--danger); border-color: var(--danger); color: #fff; }
@media (prefers-color-scheme: dark) { button.danger { color: #1b0f0e; } }
button.link { background: none; border: 0; color: var(--accent); padding: 0; font-weight: 500; text-decoration: underline; }
button:disabled { opacity: .6; cursor: default; }
.row { display: flex; gap: .6rem; align-items: end; flex-wrap: wrap; }
.row > * { flex: 1 1 160px; }
.row > button { flex: 0 0 auto; }
fieldset { border: 1px solid var(--border); border-radius: 8px; padding: .5rem 1rem 1rem; margin: .75rem 0; }
legend { font-weight: 600; padding: 0 .3rem; }
.radio { display: flex; gap: .5rem; align-items: baseline; font-weight: 400; margin: .4rem 0; }
.radio input { margin: 0; }
table { width: 100%; border-collapse: collapse; font-size: .92rem; }
th, td { text-align: left; padding: .55rem .6rem; border-bottom: 1px solid var(--border); vertical-align: top; }
th { font-size: .8rem; text-transform: uppercase; letter-spacing: .03em; color: var(--muted); }
td.num, th.num { text-align: right; white-space: nowrap; }
.table-wrap { overflow-x: auto; }
.digest { font-family: var(--mono); font-size: .82rem; word-break: break-all; }
.cmd { font-family: var(--mono); font-size: .82rem; white-space: pre-wrap; word-break: break-word; }
.pull { display: flex; gap: .25rem .5rem; align-items: center; margin: .6rem 0; flex-wrap: wrap; }
.pull code { flex: 1 1 0; min-width: 0; padding: .5rem .7rem; white-space: pre-wrap; word-break: break-all; display: block; }
.pull .label { width: 100%; font-size: .85rem; color: var(--muted); }
.flash { border-radius: 8px; padding: .7rem 1rem; margin-bottom: 1.25rem; border: 1px solid transparent; }
.flash.ok { background: var(--ok-soft); color: var(--ok); }
.flash.error { background: var(--danger-soft); color: var(--danger); }
.tabs { display: flex; gap: .25rem; border-bottom: 1px solid var(--border); margin-bottom: 1.25rem; flex-wrap: wrap; }
.tabs a { padding: .5rem .9rem; text-decoration: none; color: var(--muted); border-bottom: 2px solid transparent; font-weight: 600; }
.tabs a[aria-current="page"] { color: var(--accent); border-color: var(--accent); }
.repo-head { display: flex; justify-content: space-between; gap: 1rem; align-items: flex-start; flex-wrap: wrap; margin-bottom: 1.25rem; }
.repo-head h1 { word-break: break-word; }
.star { display: flex; align-items: center; gap: .5rem; }
.star form { margin: 0; }
.count { font-weight: 700; }
.markdown { overflow-wrap: anywhere; }
.markdown img { max-width: 100%; }
.comments { list-style: none; padding: 0; margin: 0 0 1rem; }
.comments li { border-top: 1px solid var(--border); padding: .75rem 0; }
.comments li:first-child { border-top: 0; }
.pager { display: flex; gap: .75rem; align-items: center; margin-top: 1rem; }
.danger-zone { border-color: var(--danger); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .35rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; word-break: break-all; }
.narrow { max-width: 440px; margin: 0 auto; }
.empty { color: var(--muted); padding: .75rem 0; }
.sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px; overflow: hidden; clip: rect(0,0,0,0); border: 0; }
`;

const JS = String.raw`
(function () {
  'use strict';
  var csrf = document.querySelector('meta[name="csrf-token"]');
  // copy buttons: the text of the element named by data-copy
  document.addEventListener('click', function (ev) {
    var b = ev.target.closest && ev.target.closest('button[data-copy]');
    if (!b) return;
    var el = document.getElementById(b.getAttribute('data-copy'));
    if (!el || !navigator.clipboard) return;
    navigator.clipboard.writeText(el.textContent.trim()).then(function () {
      var old = b.textContent;
      b.textContent = 'Copied';
      setTimeout(function () { b.textContent = old; }, 1500);
    });
  });
  // star without a reload; the form still works without this script
  document.addEventListener('submit', function (ev) {
    var f = ev.target;
    if (f.matches('form[data-confirm]') && !window.confirm(f.getAttribute('data-confirm'))) { ev.preventDefault(); return; }
    if (!f.matches('form.js-star') || !window.fetch) return;
    ev.preventDefault();
    var body = new URLSearchParams(new FormData(f));
    var button = f.querySelector('button');
    button.disabled = true;
    fetch(f.action, { method: 'POST', body: body, credentials: 'same-origin',
      headers: { 'Accept': 'application/json', 'X-CSRF-Token': csrf ? csrf.content : '' } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (s) {
        f.querySelector('input[name="star"]').value = s.starred ? '0' : '1';
        button.textContent = s.starred ? 'Unstar' : 'Star';
        button.setAttribute('aria-pressed', s.starred ? 'true' : 'false');
        var c = document.getElementById('star-count');
        if (c) c.textContent = String(s.stars);
      })
      .catch(function () { f.submit(); })
      .then(function () { button.disabled = false; });
  });
})();
`;

const hash = (s: string): string => createHash('sha256').update(s).digest('hex').slice(0, 12);

export interface Asset {
  readonly path: string;
  readonly type: string;
  readonly body: Buffer;
}

export const STYLE: Asset = { path: `/static/app-${hash(CSS)}.css`, type: 'text/css; charset=utf-8', body: Buffer.from(CSS) };
export const SCRIPT: Asset = { path: `/static/app-${hash(JS)}.js`, type: 'text/javascript; charset=utf-8', body: Buffer.from(JS) };
export const ASSETS: ReadonlyMap<string, Asset> = new Map([STYLE, SCRIPT].map((a) => [a.path, a]));
