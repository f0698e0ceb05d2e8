import type { Context, Next } from 'koa';
import Router from '@koa/router';
import type { ComponentChildren, VNode } from 'preact';
import type { Config } from '../config/schema.js';
import { isRegistryError, RegistryError } from '../errors/index.js';
import type { Logger } from '../log/logger.js';
import { isReservedNamespace, type IndexService } from '../index/service.js';
import { clientAddress } from '../http/app.js';
import { readRawBody } from '../http/body.js';
import { endpointsHeader } from '../registry/standalone-index.js';
import { indexRepoName, type RepoName } from '../content/names.js';
import {
  addCollaborator,
  addComment,
  isStarred,
  listCollaborators,
  listComments,
  listTaggedImages,
  removeCollaborator,
  saveRepository,
  starRepository,
  unstarRepository,
  type Repository,
} from '../db/repositories.js';
import { findUserByName, listUsers, saveUser, setActive, setPassword, type User } from '../db/users.js';
import {
  addMember,
  changeMemberKeepingOwner,
  findMemberRole,
  findOrganizationByName,
  listMembers,
  listOrganizationsForUser,
  saveOrganization,
} from '../db/organizations.js';
import { DbConflictError } from '../db/errors.js';
import { searchRepositories } from '../db/search.js';
import { countComments, findFullDescription, listVisibleRepositories, namespaceKind, saveFullDescription, type RepoSummary } from '../db/web.js';
import type { SearchVisibility } from '../db/search.js';
import { ASSETS } from './assets.js';
import type { RepoContent } from './content.js';
import { renderPage, type Flash, type PageContext } from './layout.js';
import { markdownRenderer, MAX_MARKDOWN } from './markdown.js';
import {
  AccountPage,
  AdminUsersPage,
  ExplorePage,
  LoginPage,
  MessagePage,
  NamespacePage,
  RepoPage,
  SearchPage,
  SettingsPage,
  SettingsTabs,
  SignupPage,
  TagPage,
  type RepoView,
} from './pages.js';
import { Sessions, type WebIdentity } from './session.js';
import { CONTROL_CHARS } from '../util/text.js';

/**
 * A tab of a repository's settings page contributed by another module (the webhooks issue plugs
 * in here): shown only to those who may administer the repository, its form posts checked for
 * CSRF and rights before `post` runs. See docs/web-ui.md.
 */
export interface SettingsTab {
  readonly id: string;
  readonly title: string;
  render(input: SettingsTabInput): Promise<ComponentChildren>;
  /**
   * A form posted to `…/settings/<id>` (CSRF and rights already checked); the browser is then sent
   * back to the tab with "Saved.". Throw to refuse: a RegistryError's status and message are shown.
   */
  post?(input: SettingsTabInput & { readonly form: URLSearchParams }): Promise<void>;
}

export interface SettingsTabInput {
  readonly repo: Repository;
  readonly user: User;
  /** The hidden field every form of the tab must carry: `<input type="hidden" name="_csrf" value={csrf}>`. */
  readonly csrf: string;
  /** The URL forms of the tab post to. */
  readonly action: string;
}

export interface WebDeps {
  readonly config: Config;
  readonly index: IndexService;
  readonly log: Logger;
  /** Stored content (tags, digests, layers): present when the registry runs in this process. */
  readonly content?: RepoContent;
  /** Remove a deleted repository's content from storage (v1 and v2), as DELETE /v1/repositories does. */
  readonly removeContent?: (name: RepoName) => Promise<void>;
  /** Extra settings tabs (webhooks); none by default. */
  readonly settingsTabs?: readonly SettingsTab[];
}

/** A page's status and message for the error page. */
class WebError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const notFoundError = (): WebError => new WebError(404, 'Not found', 'There is nothing here, or nothing you may see.');

/** Strict policy: our own script and stylesheet only, no inline code, no framing, forms to us. */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "base-uri 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** Form bodies (percent-encoded UTF-8: up to 12 bytes a character): small, except the descriptions form. */
const FORM_LIMIT = 128 * 1024;
const SETTINGS_FORM_LIMIT = 12 * MAX_MARKDOWN + 16 * 1024;
const MAX_PAGE = 10_000;
/** Tags on a page of the repository and settings pages (each read from storage: see RepoContent.tagPage). */
const TAG_PAGE_SIZE = 100;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

const FLASH: Record<string, Flash> = {
  saved: { kind: 'ok', text: 'Saved.' },
  commented: { kind: 'ok', text: 'Comment posted.' },
  'tag-deleted': { kind: 'ok', text: 'Tag deleted.' },
  'collab-added': { kind: 'ok', text: 'Collaborator saved.' },
  'collab-removed': { kind: 'ok', text: 'Collaborator removed.' },
  'password-changed': { kind: 'ok', text: 'Password changed. Every other session of this account has ended.' },
  'email-saved': { kind: 'ok', text: 'Email saved.' },
  'org-created': { kind: 'ok', text: 'Organization created.' },
  'member-saved': { kind: 'ok', text: 'Member saved.' },
  'member-removed': { kind: 'ok', text: 'Member removed.' },
  'repo-deleted': { kind: 'ok', text: 'Repository deleted.' },
  welcome: { kind: 'ok', text: 'Welcome! Your account is ready.' },
  'user-saved': { kind: 'ok', text: 'Account updated.' },
};

