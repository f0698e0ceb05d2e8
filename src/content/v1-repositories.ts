import { isNotFound, type StorageDriver } from '../storage/driver.js';
import { keyExists, LINK_MAX, parseRecord, readOptional, RECORD_MAX, removeIfPresent } from './small-objects.js';
import { RegistryError } from '../errors/index.js';
import { keys } from './keys.js';
import { parseRepoName, type RepoName, type Tag } from './names.js';
import type { V1Images } from './v1-images.js';
import { isImageId } from '../digest/digest.js';
import { removeRepositorySessions } from './v2-uploads.js';
import { KeyedMutex, type Locks } from './mutex.js';

/** Default tag / repository metadata (spec §2.16), key order as PY serialises it (sorted). */
export const DEFAULT_TAG_JSON = {
  arch: 'amd64',
  docker_go_version: null,
  docker_version: null,
  kernel: null,
  last_update: null,
  os: 'linux',
} as const;

export interface IndexImageEntry {
  id: string;
  checksum?: string;
}

/** Tag metadata from a User-Agent such as `docker/1.5.0 go/go1.4.1 kernel/3.16 os/linux arch/amd64`. */
export function tagMetadata(userAgent: string | undefined, now = Date.now()): Record<string, unknown> {
  const meta: Record<string, unknown> = { last_update: Math.floor(now / 1000) };
  for (const m of (userAgent ?? '').matchAll(/([^\s/]+)\/([^\s/]+)/g)) {
    const [, k, v] = m as unknown as [string, string, string];
    if (k === 'docker') meta.docker_version = v;
    else if (k === 'go') meta.docker_go_version = v;
    else if (k === 'arch' || k === 'kernel' || k === 'os') meta[k] = v.toLowerCase();
  }
  return meta;
}

/**
 * Bound of the stand-in index's image list read back (§3.12): each PUT images body is held to
 * max_json_size, merged lists grow past it; as much as the registry reads of an index's list
 * (INDEX_IMAGES_MAX_BYTES, auth/registry-token.ts).
 */
const INDEX_IMAGES_MAX = 64 * 1024 * 1024;

const META_STRINGS = ['docker_version', 'docker_go_version', 'kernel', 'os', 'arch'] as const;

/**
 * Tag or repository metadata (R15/R16) read from another registry's storage (the importer: a
 * Python tree's `tag<name>_json` and `json`), kept to the fields R13 writes: `last_update` a finite
 * number, the others strings of at most 256 characters (or null). Anything else is dropped;
 * undefined when the bytes are not a JSON object.
 */
