import type { VNode } from 'preact';
import type { RepoSummary } from '../db/web.js';
import type { Comment, Collaborator, Repository } from '../db/repositories.js';
import type { Membership, OrganizationMember } from '../db/organizations.js';
import type { User } from '../db/users.js';
import { manifestKind, type ImageDetail, type TagInfo } from './content.js';
import { Csrf, displayName, repoHref, Size, When } from './layout.js';

// ---------------------------------------------------------------------------------------------------
// Lists of repositories

function RepoItem(props: { r: RepoSummary }): VNode {
  const { r } = props;
  return (
    <li>
      <a class="repo-name" href={repoHref(r.namespace, r.name)}>
        {displayName(r.namespace, r.name)}
      </a>{' '}
      {r.namespace === 'library' ? <span class="badge official">official</span> : null} {r.private ? <span class="badge private">private</span> : null}
      {r.description ? <p class="muted">{r.description}</p> : null}
      <div class="meta">
        <span>
          <span aria-hidden="true">★ </span>
          {r.starCount} {r.starCount === 1 ? 'star' : 'stars'}
        </span>
        {Number.isNaN(r.updatedAt.getTime()) ? null : (
          <span>
            updated <When at={r.updatedAt} />
          </span>
        )}
      </div>
    </li>
  );
}

/**
 * A table row's action: a form posting one hidden field (and the form token) with one secondary
 * button; `confirm` is asked first (the page's script reads data-confirm).
 */
function RowAction(props: { action: string; csrf: string; name: string; value: string; label: string; text: string; confirm?: string }): VNode {
  return (
    <form method="post" action={props.action} data-confirm={props.confirm}>
      <Csrf token={props.csrf} />
      <input type="hidden" name={props.name} value={props.value} />
      <button type="submit" class="secondary" aria-label={props.label}>
        {props.text}
      </button>
    </form>
  );
}

export function RepoList(props: { items: readonly RepoSummary[]; empty: string }): VNode {
  if (props.items.length === 0) return <p class="empty">{props.empty}</p>;
  return (
    <ul class="repos">
      {props.items.map((r) => (
        <RepoItem r={r} />
      ))}
    </ul>
  );
}

export function Pager(props: { page: number; pages: number; href: (page: number) => string }): VNode | null {
  if (props.pages <= 1) return null;
  return (
    <nav class="pager" aria-label="Pages">
      {props.page > 1 ? (
        <a href={props.href(props.page - 1)} rel="prev">
          ← Previous
        </a>
      ) : null}
      <span>
        Page {props.page} of {props.pages}
      </span>
      {props.page < props.pages ? (
        <a href={props.href(props.page + 1)} rel="next">
          Next →
        </a>
      ) : null}
    </nav>
  );
}

export function ExplorePage(props: { official: readonly RepoSummary[]; recent: readonly RepoSummary[]; starred: readonly RepoSummary[] }): VNode {
  return (
    <>
      <section class="hero" aria-labelledby="hero-title">
        <h1 id="hero-title">Explore repositories</h1>
        <p class="muted">Images pushed with Docker 1.x and with today's docker, podman and skopeo, in one place.</p>
        <form class="search" role="search" action="/search" method="get">
          <label class="sr-only" for="q-hero">
            Search repositories
          </label>
          <input id="q-hero" type="search" name="q" placeholder="Search by name or description" maxLength={256} />
          <button type="submit">Search</button>
        </form>
      </section>
      <div class="grid">
        <section class="card" aria-labelledby="official-title">
          <h2 id="official-title">Official repositories</h2>
          <RepoList items={props.official} empty="No official repositories yet." />
        </section>
        <section class="card" aria-labelledby="recent-title">
          <h2 id="recent-title">Recently pushed</h2>
          <RepoList items={props.recent} empty="Nothing pushed yet." />
        </section>
        <section class="card" aria-labelledby="starred-title">
          <h2 id="starred-title">Most starred</h2>
          <RepoList items={props.starred} empty="No stars yet." />
        </section>
      </div>
    </>
  );
}