function pageNumber(v: unknown): number {
  const n = typeof v === 'string' ? Number(v) : 1;
  return Number.isFinite(n) ? Math.min(MAX_PAGE, Math.max(1, Math.trunc(n))) : 1;
}

/** Only a path of this site (never `//host`, never a scheme): no open redirects. */
function localPath(v: string | null | undefined): string {
  return typeof v === 'string' && /^\/(?![/\\])[^\s]*$/.test(v) && v.length <= 2048 ? v : '/';
}

const visibilityOf = (user: User | undefined): SearchVisibility => (user ? { userId: user.id, admin: user.admin } : {});

interface State {
  identity: WebIdentity;
  form: URLSearchParams;
}

export function webRouter(deps: WebDeps): Router {
  const { config, index, log } = deps;
  const db = index.db;
  const sessions = new Sessions(db, { ttl: config.web_session_ttl, maxAge: config.web_session_max_age, secure: config.tls_certificate !== null }, log);
  const router = new Router();
  const tabs = deps.settingsTabs ?? [];

  const pageContext = (ctx: Context): PageContext => {
    const id = (ctx.state as State).identity;
    return { user: id.user, csrf: id.csrf, path: ctx.path, signup: config.signup };
  };

  const send = (ctx: Context, status: number, title: string, body: VNode, opts: { query?: string; flash?: Flash } = {}): void => {
    ctx.status = status;
    ctx.type = 'text/html; charset=utf-8';
    const code = typeof ctx.query.m === 'string' ? FLASH[ctx.query.m] : undefined;
    ctx.body = renderPage(pageContext(ctx), title, body, { ...opts, flash: opts.flash ?? code });
  };

  const redirect = (ctx: Context, to: string, message?: string): void => {
    ctx.status = 303;
    ctx.redirect(message ? `${to}${to.includes('?') ? '&' : '?'}m=${message}` : to);
  };

  /**
   * Every UI handler: security headers, who is browsing, errors as HTML pages; for POST, the form
   * (bounded), the same-origin check and the CSRF token before the handler runs.
   */
  const handle =
    (fn: (ctx: Context, id: WebIdentity) => Promise<void>, opts: { formLimit?: number } = {}) =>
    async (ctx: Context): Promise<void> => {
      ctx.set('Content-Security-Policy', CSP);
      ctx.set('X-Frame-Options', 'DENY');
      ctx.set('Referrer-Policy', 'same-origin');
      ctx.set('Cache-Control', 'no-store');
      ctx.vary('Cookie');
      let identity: WebIdentity = { user: undefined, session: undefined, csrf: '' };
      (ctx.state as State).identity = identity;
      try {
        identity = await sessions.identify(ctx);
        (ctx.state as State).identity = identity;
        if (ctx.method === 'POST') {
          const origin = ctx.get('Origin');
          if (origin && origin !== 'null' && origin !== `${ctx.protocol}://${ctx.host}`) throw csrfRefused();
          const type = ctx.get('Content-Type').split(';')[0]!.trim().toLowerCase();
          if (type !== 'application/x-www-form-urlencoded') throw new WebError(415, 'Unsupported form', 'Forms are sent as application/x-www-form-urlencoded.');
          const form = new URLSearchParams((await readRawBody(ctx, opts.formLimit ?? FORM_LIMIT)).toString('utf8'));
          (ctx.state as State).form = form;
          // no stored text holds NUL (PostgreSQL refuses it): a form carrying one is refused whole
          for (const [k, v] of form) if (k.includes('\0') || v.includes('\0')) throw new WebError(400, 'Form refused', 'The form holds a NUL character.');
          const token = form.get('_csrf') ?? (ctx.get('X-CSRF-Token') || undefined);
          if (!sessions.checkCsrf(ctx, identity, token ?? undefined)) throw csrfRefused();
        }
        await fn(ctx, identity);
      } catch (e) {
        renderError(ctx, e);
      }
    };

  const csrfRefused = (): WebError =>
    new WebError(
      403,
      'Form refused',
      'This form did not come from a page of this site, or it expired (missing or wrong CSRF token). Go back, reload the page and try again.',
    );

  const renderError = (ctx: Context, e: unknown): void => {
    let err: WebError;
    if (e instanceof WebError) err = e;
    else if (isRegistryError(e)) {
      err = new WebError(e.status, e.status === 413 ? 'Too large' : e.status === 404 ? 'Not found' : 'Refused', e.message, e.headers);
    } else {
      log.error('web UI request failed', { id: ctx.state.requestId, method: ctx.method, path: ctx.path, err: e });
      err = new WebError(500, 'Something went wrong', `The server could not answer (request ${String(ctx.state.requestId)}).`);
    }
    for (const [k, v] of Object.entries(err.headers)) ctx.set(k, v);
    if (ctx.headerSent) return;
    if (ctx.accepts(['html', 'json']) === 'json' && ctx.get('Accept').includes('json')) {
      ctx.status = err.status;
      ctx.type = 'application/json; charset=utf-8';
      ctx.body = JSON.stringify({ error: err.message });
      return;
    }
    send(ctx, err.status, err.title, <MessagePage title={err.title} text={err.message} link={{ href: '/', text: 'Back to explore' }} />);
  };

  const form = (ctx: Context): URLSearchParams => (ctx.state as State).form;
  const requireUser = (ctx: Context, id: WebIdentity): User => {
    if (!id.user) throw new WebError(401, 'Log in first', 'This page needs an account.');
    return id.user;
  };

  // ---------------------------------------------------------------------------------------------
  // Static files

  router.get('/static/:file', async (ctx, next) => {
    const asset = ASSETS.get(ctx.path);
    if (!asset) return next();
    ctx.set('Cache-Control', 'public, max-age=31536000, immutable');
    ctx.type = asset.type;
    ctx.body = asset.body;
  });

  // ---------------------------------------------------------------------------------------------
  // Explore, search, namespaces

  // GET / stays the registry's answer for API clients (`"docker-registry server"`); browsers,
  // which ask for HTML, get the explore page.
  router.get('/', async (ctx: Context, next: Next) => {
    if (!/text\/html/i.test(ctx.get('Accept'))) return next();
    await handle(async (c, id) => {
      const vis = visibilityOf(id.user);
      const [official, recent, starred] = await Promise.all([
        listVisibleRepositories(db, { visibleTo: vis, namespace: 'library', order: 'stars', pageSize: 6, count: false }),
        listVisibleRepositories(db, { visibleTo: vis, order: 'updated', pageSize: 6, count: false }),
        listVisibleRepositories(db, { visibleTo: vis, order: 'stars', pageSize: 6, count: false }),
      ]);
      send(c, 200, 'Explore', <ExplorePage official={official.items} recent={recent.items} starred={starred.items} />);
    })(ctx);
  });

  router.get(
    '/search',
    handle(async (ctx, id) => {
      const q = typeof ctx.query.q === 'string' ? ctx.query.q.slice(0, 256) : '';
      const page = pageNumber(ctx.query.page);
      const pageSize = 25;
      // the same search, ranking and access filter as /v1/search (src/index/routes.ts)
      const res = CONTROL_CHARS.test(q)
        ? { total: 0, results: [] }
        : await searchRepositories(db, { query: q, page, pageSize, visibleTo: visibilityOf(id.user) });
      const results: RepoSummary[] = res.results.map((r) => ({
        namespace: r.namespace,
        name: r.name,
        description: r.description,
        starCount: r.star_count,
        private: r.private,
        updatedAt: new Date(NaN),
      }));
      const pages = Math.max(1, Math.ceil(res.total / pageSize));
      send(ctx, 200, q ? `Search: ${q}` : 'All repositories', <SearchPage query={q} total={res.total} page={page} pages={pages} results={results} />, {
        query: q,
      });
    }),
  );

  const namespacePage = async (ctx: Context, id: WebIdentity, ns: string): Promise<void> => {
    const kind = await namespaceKind(db, ns);
    if (!kind) throw notFoundError();
    const page = pageNumber(ctx.query.page);
    const pageSize = 25;
    const list = await listVisibleRepositories(db, { visibleTo: visibilityOf(id.user), namespace: ns, order: 'name', page, pageSize });
    let members;
    let owner = false;
    if (kind === 'organization' && id.user) {
      const org = await findOrganizationByName(db, ns);
      const role = org ? await findMemberRole(db, org.id, id.user.id) : undefined;
      // members are shown to members (and admins), managed by owners (and admins)
      if (org && (role || id.user.admin)) {
        members = await listMembers(db, org.id);
        owner = role === 'owner' || id.user.admin;
      }
    }
    if (kind !== 'user' && kind !== 'organization' && list.total === 0) throw notFoundError();
    send(
      ctx,
      200,
      ns,
      <NamespacePage
        namespace={ns}
        kind={kind}
        total={list.total}
        page={page}
        pages={Math.max(1, Math.ceil(list.total / pageSize))}
        items={list.items}
        members={members}
        owner={owner}
        csrf={id.csrf}
      />,
    );
  };

  // ---------------------------------------------------------------------------------------------
  // Repositories: /u/<ns>/<repo>/…, official ones /_/<name>/…

  interface RepoTarget {
    readonly name: RepoName;
    readonly href: string;
    /** What follows the repository in the path: '' (the page), 'tags/<t>/', 'star', 'settings/…' */
    readonly rest: string;
  }

  /** Split a repository path; the repository part may hold '/' (v2 names such as org/team/app). */
  function repoTarget(ctx: Context): RepoTarget | 'namespace' | undefined {
    const path = ctx.path;
    let ns: string;
    let tail: string;
    if (path.startsWith('/_/')) {
      ns = 'library';
      tail = path.slice(3);
    } else if (path.startsWith('/u/')) {
      const rest = path.slice(3);
      const i = rest.indexOf('/');
      if (i < 0) return undefined;
      ns = rest.slice(0, i);
      tail = rest.slice(i + 1);
      if (tail === '') return 'namespace';
    } else return undefined;
    let decoded: string;
    try {
      decoded = decodeURIComponent(tail);
    } catch {
      return undefined;
    }
    if (decoded.length > 600) return undefined;
    const m = /^(.+?)\/(tags\/[^/]+\/?|settings(?:\/[a-z0-9-]+)*\/?|star|comments|)$/.exec(decoded);
    if (!m) return undefined;
    const name = indexRepoName(`${ns}/${m[1]}`);
    if (!name) return undefined;
    return { name, href: name.namespace === 'library' ? `/_/${name.repository}/` : `/u/${name.namespace}/${name.repository}/`, rest: m[2]! };
  }

  /** The repository if the caller may read it; absent and private look the same (404). */
  async function readable(name: RepoName, user: User | undefined): Promise<{ repo: Repository; rights: Awaited<ReturnType<IndexService['rights']>> }> {
    const repo = await index.repository(name);
    const rights = await index.rights(user, name, repo);
    if (!repo || !rights.read) throw notFoundError();
    return { repo, rights };
  }

  /**
   * A page of the tags an index without a registry in its process knows (its image list), by name;
   * a page past the last is the last (as RepoContent.tagPage). Before 2026-12-07 the page read and
   * rendered every entry of the list, tagged or not.
   */
  async function indexTagPage(repoId: number, page: number): Promise<{ tags: { tag: string; id: string }[]; page: number; pages: number }> {
    const want = Math.max(1, Math.trunc(page) || 1);
    let r = await listTaggedImages(db, repoId, { offset: (want - 1) * TAG_PAGE_SIZE, limit: TAG_PAGE_SIZE });
    const pages = Math.max(1, Math.ceil(r.total / TAG_PAGE_SIZE));
    const p = Math.min(want, pages);
    if (p !== want) r = await listTaggedImages(db, repoId, { offset: (p - 1) * TAG_PAGE_SIZE, limit: TAG_PAGE_SIZE });
    return { tags: r.items, page: p, pages };
  }

  async function repoView(
    ctx: Context,
    id: WebIdentity,
    t: RepoTarget,
    repo: Repository,
    rights: { delete: boolean },
    withComments: boolean,
    /** The page of tags to show; undefined: the page shows none (a tag page, a settings tab). */
    tagPage: number | undefined,
  ): Promise<RepoView> {
    const [tags, indexTags, starred, fullDescription] = await Promise.all([
      deps.content && tagPage !== undefined ? deps.content.tagPage(t.name, tagPage, TAG_PAGE_SIZE) : Promise.resolve(undefined),
      deps.content || tagPage === undefined ? Promise.resolve(undefined) : indexTagPage(repo.id, tagPage),
      id.user ? isStarred(db, repo.id, id.user.id) : Promise.resolve(false),
      findFullDescription(db, repo.id),
    ]);
    const renderMarkdown = withComments || fullDescription ? await markdownRenderer() : undefined;
    let comments: RepoView['comments'] = [];
    let commentTotal: number;
    const commentsHtml = new Map<number, string>();
    if (withComments) {
      const page = await listComments(db, repo.id, { page: 1, pageSize: 100 });
      comments = page.items;
      commentTotal = page.total;
      for (const c of comments) commentsHtml.set(c.id, renderMarkdown!(c.body));
    } else {
      commentTotal = await countComments(db, repo.id);
    }
    const host = endpointsHeader(ctx, config).split(',')[0]!.trim();
    return {
      repo,
      href: t.href,
      display: repo.namespace === 'library' ? repo.name : repo.fullName,
      pullHost: host,
      starred,
      canStar: id.user !== undefined,
      canAdmin: rights.delete,
      fullDescriptionHtml: fullDescription ? renderMarkdown!(fullDescription) : '',
      tags: deps.content ? (tags?.tags ?? []) : undefined,
      tagPage: tags?.page ?? indexTags?.page ?? 1,
      tagPages: tags?.pages ?? indexTags?.pages ?? 1,
      pullTag: tags?.pull,
      indexTags: indexTags?.tags ?? [],
      comments,
      commentTotal,
      commentsHtml,
      signedIn: id.user !== undefined,
      csrf: id.csrf,
    };
  }

  const repoGet = handle(async (ctx, id) => {
    // Docker Hub's links end in '/': /u/alice and /u/alice/app lead to /u/alice/ and /u/alice/app/
    if (!ctx.path.endsWith('/') && !/\/(settings(\/[a-z0-9-]+)*|star|comments)$/.test(ctx.path) && ctx.path.length < 700) {
      return redirect(ctx, `${ctx.path}/${ctx.querystring ? `?${ctx.querystring}` : ''}`);
    }
    const t = repoTarget(ctx);
    if (t === 'namespace') return namespacePage(ctx, id, ctx.path.slice(3, -1));
    if (!t) throw notFoundError();
    // official repositories live at /_/<name>/ (Docker Hub's scheme)
    if (ctx.path.startsWith('/u/library/')) return redirect(ctx, `/_/${t.name.repository}/${t.rest}`);
    const { repo, rights } = await readable(t.name, id.user);
    if (t.rest === '') {
      const v = await repoView(ctx, id, t, repo, rights, true, pageNumber(ctx.query.page));
      send(ctx, 200, v.display, <RepoPage v={v} />);
      return;
    }
    if (t.rest.startsWith('tags/')) {
      const tag = t.rest.slice(5).replace(/\/$/, '');
      if (!TAG.test(tag) || !deps.content) throw notFoundError();
      const [v, image] = await Promise.all([repoView(ctx, id, t, repo, rights, false, undefined), deps.content.image(t.name, tag)]);
      if (!image) throw notFoundError();
      send(ctx, 200, `${v.display}:${tag}`, <TagPage v={v} image={image} />);
      return;
    }
    if (t.rest.startsWith('settings')) {
      if (!id.user) return redirect(ctx, `/login?next=${encodeURIComponent(ctx.path)}`);
      const user = requireUser(ctx, id);
      if (!rights.delete) throw new WebError(403, 'Not allowed', 'Only the owner of this repository and administrators change its settings.');
      const tabId = t.rest.replace(/^settings\/?/, '').replace(/\/$/, '');
      // a settings tab shows no tags
      const v = await repoView(ctx, id, t, repo, rights, false, tabId === '' ? pageNumber(ctx.query.page) : undefined);
      if (tabId !== '') {
        const tab = tabs.find((x) => x.id === tabId);
        if (!tab) throw notFoundError();
        const content = await tab.render({ repo, user, csrf: id.csrf, action: `${t.href}settings/${tab.id}` });
        send(
          ctx,
          200,
          `${tab.title} · ${v.display}`,
          <>
            <p>
              <a href={v.href}>← {v.display}</a>
            </p>
            <h1>Settings of {v.display}</h1>
            <SettingsTabs href={v.href} current={tab.id} tabs={tabs} />
            <section class="card">{content}</section>
          </>,
        );
        return;
      }
      const [collaborators, fullDescription] = await Promise.all([listCollaborators(db, repo.id), findFullDescription(db, repo.id)]);
      send(ctx, 200, `Settings · ${v.display}`, <SettingsPage v={v} fullDescription={fullDescription} collaborators={collaborators} tabs={tabs} />);
      return;
    }
    throw notFoundError();
  });

  const repoPost = async (ctx: Context): Promise<void> => {
    const t = repoTarget(ctx);
    const settingsForm = t !== undefined && t !== 'namespace' && t.rest === 'settings/description';
    await handle(
      async (c, id) => {
        if (!t || t === 'namespace') throw notFoundError();
        const user = id.user;
        const { repo, rights } = await readable(t.name, user);
        const f = form(c);
        if (t.rest === 'star') {
          if (!user) throw new WebError(401, 'Log in first', 'Log in to star repositories.');
          const on = f.get('star') !== '0';
          if (on) await starRepository(db, repo.id, user.id);
          else await unstarRepository(db, repo.id, user.id);
          if (c.get('Accept').includes('application/json')) {
            const fresh = await index.repository(t.name);
            c.type = 'application/json; charset=utf-8';
            c.body = JSON.stringify({ starred: on, stars: fresh?.starCount ?? 0 });
            return;
          }
          return redirect(c, t.href);
        }
        if (t.rest === 'comments') {
          if (!user) throw new WebError(401, 'Log in first', 'Log in to comment.');
          const body = f.get('body') ?? '';
          if (body.trim() === '' || body.length > 10000) throw new WebError(400, 'Comment refused', 'A comment is 1 to 10,000 characters.');
          const comment = await addComment(db, repo.id, user.id, body);
          c.status = 303;
          c.redirect(`${t.href}?m=commented#comment-${comment.id}`);
          return;
        }
        if (!t.rest.startsWith('settings')) throw notFoundError();
        if (!user) throw new WebError(401, 'Log in first', 'Log in to change settings.');
        if (!rights.delete) throw new WebError(403, 'Not allowed', 'Only the owner of this repository and administrators change its settings.');
        const settings = `${t.href}settings`;
        switch (t.rest.replace(/\/$/, '')) {
          case 'settings/description': {
            const description = f.get('description') ?? '';
            const full = (f.get('full_description') ?? '').replace(/\r\n/g, '\n');
            if (description.length > 1000) throw new WebError(400, 'Description refused', 'The short description is at most 1,000 characters.');
            if (full.length > MAX_MARKDOWN)
              throw new WebError(400, 'Description refused', `The full description is at most ${MAX_MARKDOWN.toLocaleString('en')} characters.`);
            await saveRepository(db, { namespace: t.name.namespace, name: t.name.repository, description });
            await saveFullDescription(db, repo.id, full);
            return redirect(c, settings, 'saved');
          }
          case 'settings/visibility': {
            const access = f.get('access');
            if (access !== 'public' && access !== 'private') throw new WebError(400, 'Visibility refused', 'Choose public or private.');
            await saveRepository(db, { namespace: t.name.namespace, name: t.name.repository, private: access === 'private' });
            return redirect(c, settings, 'saved');
          }
          case 'settings/collaborators': {
            const other = await findUserByName(db, (f.get('username') ?? '').trim().slice(0, 255));
            const access = f.get('access') === 'write' ? 'write' : 'read';
            if (!other) throw new WebError(400, 'No such account', 'There is no account by that name.');
            await addCollaborator(db, repo.id, other.id, access);
            return redirect(c, settings, 'collab-added');
          }
          case 'settings/collaborators/remove': {
            const other = await findUserByName(db, (f.get('username') ?? '').slice(0, 255));
            if (other) await removeCollaborator(db, repo.id, other.id);
            return redirect(c, settings, 'collab-removed');
          }
          case 'settings/tags/delete': {
            const tag = f.get('tag') ?? '';
            if (!TAG.test(tag)) throw new WebError(400, 'Tag refused', 'That is not a tag name.');
            if (config.read_only) throw new WebError(405, 'Read-only', 'The registry is read-only (maintenance): nothing can be deleted now.');
            // an index without its registry has no tags to delete, only its record of them
            if (!deps.content) throw new WebError(409, 'Not here', 'Tags are deleted on the registry (this index runs without one in its process).');
            const removed = await deps.content.deleteTag(t.name, tag);
            // the index's image list forgets the tag too (as a v2 delete does)
            await index.forgetV2Tags(t.name, [tag]);
            if (!removed) throw new WebError(404, 'Not found', `There is no tag ${tag}.`);
            return redirect(c, settings, 'tag-deleted');
          }
          case 'settings/delete': {
            if ((f.get('confirm') ?? '') !== repo.fullName && (f.get('confirm') ?? '') !== (repo.namespace === 'library' ? repo.name : repo.fullName)) {
              throw new WebError(400, 'Not deleted', `Type ${repo.fullName} to confirm.`);
            }
            if (config.read_only) throw new WebError(405, 'Read-only', 'The registry is read-only (maintenance): nothing can be deleted now.');
            await index.deleteRepository(user, t.name);
            if (deps.removeContent) await deps.removeContent(t.name);
            return redirect(c, `/u/${repo.namespace}/`, 'repo-deleted');
          }
          default: {
            const tabId = t.rest.replace(/^settings\/?/, '').replace(/\/$/, '');
            const tab = tabs.find((x) => x.id === tabId);
            if (!tab || !tab.post) throw notFoundError();
            const action = `${t.href}settings/${tab.id}`;
            await tab.post({ repo, user, csrf: id.csrf, action, form: f });
            return redirect(c, action, 'saved');
          }
        }
      },
      settingsForm ? { formLimit: SETTINGS_FORM_LIMIT } : {},
    )(ctx);
  };

  router.get(['/u/*path', '/_/*path'], repoGet);
  router.post(['/u/*path', '/_/*path'], repoPost);

  // ---------------------------------------------------------------------------------------------
  // Accounts

  const loginForm = (ctx: Context, id: WebIdentity, status: number, flash?: Flash, username = '', next = '/'): void =>
    send(ctx, status, 'Log in', <LoginPage csrf={id.csrf} next={next} username={username} signup={config.signup} />, flash ? { flash } : {});

  router.get(
    '/login',
    handle(async (ctx, id) => {
      const next = localPath(typeof ctx.query.next === 'string' ? ctx.query.next : '/');
      if (id.user) return redirect(ctx, next);
      loginForm(ctx, id, 200, undefined, '', next);
    }),
  );

  router.post(
    '/login',
    handle(async (ctx, id) => {
      const f = form(ctx);
      const username = (f.get('username') ?? '').trim().slice(0, 255);
      const password = (f.get('password') ?? '').slice(0, 1024);
      const next = localPath(f.get('next'));
      if (username === '' || password === '' || username.includes(':'))
        return loginForm(ctx, id, 401, { kind: 'error', text: 'Wrong username or password.' }, username, next);
      let user: User | undefined;
      try {
        // the same check, and the same throttling per account and address, as /v1/users/ and /v2/token
        user = await index.authenticate(`Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`, { address: clientAddress(ctx) });
      } catch (e) {
        if (!isRegistryError(e)) throw e;
        if (e.code === 'TOO_MANY_LOGINS') {
          for (const [k, v] of Object.entries(e.headers)) ctx.set(k, v);
          return loginForm(
            ctx,
            id,
            429,
            { kind: 'error', text: `Too many failed logins for this account. Try again in ${e.headers['Retry-After'] ?? 'a few'} seconds.` },
            username,
            next,
          );
        }
        if (e.code === 'ACCOUNT_INACTIVE')
          return loginForm(ctx, id, 403, { kind: 'error', text: 'This account is not active yet: an administrator must activate it.' }, username, next);
        return loginForm(ctx, id, 401, { kind: 'error', text: 'Wrong username or password.' }, username, next);
      }
      if (!user) return loginForm(ctx, id, 401, { kind: 'error', text: 'Wrong username or password.' }, username, next);
      if (id.session) await sessions.end(ctx, id.session);
      await sessions.start(ctx, user);
      redirect(ctx, next);
    }),
  );

  router.get(
    '/logout',
    handle(async (ctx, id) => {
      if (!id.user) return redirect(ctx, '/');
      send(
        ctx,
        200,
        'Log out',
        <section class="card narrow">
          <h1>Log out</h1>
          <form method="post" action="/logout">
            <input type="hidden" name="_csrf" value={id.csrf} />
            <button type="submit">Log out of {id.user.username}</button>
          </form>
        </section>,
      );
    }),
  );

  router.post(
    '/logout',
    handle(async (ctx, id) => {
      await sessions.end(ctx, id.session);
      redirect(ctx, '/');
    }),
  );

  router.get(
    '/signup',
    handle(async (ctx, id) => {
      if (id.user) return redirect(ctx, '/account');
      send(ctx, 200, 'Sign up', <SignupPage csrf={id.csrf} username="" email="" enabled={config.signup} />);
    }),
  );

  router.post(
    '/signup',
    handle(async (ctx, id) => {
      const f = form(ctx);
      const username = (f.get('username') ?? '').trim().slice(0, 255);
      const email = (f.get('email') ?? '').trim().slice(0, 320);
      const password = (f.get('password') ?? '').slice(0, 1024);
      if (!config.signup) return send(ctx, 403, 'Sign up', <SignupPage csrf={id.csrf} username="" email="" enabled={false} />);
      let user: User;
      try {
        user = await index.signup({ username, email, password });
      } catch (e) {
        if (!isRegistryError(e)) throw e;
        const text = e.code === 'USER_EXISTS' ? 'That username or email is taken.' : e.message;
        return send(ctx, e.status === 401 ? 403 : 400, 'Sign up', <SignupPage csrf={id.csrf} username={username} email={email} enabled={config.signup} />, {
          flash: { kind: 'error', text },
        });
      }
      if (!user.active) {
        return send(
          ctx,
          201,
          'Account created',
          <MessagePage title="Account created" text="An administrator must activate it before you can log in." link={{ href: '/', text: 'Back to explore' }} />,
        );
      }
      if (id.session) await sessions.end(ctx, id.session);
      await sessions.start(ctx, user);
      redirect(ctx, `/u/${user.username}/`, 'welcome');
    }),
  );

  const accountPage = async (ctx: Context, id: WebIdentity, status = 200, flash?: Flash): Promise<void> => {
    const user = requireUser(ctx, id);
    const orgs = await listOrganizationsForUser(db, user.id);
    send(ctx, status, 'Account', <AccountPage user={user} csrf={id.csrf} orgs={orgs} />, flash ? { flash } : {});
  };

  router.get(
    '/account',
    handle(async (ctx, id) => {
      if (!id.user) return redirect(ctx, '/login?next=%2Faccount');
      await accountPage(ctx, id);
    }),
  );

  router.post(
    '/account/email',
    handle(async (ctx, id) => {
      const user = requireUser(ctx, id);
      const email = (form(ctx).get('email') ?? '').trim();
      if (!EMAIL.test(email) || email.length > 254) return accountPage(ctx, id, 400, { kind: 'error', text: 'That is not an email address.' });
      try {
        await saveUser(db, { id: user.id, email });
      } catch (e) {
        if (e instanceof DbConflictError) return accountPage(ctx, id, 409, { kind: 'error', text: 'Another account uses that email address.' });
        throw e;
      }
      redirect(ctx, '/account', 'email-saved');
    }),
  );

  router.post(
    '/account/password',
    handle(async (ctx, id) => {
      const user = requireUser(ctx, id);
      const f = form(ctx);
      const current = (f.get('current') ?? '').slice(0, 1024);
      const password = (f.get('password') ?? '').slice(0, 1024);
      if (password.length < 5) return accountPage(ctx, id, 400, { kind: 'error', text: 'The new password needs at least 5 characters.' });
      if (password !== (f.get('confirm') ?? '')) return accountPage(ctx, id, 400, { kind: 'error', text: 'The two new passwords differ.' });
      try {
        // the current password is checked with the login throttling, as any login is
        const ok = await index.authenticate(`Basic ${Buffer.from(`${user.username}:${current}`).toString('base64')}`, { address: clientAddress(ctx) });
        if (!ok) throw new RegistryError('LOGIN_REQUIRED');
      } catch (e) {
        if (!isRegistryError(e)) throw e;
        if (e.code === 'TOO_MANY_LOGINS') return accountPage(ctx, id, 429, { kind: 'error', text: 'Too many failed attempts; try again later.' });
        return accountPage(ctx, id, 403, { kind: 'error', text: 'The current password is wrong.' });
      }
      await setPassword(db, user.id, password, { cost: config.bcrypt_cost });
      // every other browser session ends here; v2 refresh tokens carry a fingerprint of the password
      // hash (src/index/token-routes.ts) and stop working by themselves
      const ended = await sessions.restart(ctx, user, id.session);
      log.info('password changed through the web UI', { account: user.username, sessions_ended: ended });
      redirect(ctx, '/account', 'password-changed');
    }),
  );

  router.post(
    '/account/organizations',
    handle(async (ctx, id) => {
      const user = requireUser(ctx, id);
      const name = (form(ctx).get('name') ?? '').trim();
      if (!/^[a-z0-9_]{2,30}$/.test(name))
        return accountPage(ctx, id, 400, { kind: 'error', text: 'An organization name is 2 to 30 characters of a-z, 0-9 and _.' });
      // a namespace that holds repositories, or a mirror prefix's, belongs to someone (as for signup)
      // the names signup refuses (route words, admin, the official namespace) for organizations too
      if (isReservedNamespace(name) || (await index.namespaceHeld(name))) {
        return accountPage(ctx, id, 409, { kind: 'error', text: 'That name is taken.' });
      }
      try {
        const org = await saveOrganization(db, { name });
        if (!org) throw new Error('organization not created');
        await addMember(db, org.id, user.id, 'owner');
      } catch (e) {
        if (e instanceof DbConflictError)
          return accountPage(ctx, id, 409, { kind: 'error', text: 'That name is taken (accounts and organizations share one name space).' });
        throw e;
      }
      redirect(ctx, `/u/${name}/`, 'org-created');
    }),
  );

  /** Organization members, managed by its owners (and admins). */
  const orgOwner = async (ctx: Context, id: WebIdentity) => {
    const user = requireUser(ctx, id);
    const org = await findOrganizationByName(db, String(ctx.params.org).slice(0, 255));
    if (!org) throw notFoundError();
    const role = await findMemberRole(db, org.id, user.id);
    if (role !== 'owner' && !user.admin) throw new WebError(403, 'Not allowed', 'Only owners of the organization manage its members.');
    return org;
  };

  router.post(
    '/orgs/:org/members',
    handle(async (ctx, id) => {
      const org = await orgOwner(ctx, id);
      const f = form(ctx);
      const other = await findUserByName(db, (f.get('username') ?? '').trim().slice(0, 255));
      if (!other) throw new WebError(400, 'No such account', 'There is no account by that name.');
      const role = f.get('role') === 'owner' ? 'owner' : 'member';
      if ((await changeMemberKeepingOwner(db, org.id, other.id, role)) === 'last-owner')
        throw new WebError(400, 'Not saved', 'An organization keeps at least one owner.');
      redirect(ctx, `/u/${org.name}/`, 'member-saved');
    }),
  );

  router.post(
    '/orgs/:org/members/remove',
    handle(async (ctx, id) => {
      const org = await orgOwner(ctx, id);
      const other = await findUserByName(db, (form(ctx).get('username') ?? '').slice(0, 255));
      if (other && (await changeMemberKeepingOwner(db, org.id, other.id, 'remove')) === 'last-owner')
        throw new WebError(400, 'Not removed', 'An organization keeps at least one owner.');
      redirect(ctx, `/u/${org.name}/`, 'member-removed');
    }),
  );

  // ---------------------------------------------------------------------------------------------
  // Administration

  const requireAdmin = (ctx: Context, id: WebIdentity): User => {
    const user = requireUser(ctx, id);
    if (!user.admin) throw notFoundError();
    return user;
  };

  router.get(
    '/admin/users',
    handle(async (ctx, id) => {
      if (!id.user) return redirect(ctx, '/login?next=%2Fadmin%2Fusers');
      const me = requireAdmin(ctx, id);
      const page = pageNumber(ctx.query.page);
      const list = await listUsers(db, { page, pageSize: 50 });
      send(
        ctx,
        200,
        'Accounts',
        <AdminUsersPage users={list.items} total={list.total} page={page} pages={Math.max(1, Math.ceil(list.total / 50))} csrf={id.csrf} me={me.id} />,
      );
    }),
  );

  router.post(
    '/admin/users/active',
    handle(async (ctx, id) => {
      const me = requireAdmin(ctx, id);
      const f = form(ctx);
      const other = await findUserByName(db, (f.get('username') ?? '').slice(0, 255));
      if (!other) throw new WebError(400, 'No such account', 'There is no account by that name.');
      if (other.id === me.id) throw new WebError(400, 'Not saved', 'You cannot deactivate yourself.');
      // deactivating ends the account's sessions (setActive removes them; Sessions.identify checks too)
      await setActive(db, other.id, f.get('active') === '1');
      redirect(ctx, '/admin/users', 'user-saved');
    }),
  );

  return router;
}