export function sanitizeTagMetadata(raw: Buffer): Record<string, unknown> | undefined {
  let v: unknown;
  try {
    v = JSON.parse(raw.toString('utf8'));
  } catch {
    return undefined;
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  if (o.last_update === null || (typeof o.last_update === 'number' && Number.isFinite(o.last_update))) out.last_update = o.last_update;
  for (const k of META_STRINGS) {
    const x = o[k];
    if (x === null || (typeof x === 'string' && x.length <= 256)) out[k] = x;
  }
  return out;
}

/**
 * Tags and repository records of the v1 registry (R11–R19) and the stand-in index image lists (§3.12).
 * A repository exists once its marker is written (first tag, image list or properties).
 */
export class V1Repositories {
  /**
   * @param locks the locks of the stand-in index's image list (every node sharing the storage
   *   takes the same: a StorageLock in a server); in-process when not given.
   * @param storage the storage without this node's metadata cache (CachingDriver): what a merge
   *   reads under that lock (a list cached here may be older than another node's merge).
   */
  constructor(
    private readonly driver: StorageDriver,
    private readonly images: V1Images,
    private readonly locks: Locks = new KeyedMutex(),
    private readonly storage: StorageDriver = driver,
  ) {}

  /** `maxSize`: LINK_MAX for a tag, RECORD_MAX for metadata (a User-Agent's few fields). */
  private read(key: string, maxSize: number): Promise<Buffer | undefined> {
    return readOptional(this.driver, key, maxSize);
  }

  private remove(key: string): Promise<boolean> {
    return removeIfPresent(this.driver, key);
  }

  exists(repo: RepoName): Promise<boolean> {
    return keyExists(this.driver, `${keys.repo(repo)}/_created`);
  }

  private async ensure(repo: RepoName): Promise<void> {
    if (!(await this.exists(repo))) {
      await this.driver.putContent(`${keys.repo(repo)}/_created`, Buffer.from(String(Math.floor(Date.now() / 1000))));
    }
  }

  /**
   * The names of the tags, without reading what each names (listTags reads every one: a v2 tag
   * list of 100,000 v1 tags paid 100,000 reads for a page of 10). A name whose tag file is empty
   * is among them, as in listTags and getTag (both answer '' for it: an empty Buffer is still a value).
   */
  async tagNames(repo: RepoName): Promise<string[]> {
    if (!(await this.exists(repo))) throw new RegistryError('REPOSITORY_NOT_FOUND');
    try {
      return (await this.driver.list(keys.tagsDir(repo))).map((key) => key.slice(key.lastIndexOf('/') + 1)).sort();
    } catch (e) {
      if (!isNotFound(e)) throw e;
      return [];
    }
  }

  /** R11: all tags, sorted. */
  async listTags(repo: RepoName): Promise<Record<string, string>> {
    if (!(await this.exists(repo))) throw new RegistryError('REPOSITORY_NOT_FOUND');
    let entries: string[] = [];
    try {
      entries = await this.driver.list(keys.tagsDir(repo));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    const out: Record<string, string> = {};
    for (const key of entries.sort()) {
      const tag = key.slice(key.lastIndexOf('/') + 1);
      const id = await this.read(key, LINK_MAX);
      if (id) out[tag] = id.toString('utf8');
    }
    return out;
  }

  /** R12. */
  async getTag(repo: RepoName, tag: Tag): Promise<string> {
    const id = await this.read(keys.tag(repo, tag), LINK_MAX);
    if (!id) throw new RegistryError('TAG_NOT_FOUND');
    return id.toString('utf8');
  }

  /**
   * R13: the image must have its json stored in the repository's scope (completion not required,
   * spec §2.14), or be brought there by `link` (from a repository the pusher may read). An id the
   * repository does not hold is "not found", whoever else holds it.
   */
  async putTag(repo: RepoName, tag: Tag, id: string, userAgent: string | undefined, link?: (id: string) => Promise<boolean>): Promise<void> {
    await this.writeTag(repo, tag, id, tagMetadata(userAgent), link);
  }

  /**
   * R13 with the metadata given instead of built from a User-Agent: the importer keeps what the
   * source registry recorded (see {@link sanitizeTagMetadata}). Same checks as putTag.
   */
  async putTagWithMetadata(repo: RepoName, tag: Tag, id: string, metadata: Record<string, unknown>): Promise<void> {
    await this.writeTag(repo, tag, id, metadata);
  }

  /** The stored tag metadata as written (undefined when none), to tell whether it changed. */
  readTagJson(repo: RepoName, tag: Tag): Promise<Buffer | undefined> {
    return this.read(keys.tagJson(repo, tag), RECORD_MAX);
  }

  /** The stored repository metadata as written (undefined when none). */
  readRepoJson(repo: RepoName): Promise<Buffer | undefined> {
    return this.read(keys.repoJson(repo), RECORD_MAX);
  }

  /** R16's record, set directly (the importer: the source's repository `json`). */
  async putRepoJson(repo: RepoName, metadata: Record<string, unknown>): Promise<void> {
    await this.ensure(repo);
    await this.driver.putContent(keys.repoJson(repo), Buffer.from(JSON.stringify(metadata)));
  }

  private async writeTag(repo: RepoName, tag: Tag, id: string, metadata: Record<string, unknown>, link?: (id: string) => Promise<boolean>): Promise<void> {
    const scope = this.images.scopeOf(repo);
    if (!isImageId(id) || !((await this.images.hasJson(scope, id)) || (link !== undefined && (await link(id))))) {
      throw new RegistryError('IMAGE_NOT_FOUND');
    }
    await this.ensure(repo);
    const meta = Buffer.from(JSON.stringify(metadata));
    await this.driver.putContent(keys.tagJson(repo, tag), meta);
    if (tag === 'latest') await this.driver.putContent(keys.repoJson(repo), meta);
    await this.driver.putContent(keys.tag(repo, tag), Buffer.from(id));
  }

  /** R14. */
  async deleteTag(repo: RepoName, tag: Tag): Promise<void> {
    if (!(await this.remove(keys.tag(repo, tag)))) throw new RegistryError('TAG_NOT_FOUND', `Tag not found: ${tag}`);
    await this.remove(keys.tagJson(repo, tag));
    if (tag === 'latest') await this.remove(keys.repoJson(repo));
  }

  /**
   * R15: the stored metadata as it was written (only the keys the pusher's User-Agent gave, spec
   * §2.16), or the default object when none is stored.
   */
  async tagJson(repo: RepoName, tag: Tag): Promise<Record<string, unknown>> {
    return storedOrDefault(await this.read(keys.tagJson(repo, tag), RECORD_MAX));
  }

  /** R16: as R15, for the repository (the metadata of its `latest`). */
  async repoJson(repo: RepoName): Promise<Record<string, unknown>> {
    return storedOrDefault(await this.read(keys.repoJson(repo), RECORD_MAX));
  }

  /**
   * R17: the repository goes at once with everything that made it visible: its tags, its image
   * records (with accounts they are the repository's own; the layer bytes stay, shared by digest,
   * until a garbage collection), its v2 view (manifests, tags, blob links) and its v2 upload
   * sessions, so nothing of it can be read through either API afterwards, nor linked there later.
   * Registry-wide images (standalone) stay.
   */
  async deleteRepository(repo: RepoName): Promise<void> {
    // its v2 upload sessions go first (also those of a name with nothing else stored yet): bytes sent
    // to the repository before the delete must not be linked into the name after it. First, because
    // a session completes without a lock: it writes its link, then checks that its session is
    // still there (V2Uploads.linkSession); a link written before the sessions went is in the
    // listing below, and one written after is taken back by its writer
    const v2Names = [repo.full, ...(repo.namespace === 'library' ? [repo.repository] : [])];
    const sessions = await removeRepositorySessions(this.driver, v2Names);
    // a v2 repository's own records are the `_`-prefixed entries below its name (longer names such
    // as ns/repo/sub live below it too and are other repositories)
    const v2Own: string[] = [];
    for (const root of [`v2/repositories/${repo.full}`, ...(repo.namespace === 'library' ? [`v2/repositories/${repo.repository}`] : [])]) {
      try {
        for (const k of await this.driver.list(root)) if (k.slice(k.lastIndexOf('/') + 1).startsWith('_')) v2Own.push(k);
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
    }
    // its v1 records count whether or not a tag marked it created: a push stopped before its tag
    // leaves complete images, readable with a token for the name, which the delete must not keep
    let v1Own: string[] = [];
    try {
      v1Own = await this.driver.list(keys.repo(repo));
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
    if (!(await this.exists(repo)) && v1Own.length === 0 && v2Own.length === 0 && sessions === 0) throw new RegistryError('REPOSITORY_NOT_FOUND');
    // v2 first: a concurrent v2 reader must not find a manifest whose v1 records are gone
    for (const k of v2Own) await this.remove(k);
    await this.remove(keys.repo(repo));
  }

  /** R18. */
  async setPrivate(repo: RepoName, isPrivate: boolean): Promise<void> {
    await this.ensure(repo);
    if (isPrivate) await this.driver.putContent(keys.private(repo), Buffer.alloc(0));
    else await this.remove(keys.private(repo));
  }

  /** R19. */
  isPrivate(repo: RepoName): Promise<boolean> {
    return keyExists(this.driver, keys.private(repo));
  }

  /**
   * Stand-in index (§3.12): merge new entries before stored ones, first checksum wins per id. A
   * merged list past INDEX_IMAGES_MAX is refused (IMAGE_LIST_TOO_LARGE, 413), the stored one kept:
   * written, it could never be read back (GET images, every later merge would fail). Under the
   * list's own lock (not the repository's, which the v2→v1 bridge holds when it merges): two merges
   * at once each wrote what it had read and its entries, and the last dropped the other's. The
   * stored list is read past the metadata cache: a node that had served GET images merged into the
   * list it had cached, dropping what another node merged since.
   */
  mergeIndexImages(repo: RepoName, entries: readonly IndexImageEntry[]): Promise<void> {
    return this.locks.run(`index-images\n${repo.full}`, () => this.mergeIndexImagesLocked(repo, entries));
  }

  private async mergeIndexImagesLocked(repo: RepoName, entries: readonly IndexImageEntry[]): Promise<void> {
    const stored = await this.indexImages(repo, this.storage);
    const merged = new Map<string, IndexImageEntry>();
    for (const e of [...entries, ...(stored ?? [])]) {
      const prev = merged.get(e.id);
      if (!prev) merged.set(e.id, e.checksum ? { id: e.id, checksum: e.checksum } : { id: e.id });
      else if (!prev.checksum && e.checksum) merged.set(e.id, { id: e.id, checksum: e.checksum });
    }
    const list = Buffer.from(JSON.stringify([...merged.values()]));
    if (list.length > INDEX_IMAGES_MAX)
      throw new RegistryError('IMAGE_LIST_TOO_LARGE', `Repository image list too large: it would take ${list.length} bytes, at most ${INDEX_IMAGES_MAX}`);
    await this.ensure(repo);
    await this.driver.putContent(keys.indexImages(repo), list);
  }

  async indexImages(repo: RepoName, driver = this.driver): Promise<IndexImageEntry[] | undefined> {
    const key = keys.indexImages(repo);
    const raw = await readOptional(driver, key, INDEX_IMAGES_MAX);
    return raw ? parseRecord<IndexImageEntry[]>(raw, key) : undefined;
  }

  /** Every repository in storage (standalone search only: an index answers from its database). */
  async *allRepositories(): AsyncGenerator<RepoName> {
    let namespaces: string[];
    try {
      namespaces = await this.driver.list(keys.repositoriesRoot);
    } catch (e) {
      if (isNotFound(e)) return;
      throw e;
    }
    for (const nsKey of namespaces) {
      let repos: string[] = [];
      try {
        repos = await this.driver.list(nsKey);
      } catch (e) {
        if (!isNotFound(e)) throw e;
      }
      for (const r of repos) {
        const name = parseRepoName(r.slice(keys.repositoriesRoot.length + 1));
        if (name && (await this.exists(name))) yield name;
      }
    }
  }
}

/**
 * Tag metadata as stored (R15/R16), or the default object when none is stored or what is stored is
 * not a JSON object (an imported tree's file: callers read its keys).
 */
function storedOrDefault(raw: Buffer | undefined): Record<string, unknown> {
  if (!raw) return { ...DEFAULT_TAG_JSON };
  try {
    const v = parseRecord<unknown>(raw, 'tag metadata');
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // not JSON (or nested past any the registry writes): as if none were stored
  }
  return { ...DEFAULT_TAG_JSON };
}