export function SearchPage(props: { query: string; total: number; page: number; pages: number; results: readonly RepoSummary[] }): VNode {
  const q = props.query;
  return (
    <section class="card" aria-labelledby="search-title">
      <h1 id="search-title">{q ? `Results for “${q}”` : 'All repositories'}</h1>
      <p class="muted" id="result-count">
        {props.total} {props.total === 1 ? 'repository' : 'repositories'}
      </p>
      <RepoList items={props.results} empty={q ? 'No repository matches.' : 'No repositories yet.'} />
      <Pager page={props.page} pages={props.pages} href={(p) => `/search?q=${encodeURIComponent(q)}&page=${p}`} />
    </section>
  );
}

export function NamespacePage(props: {
  namespace: string;
  kind: 'user' | 'organization' | 'other';
  total: number;
  page: number;
  pages: number;
  items: readonly RepoSummary[];
  members?: readonly OrganizationMember[];
  owner: boolean;
  csrf: string;
}): VNode {
  return (
    <>
      <div class="repo-head">
        <div>
          <h1>{props.namespace}</h1>
          <p class="muted">
            {props.kind === 'organization' ? 'Organization' : props.kind === 'user' ? 'User' : 'Namespace'} ·{' '}
            <span id="repo-count">
              {props.total} {props.total === 1 ? 'repository' : 'repositories'}
            </span>
          </p>
        </div>
      </div>
      <div class={props.members ? 'cols' : ''}>
        <section class="card" aria-labelledby="ns-repos">
          <h2 id="ns-repos">Repositories</h2>
          <RepoList items={props.items} empty="No repositories you can see." />
          <Pager page={props.page} pages={props.pages} href={(p) => `/u/${props.namespace}/?page=${p}`} />
        </section>
        {props.members ? <Members namespace={props.namespace} members={props.members} owner={props.owner} csrf={props.csrf} /> : null}
      </div>
    </>
  );
}

function Members(props: { namespace: string; members: readonly OrganizationMember[]; owner: boolean; csrf: string }): VNode {
  const base = `/orgs/${props.namespace}/members`;
  return (
    <section class="card" aria-labelledby="members-title">
      <h2 id="members-title">Members</h2>
      <table>
        <caption class="sr-only">Members of {props.namespace}</caption>
        <thead>
          <tr>
            <th scope="col">Account</th>
            <th scope="col">Role</th>
            {props.owner ? (
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            ) : null}
          </tr>
        </thead>
        <tbody>
          {props.members.map((m) => (
            <tr>
              <td>
                <a href={`/u/${m.username}/`}>{m.username}</a>
              </td>
              <td>{m.role}</td>
              {props.owner ? (
                <td class="num">
                  <RowAction action={`${base}/remove`} csrf={props.csrf} name="username" value={m.username} label={`Remove ${m.username}`} text="Remove" />
                </td>
              ) : null}
            </tr>
          ))}
        </tbody>
      </table>
      {props.owner ? (
        <form method="post" action={base}>
          <Csrf token={props.csrf} />
          <div class="row">
            <div>
              <label for="member-name">Add or change a member</label>
              <input id="member-name" type="text" name="username" required maxLength={30} autocomplete="off" />
            </div>
            <div>
              <label for="member-role">Role</label>
              <select id="member-role" name="role">
                <option value="member">member (read, push)</option>
                <option value="owner">owner (everything)</option>
              </select>
            </div>
            <button type="submit">Save</button>
          </div>
        </form>
      ) : null}
    </section>
  );
}

// ---------------------------------------------------------------------------------------------------
// Repository

export interface RepoView {
  readonly repo: Repository;
  readonly href: string;
  readonly display: string;
  readonly pullHost: string;
  readonly starred: boolean;
  readonly canStar: boolean;
  readonly canAdmin: boolean;
  readonly fullDescriptionHtml: string;
  /**
   * One page of the tags (src/web/content.ts tagPage); undefined: no registry in this process (the
   * index's image lists are shown).
   */
  readonly tags: readonly TagInfo[] | undefined;
  /** The page of tags shown and how many there are. */
  readonly tagPage: number;
  readonly tagPages: number;
  /** The tag the pull box names: `latest`, else the first tag. */
  readonly pullTag: TagInfo | undefined;
  readonly indexTags: readonly { tag: string; id: string }[];
  readonly comments: readonly Comment[];
  readonly commentTotal: number;
  readonly commentsHtml: ReadonlyMap<number, string>;
  readonly signedIn: boolean;
  readonly csrf: string;
}

function short(d: string | undefined, n = 12): string {
  if (!d) return '';
  const hex = d.startsWith('sha256:') ? d.slice(7) : d;
  return hex.slice(0, n);
}

function PullBox(props: { v: RepoView; tag: string | undefined; digest: string | undefined }): VNode {
  const ref = `${props.v.pullHost}/${props.v.display}`;
  const lines: [string, string, string][] = [
    ['pull-docker', 'Docker (any)', `docker pull ${ref}${props.tag ? `:${props.tag}` : ''}`],
    ['pull-podman', 'podman', `podman pull --tls-verify=false ${ref}${props.tag ? `:${props.tag}` : ''}`],
  ];
  if (props.digest) lines.push(['pull-digest', 'By digest (Docker 1.6+)', `docker pull ${ref}@${props.digest}`]);
  return (
    <section class="card" aria-labelledby="pull-title">
      <h2 id="pull-title">Pull</h2>
      {lines.map(([id, label, cmd]) => (
        <div class="pull">
          <span class="label">{label}</span>
          <code id={id}>{cmd}</code>
          <button type="button" class="secondary" data-copy={id} aria-label={`Copy the ${label} command`}>
            Copy
          </button>
        </div>
      ))}
      <p class="hint">Docker 1.x pulls through the v1 API; Docker 1.10+, podman and skopeo through v2. Both see the same tags.</p>
    </section>
  );
}

function StarBox(props: { v: RepoView }): VNode {
  const { v } = props;
  return (
    <div class="star">
      <span>
        <span aria-hidden="true">★ </span>
        <span id="star-count" class="count">
          {v.repo.starCount}
        </span>{' '}
        {v.repo.starCount === 1 ? 'star' : 'stars'}
      </span>
      {v.canStar ? (
        <form method="post" action={`${v.href}star`} class="js-star">
          <Csrf token={v.csrf} />
          <input type="hidden" name="star" value={v.starred ? '0' : '1'} />
          <button type="submit" class="secondary" aria-pressed={v.starred ? 'true' : 'false'}>
            {v.starred ? 'Unstar' : 'Star'}
          </button>
        </form>
      ) : null}
    </div>
  );
}

export function TagsTable(props: { v: RepoView }): VNode {
  const { v } = props;
  if (!v.tags) {
    return (
      <>
        <p class="hint">
          This index runs without a registry in its process: tags and v1 image ids come from its image lists; digests and sizes are on the registry.
        </p>
        {v.indexTags.length === 0 ? (
          <p class="empty">No tags.</p>
        ) : (
          <table id="tags">
            <caption class="sr-only">Tags</caption>
            <thead>
              <tr>
                <th scope="col">Tag</th>
                <th scope="col">v1 image id</th>
              </tr>
            </thead>
            <tbody>
              {v.indexTags.map((t) => (
                <tr data-tag={t.tag}>
                  <td>{t.tag}</td>
                  <td class="digest" data-v1-id={t.id}>
                    {short(t.id)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <Pager page={v.tagPage} pages={v.tagPages} href={(p) => `${v.href}?page=${p}`} />
      </>
    );
  }
  if (v.tags.length === 0 && v.tagPages <= 1) return <p class="empty">No tags yet. Push one with docker, podman or skopeo.</p>;
  return (
    <div class="table-wrap">
      <table id="tags">
        <caption class="sr-only">Tags</caption>
        <thead>
          <tr>
            <th scope="col">Tag</th>
            <th scope="col">v1 image id</th>
            <th scope="col">Manifest digest</th>
            <th scope="col" class="num">
              Size
            </th>
            <th scope="col">Pushed</th>
            <th scope="col">Via</th>
          </tr>
        </thead>
        <tbody>
          {v.tags.map((t) => (
            <tr data-tag={t.tag}>
              <td>
                <a href={`${v.href}tags/${t.tag}/`}>{t.tag}</a>
              </td>
              <td class="digest" data-v1-id={t.v1Id ?? ''} title={t.v1Id}>
                {t.v1Id ? short(t.v1Id) : <span class="muted">none</span>}
              </td>
              <td class="digest" data-digest={t.digest ?? ''} title={t.digest}>
                {t.digest ? `sha256:${short(t.digest)}` : <span class="muted">none</span>}
                {t.platforms ? (
                  <div class="muted">{t.platforms.map((p) => `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`).join(', ')}</div>
                ) : null}
              </td>
              <td class="num">
                <Size bytes={t.size} />
              </td>
              <td>
                <When at={t.pushedAt} />
              </td>
              <td>
                <span class={`badge ${t.via}`}>{t.via}</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <Pager page={v.tagPage} pages={v.tagPages} href={(p) => `${v.href}?page=${p}`} />
    </div>
  );
}

function Comments(props: { v: RepoView }): VNode {
  const { v } = props;
  return (
    <section class="card" aria-labelledby="comments-title">
      <h2 id="comments-title">
        Comments <span class="muted">({v.commentTotal})</span>
      </h2>
      {v.comments.length === 0 ? <p class="empty">No comments yet.</p> : null}
      <ol class="comments">
        {v.comments.map((c) => (
          <li id={`comment-${c.id}`}>
            <div class="meta">
              <a href={`/u/${c.username}/`}>{c.username}</a>
              <When at={c.createdAt} />
            </div>
            <div class="markdown" dangerouslySetInnerHTML={{ __html: v.commentsHtml.get(c.id) ?? '' }} />
          </li>
        ))}
      </ol>
      {v.signedIn ? (
        <form method="post" action={`${v.href}comments`}>
          <Csrf token={v.csrf} />
          <label for="comment-body">Add a comment</label>
          <textarea id="comment-body" name="body" required maxLength={10000}></textarea>
          <p class="hint">Markdown; HTML is shown as text.</p>
          <button type="submit">Comment</button>
        </form>
      ) : (
        <p>
          <a href={`/login?next=${encodeURIComponent(v.href)}`}>Log in</a> to comment.
        </p>
      )}
    </section>
  );
}

export function RepoPage(props: { v: RepoView }): VNode {
  const { v } = props;
  const latest = v.pullTag;
  return (
    <>
      <div class="repo-head">
        <div>
          <h1>
            {v.display} {v.repo.namespace === 'library' ? <span class="badge official">official</span> : null}{' '}
            {v.repo.private ? <span class="badge private">private</span> : null}
          </h1>
          {v.repo.description ? <p id="short-description">{v.repo.description}</p> : <p class="muted">No description.</p>}
          <p class="meta">
            {v.repo.namespace !== 'library' ? (
              <span>
                by <a href={`/u/${v.repo.namespace}/`}>{v.repo.namespace}</a>
              </span>
            ) : null}
            <span>
              updated <When at={v.repo.updatedAt} />
            </span>
            {v.canAdmin ? <a href={`${v.href}settings`}>Settings</a> : null}
          </p>
        </div>
        <StarBox v={v} />
      </div>
      <div class="cols">
        <div>
          <section class="card" aria-labelledby="tags-title">
            <h2 id="tags-title">Tags</h2>
            <TagsTable v={v} />
          </section>
          <section class="card" aria-labelledby="desc-title">
            <h2 id="desc-title">Description</h2>
            {v.fullDescriptionHtml ? (
              <div class="markdown" id="full-description" dangerouslySetInnerHTML={{ __html: v.fullDescriptionHtml }} />
            ) : (
              <p class="empty">No full description.</p>
            )}
          </section>
          <Comments v={v} />
        </div>
        <div class="side">
          <PullBox v={v} tag={latest?.tag} digest={latest?.digest} />
        </div>
      </div>
    </>
  );
}

export function TagPage(props: { v: RepoView; image: ImageDetail }): VNode {
  const { v, image } = props;
  return (
    <>
      <p>
        <a href={v.href}>← {v.display}</a>
      </p>
      <h1>
        {v.display}:{image.tag} <span class={`badge ${image.via}`}>pushed through {image.via}</span>
      </h1>
      <div class="cols">
        <div>
          <section class="card" aria-labelledby="layers-title">
            <h2 id="layers-title">Layers</h2>
            {image.note ? <p class="hint">{image.note}</p> : null}
            {image.platforms ? (
              <table id="platforms">
                <caption class="sr-only">Images of this manifest list</caption>
                <thead>
                  <tr>
                    <th scope="col">Platform</th>
                    <th scope="col">Digest</th>
                  </tr>
                </thead>
                <tbody>
                  {image.platforms.map((p) => (
                    <tr>
                      <td>{`${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`}</td>
                      <td class="digest">{p.digest}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            ) : image.layers.length === 0 ? (
              <p class="empty">No layers to show.</p>
            ) : (
              <div class="table-wrap">
                <table id="layers">
                  <caption class="sr-only">Layers, oldest first</caption>
                  <thead>
                    <tr>
                      <th scope="col" class="num">
                        #
                      </th>
                      <th scope="col">Created by</th>
                      <th scope="col" class="num">
                        Size
                      </th>
                      <th scope="col">Digest</th>
                    </tr>
                  </thead>
                  <tbody>
                    {image.layers.map((l, i) => (
                      <tr data-digest={l.digest ?? ''}>
                        <td class="num">{i + 1}</td>
                        <td class="cmd">{l.createdBy || <span class="muted">(no command recorded)</span>}</td>
                        <td class="num">{l.empty ? <span class="muted">empty</span> : <Size bytes={l.size} />}</td>
                        <td class="digest" title={l.digest}>
                          {l.digest && !l.empty ? `sha256:${short(l.digest)}` : ''}
                          {l.v1Id ? <div class="muted">v1 {short(l.v1Id)}</div> : null}
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            )}
          </section>
        </div>
        <div>
          <section class="card" aria-labelledby="facts-title">
            <h2 id="facts-title">Image</h2>
            <dl class="facts">
              <dt>Platform</dt>
              <dd id="platform">{image.os || image.architecture ? `${image.os ?? '?'}/${image.architecture ?? '?'}` : '–'}</dd>
              <dt>Compressed size</dt>
              <dd id="image-size">
                <Size bytes={image.size} />
              </dd>
              <dt>Pushed</dt>
              <dd>
                <When at={image.pushedAt} />
              </dd>
              <dt>v1 image id</dt>
              <dd class="digest" id="v1-id">
                {image.v1Id ?? 'none (no v1 view)'}
              </dd>
            </dl>
            <h3>Manifest digests</h3>
            <ul id="formats">
              {image.formats.map((f) => (
                <li>
                  <span>{f.format}</span>
                  <div class="digest" data-digest={f.digest}>
                    {f.digest}
                  </div>
                </li>
              ))}
            </ul>
          </section>
          <PullBox v={v} tag={image.tag} digest={image.digest} />
        </div>
      </div>
    </>
  );
}

// ---------------------------------------------------------------------------------------------------
// Repository settings

export interface SettingsTabLink {
  readonly id: string;
  readonly title: string;
}

export function SettingsTabs(props: { href: string; current: string; tabs: readonly SettingsTabLink[] }): VNode {
  return (
    <nav class="tabs" aria-label="Settings">
      <a href={`${props.href}settings`} aria-current={props.current === 'general' ? 'page' : undefined}>
        General
      </a>
      {props.tabs.map((t) => (
        <a href={`${props.href}settings/${t.id}`} aria-current={props.current === t.id ? 'page' : undefined}>
          {t.title}
        </a>
      ))}
    </nav>
  );
}

export function SettingsPage(props: { v: RepoView; fullDescription: string; collaborators: readonly Collaborator[]; tabs: readonly SettingsTabLink[] }): VNode {
  const { v } = props;
  const base = `${v.href}settings`;
  return (
    <>
      <p>
        <a href={v.href}>← {v.display}</a>
      </p>
      <h1>Settings of {v.display}</h1>
      <SettingsTabs href={v.href} current="general" tabs={props.tabs} />
      <section class="card" aria-labelledby="s-desc">
        <h2 id="s-desc">Descriptions</h2>
        <form method="post" action={`${base}/description`}>
          <Csrf token={v.csrf} />
          <label for="description">Short description</label>
          <input id="description" type="text" name="description" value={v.repo.description} maxLength={1000} />
          <label for="full_description">Full description (Markdown)</label>
          <textarea id="full_description" name="full_description" maxLength={25000}>
            {props.fullDescription}
          </textarea>
          <p class="hint">Markdown; raw HTML is shown as text, links may only be http(s) or mailto.</p>
          <button type="submit">Save descriptions</button>
        </form>
      </section>
      <section class="card" aria-labelledby="s-vis">
        <h2 id="s-vis">Visibility</h2>
        <form method="post" action={`${base}/visibility`}>
          <Csrf token={v.csrf} />
          <fieldset>
            <legend>Who may see and pull</legend>
            <label class="radio">
              <input type="radio" name="access" value="public" checked={!v.repo.private} /> Public: everyone, signed in or not
            </label>
            <label class="radio">
              <input type="radio" name="access" value="private" checked={v.repo.private} /> Private: the owner, its organization and collaborators only
            </label>
          </fieldset>
          <button type="submit">Save visibility</button>
        </form>
      </section>
      <section class="card" aria-labelledby="s-collab">
        <h2 id="s-collab">Collaborators</h2>
        {props.collaborators.length === 0 ? (
          <p class="empty">No collaborators.</p>
        ) : (
          <table id="collaborators">
            <caption class="sr-only">Collaborators</caption>
            <thead>
              <tr>
                <th scope="col">Account</th>
                <th scope="col">Access</th>
                <th scope="col">
                  <span class="sr-only">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {props.collaborators.map((c) => (
                <tr>
                  <td>{c.username}</td>
                  <td>{c.access}</td>
                  <td class="num">
                    <RowAction
                      action={`${base}/collaborators/remove`}
                      csrf={v.csrf}
                      name="username"
                      value={c.username}
                      label={`Remove ${c.username}`}
                      text="Remove"
                    />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        <form method="post" action={`${base}/collaborators`}>
          <Csrf token={v.csrf} />
          <div class="row">
            <div>
              <label for="collab-name">Account</label>
              <input id="collab-name" type="text" name="username" required maxLength={30} autocomplete="off" />
            </div>
            <div>
              <label for="collab-access">Access</label>
              <select id="collab-access" name="access">
                <option value="read">read (pull)</option>
                <option value="write">write (pull and push)</option>
              </select>
            </div>
            <button type="submit">Add collaborator</button>
          </div>
        </form>
      </section>
      <section class="card" aria-labelledby="s-tags">
        <h2 id="s-tags">Tags</h2>
        {!v.tags ? (
          <p class="hint">Tags are deleted on the registry: this index runs without one in its process.</p>
        ) : v.tags.length === 0 && v.tagPages <= 1 ? (
          <p class="empty">No tags.</p>
        ) : (
          <>
            <table id="settings-tags">
              <caption class="sr-only">Tags to delete</caption>
              <thead>
                <tr>
                  <th scope="col">Tag</th>
                  <th scope="col">
                    <span class="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {v.tags.map((t) => (
                  <tr data-tag={t.tag}>
                    <td>{t.tag}</td>
                    <td class="num">
                      <RowAction
                        action={`${base}/tags/delete`}
                        confirm={`Delete the tag ${t.tag}? v1 and v2 clients will no longer find it.`}
                        csrf={v.csrf}
                        name="tag"
                        value={t.tag}
                        label={`Delete tag ${t.tag}`}
                        text="Delete"
                      />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            <Pager page={v.tagPage} pages={v.tagPages} href={(p) => `${base}?page=${p}`} />
          </>
        )}
      </section>
      <section class="card danger-zone" aria-labelledby="s-delete">
        <h2 id="s-delete">Delete this repository</h2>
        <p>Its tags, images and manifests go for v1 and v2 clients alike. This cannot be undone.</p>
        <form method="post" action={`${base}/delete`}>
          <Csrf token={v.csrf} />
          <label for="confirm-name">Type {v.repo.fullName} to confirm</label>
          <input id="confirm-name" type="text" name="confirm" required autocomplete="off" />
          <p>
            <button type="submit" class="danger">
              Delete repository
            </button>
          </p>
        </form>
      </section>
    </>
  );
}

// ---------------------------------------------------------------------------------------------------
// Accounts

export function LoginPage(props: { csrf: string; next: string; username: string; signup: boolean }): VNode {
  return (
    <section class="card narrow" aria-labelledby="login-title">
      <h1 id="login-title">Log in</h1>
      <form method="post" action="/login">
        <Csrf token={props.csrf} />
        <input type="hidden" name="next" value={props.next} />
        <label for="username">Username</label>
        <input id="username" type="text" name="username" required autocomplete="username" value={props.username} maxLength={255} />
        <label for="password">Password</label>
        <input id="password" type="password" name="password" required autocomplete="current-password" maxLength={1024} />
        <p>
          <button type="submit">Log in</button>
        </p>
      </form>
      {props.signup ? (
        <p class="muted">
          No account? <a href="/signup">Sign up</a>
        </p>
      ) : null}
    </section>
  );
}

export function SignupPage(props: { csrf: string; username: string; email: string; enabled: boolean }): VNode {
  if (!props.enabled) {
    return (
      <section class="card narrow">
        <h1>Sign up</h1>
        <p>This index does not take new accounts. Ask an administrator for one.</p>
      </section>
    );
  }
  return (
    <section class="card narrow" aria-labelledby="signup-title">
      <h1 id="signup-title">Sign up</h1>
      <form method="post" action="/signup">
        <Csrf token={props.csrf} />
        <label for="username">Username</label>
        <input
          id="username"
          type="text"
          name="username"
          required
          autocomplete="username"
          value={props.username}
          maxLength={30}
          pattern="[a-z0-9_]{4,30}"
          aria-describedby="username-hint"
        />
        <p class="hint" id="username-hint">
          4 to 30 characters: a–z, 0–9 and _. It is also your namespace.
        </p>
        <label for="email">Email</label>
        <input id="email" type="email" name="email" required autocomplete="email" value={props.email} maxLength={254} />
        <label for="password">Password</label>
        <input id="password" type="password" name="password" required autocomplete="new-password" minLength={5} maxLength={1024} />
        <p>
          <button type="submit">Create account</button>
        </p>
      </form>
    </section>
  );
}

export function AccountPage(props: { user: User; csrf: string; orgs: readonly Membership[] }): VNode {
  const { user } = props;
  return (
    <>
      <h1>Your account</h1>
      <div class="grid">
        <section class="card" aria-labelledby="a-email">
          <h2 id="a-email">Email</h2>
          <form method="post" action="/account/email">
            <Csrf token={props.csrf} />
            <label for="email">Email address</label>
            <input id="email" type="email" name="email" required value={user.email} maxLength={254} autocomplete="email" />
            <p>
              <button type="submit">Save email</button>
            </p>
          </form>
        </section>
        <section class="card" aria-labelledby="a-password">
          <h2 id="a-password">Password</h2>
          <form method="post" action="/account/password">
            <Csrf token={props.csrf} />
            <label for="current">Current password</label>
            <input id="current" type="password" name="current" required autocomplete="current-password" maxLength={1024} />
            <label for="new-password">New password</label>
            <input id="new-password" type="password" name="password" required minLength={5} autocomplete="new-password" maxLength={1024} />
            <label for="confirm-password">New password again</label>
            <input id="confirm-password" type="password" name="confirm" required minLength={5} autocomplete="new-password" maxLength={1024} />
            <p class="hint">Changing it signs you out everywhere else and ends the refresh tokens of docker, podman and skopeo logins.</p>
            <button type="submit">Change password</button>
          </form>
        </section>
        <section class="card" aria-labelledby="a-orgs">
          <h2 id="a-orgs">Organizations</h2>
          {props.orgs.length === 0 ? (
            <p class="empty">You belong to no organization.</p>
          ) : (
            <ul>
              {props.orgs.map((o) => (
                <li>
                  <a href={`/u/${o.name}/`}>{o.name}</a> <span class="muted">({o.role})</span>
                </li>
              ))}
            </ul>
          )}
          <form method="post" action="/account/organizations">
            <Csrf token={props.csrf} />
            <label for="org-name">New organization</label>
            <input id="org-name" type="text" name="name" required maxLength={30} pattern="[a-z0-9_]{2,30}" aria-describedby="org-hint" />
            <p class="hint" id="org-hint">
              2 to 30 characters: a–z, 0–9 and _. You become its owner.
            </p>
            <button type="submit">Create organization</button>
          </form>
        </section>
      </div>
    </>
  );
}

export function AdminUsersPage(props: { users: readonly User[]; total: number; page: number; pages: number; csrf: string; me: number }): VNode {
  return (
    <section class="card" aria-labelledby="admin-title">
      <h1 id="admin-title">Accounts</h1>
      <p class="muted">{props.total} accounts</p>
      <div class="table-wrap">
        <table id="users">
          <caption class="sr-only">Accounts</caption>
          <thead>
            <tr>
              <th scope="col">Account</th>
              <th scope="col">Email</th>
              <th scope="col">Status</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {props.users.map((u) => (
              <tr data-user={u.username}>
                <td>
                  <a href={`/u/${u.username}/`}>{u.username}</a> {u.admin ? <span class="badge">admin</span> : null}
                </td>
                <td>{u.email}</td>
                <td>{u.active ? 'active' : 'inactive'}</td>
                <td class="num">
                  {u.id === props.me ? null : (
                    <form method="post" action="/admin/users/active">
                      <Csrf token={props.csrf} />
                      <input type="hidden" name="username" value={u.username} />
                      <input type="hidden" name="active" value={u.active ? '0' : '1'} />
                      <button type="submit" class="secondary">
                        {u.active ? 'Deactivate' : 'Activate'}
                      </button>
                    </form>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <Pager page={props.page} pages={props.pages} href={(p) => `/admin/users?page=${p}`} />
    </section>
  );
}

export function MessagePage(props: { title: string; text: string; link?: { href: string; text: string } }): VNode {
  return (
    <section class="card narrow">
      <h1>{props.title}</h1>
      <p>{props.text}</p>
      {props.link ? (
        <p>
          <a href={props.link.href}>{props.link.text}</a>
        </p>
      ) : null}
    </section>
  );
}

export { manifestKind };
