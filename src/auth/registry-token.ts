import { isRegistryError, RegistryError } from '../errors/index.js';
import { parseRepoName } from '../content/names.js';
import { BoundedCache } from '../util/bounded-cache.js';
import { tokenCacheRequests, tokenValidations } from '../metrics/registry.js';
import type { Logger } from '../log/logger.js';
import type { AuthRequest, RegistryAccess, RegistryAuth } from './registry-auth.js';
import type { RepoName } from '../content/names.js';
import { AnswerTooLarge, bodyCapped } from '../util/fetch-body.js';
import { jsonDepthExceeds } from '../http/body.js';

/** The most of an image list (spec §4.2) the registry reads from its index to validate a token. */
const INDEX_IMAGES_MAX_BYTES = 64 * 1024 * 1024;

export interface ParsedToken {
  readonly repository: string;
  readonly access: string;
  readonly signature: string | undefined;
}

/**
 * Parse `Authorization: Token signature=…,repository="ns/repo",access=write` as the Python registry
 * did (spec §1.4): the value must start with `Token` (case-insensitive); pairs `(\w+)[:=][\s"]?([^",]+)"?`.
 * A doubled `Token Token …` (stand-in index tokens) is tolerated (spec Q9).
 */
export function parseTokenHeader(value: string | undefined): ParsedToken | undefined {
  if (!value || !/^token\b/i.test(value)) return undefined;
  const pairs = new Map<string, string>();
  for (const m of value.matchAll(/(\w+)[:=][\s"]?([^",]+)"?/g)) {
    if (!pairs.has(m[1]!)) pairs.set(m[1]!, m[2]!);
  }
  const repository = pairs.get('repository');
  const access = pairs.get('access');
  if (!repository || !access) return undefined;
  return { repository, access, signature: pairs.get('signature') };
}

/**
 * When a token the index vouched for expires, epoch ms: this index's signatures start with their
 * expiry (`<expires>.<account>.<nonce>.<mac>`, auth/v1-token.ts), which the MAC the index checked
 * covers. Another index's opaque signature says nothing: Infinity (token_cache_ttl alone bounds it).
 */
function expiresAt(header: string): number {
  const m = /^(\d{1,15})\.\d+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.exec(parseTokenHeader(header)?.signature ?? '');
  return m ? Number(m[1]) * 1000 : Infinity;
}

const METHOD_ACCESS: Record<string, string> = { GET: 'read', PUT: 'write', POST: 'write', DELETE: 'delete' };

interface CacheEntry {
  readonly ids: ReadonlySet<string>;
}

/**
 * Positive validations kept (Q14), bounded (security issue 10, finding 7): at most 10,000 tokens and
 * about 32 MiB of image ids (one id in a Set: ~128 bytes of heap), expiry enforced on read.
 */
const TOKEN_CACHE = { maxEntries: 10_000, maxBytes: 32 * 1024 * 1024, idBytes: 128 } as const;
/** Repositories whose last id list is kept for sharing between their tokens' cache entries. */
const SHARED_MAX = 1000;

export interface TokenAuthOptions {
  /** Base URL of the index (index_endpoint; this process's own URL when index and registry run together). */
  readonly indexEndpoint: () => string;
  /** Seconds a positive validation is cached (0 = ask every time). */
  readonly cacheTtl: number;
  readonly log: Logger;
  /** Timeout of one call to the index, ms. */
  readonly timeoutMs?: number;
}

/**
 * Token mode (standalone false, spec §4.2): every request carries a token that the index vouches
 * for. The registry asks `GET <index>/v1/repositories/<ns>/<repo>/images` with the client's
 * Authorization header; 200 means valid, and the id list it returns bounds what may be pushed.
 * Positive answers are cached briefly (Q14), keyed by the header value.
 */
export class TokenAuth implements RegistryAuth {
  private readonly cache = new BoundedCache<CacheEntry>({
    maxEntries: TOKEN_CACHE.maxEntries,
    maxBytes: TOKEN_CACHE.maxBytes,
    weight: (e, key) => 2 * key.length + 64 + e.ids.size * TOKEN_CACHE.idBytes,
  });
  /**
   * The last id list the index gave per repository: a validation that gets the same list back keeps
   * this one, so the many tokens of one repository (a client asks for a new one per pull) share one
   * Set instead of holding a copy each (a soak's cache of 1,000 tokens for repositories of 200 images
   * held 1,000 copies). At most SHARED_MAX repositories and the cache's bytes, the least recently
   * used dropped first: before 2026-12-07 only the count was bounded, and 1,000 repositories with
   * large image lists (an index answers up to 64 MiB each) were kept here after the cache had let
   * them go.
   */
  private readonly shared = new BoundedCache<ReadonlySet<string>>({
    maxEntries: SHARED_MAX,
    maxBytes: TOKEN_CACHE.maxBytes,
    weight: (ids, key) => 2 * key.length + 64 + ids.size * TOKEN_CACHE.idBytes,
  });
  constructor(private readonly opts: TokenAuthOptions) {}

  private intern(repository: string, ids: Set<string>): ReadonlySet<string> {
    const prev = this.shared.get(repository);
    if (prev && prev.size === ids.size) {
      let same = true;
      for (const id of ids) {
        if (!prev.has(id)) {
          same = false;
          break;
        }
      }
      if (same) return prev;
    }
    this.shared.set(repository, ids, Infinity);
    return ids;
  }

  private unauthorized(): RegistryError {
    return new RegistryError('REQUIRES_AUTHORIZATION', undefined, { 'WWW-Authenticate': 'Token' });
  }

  async authorize(req: AuthRequest): Promise<RegistryAccess> {
    const header = req.authorization;
    const token = parseTokenHeader(header);
    if (!token || !header) throw this.unauthorized();
    const repo = parseRepoName(token.repository);
    if (!repo || token.repository.split('/').length !== 2) throw this.unauthorized();
    if (req.repo && req.repo.full !== repo.full) throw this.unauthorized();
    const method = req.method === 'HEAD' ? 'HEAD' : req.method;
    const needed = METHOD_ACCESS[method];
    // Spec §4.2 step 4: write ⇒ PUT/POST only, read ⇒ GET only (HEAD fails), delete ⇒ DELETE only.
    // One exception (issue 11): a push probes `GET /v1/images/<id>/json` with its write token; write
    // access to a repository includes reading it, so a write token may GET, and the probe gets 404 for
    // an image the repository does not hold instead of a 401 old clients log as an error.
    const allowed = token.access === needed || (token.access === 'write' && method === 'GET');
    if (['read', 'write', 'delete'].includes(token.access) && !allowed) throw this.unauthorized();
    const ids = await this.validate(header, repo.full);
    return {
      scope: repo,
      allowedIds: ids,
      ...(token.access === 'write' ? { linkSources: (imageId: string) => this.linkSources(header, repo.full, imageId) } : {}),
      confirm: async () => {
        await this.validate(header, repo.full, true);
      },
    };
  }

  private async validate(header: string, repository: string, fresh = false): Promise<ReadonlySet<string>> {
    const key = `${repository}\n${header}`;
    const hit = fresh ? undefined : this.cache.get(key);
    if (!fresh) tokenCacheRequests.cell(hit ? 'hit' : 'miss').value++;
    if (hit) return hit.ids;
    try {
      const ids = await this.ask(header, repository, key);
      tokenValidations.cell('v1', 'valid').value++;
      return ids;
    } catch (e) {
      tokenValidations.cell('v1', isRegistryError(e) && e.code === 'UNAVAILABLE' ? 'unavailable' : 'invalid').value++;
      throw e;
    }
  }

  /** One validation by the index (spec §4.2): the ids it lists for the token's repository. */
  private async ask(header: string, repository: string, key: string): Promise<ReadonlySet<string>> {
    let res: Response;
    try {
      res = await fetch(`${this.opts.indexEndpoint()}/v1/repositories/${repository}/images`, {
        headers: { Authorization: header },
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 15000),
      });
    } catch (e) {
      this.opts.log.error('index unreachable for token validation', { index: this.opts.indexEndpoint(), err: (e as Error).message });
      throw new RegistryError('UNAVAILABLE', 'Index unreachable for token validation');
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      this.cache.delete(key);
      throw this.unauthorized();
    }
    let list: unknown;
    try {
      // a list of flat objects (R12's 100,000 images fit in ~10 MiB): bounded, and its depth checked
      // before parsing, whatever the index at index_endpoint answers
      const body = await bodyCapped(res, INDEX_IMAGES_MAX_BYTES);
      list = jsonDepthExceeds(body, 2) ? undefined : JSON.parse(body.toString('utf8'));
    } catch (e) {
      if (e instanceof AnswerTooLarge)
        this.opts.log.error('the index answered a token validation with too large a list', { index: this.opts.indexEndpoint(), err: e.message });
      throw this.unauthorized();
    }
    if (!Array.isArray(list)) throw this.unauthorized();
    const ids = new Set<string>();
    for (const e of list) {
      if (e && typeof e === 'object' && typeof (e as { id?: unknown }).id === 'string') ids.add((e as { id: string }).id);
      else throw this.unauthorized();
    }
    // Kept for token_cache_ttl, but never past the token's own expiry: a token validated seconds
    // before it expired was served from the cache for up to token_cache_ttl after (tokens-review).
    const ttlMs = Math.min(this.opts.cacheTtl * 1000, expiresAt(header) - Date.now());
    if (ttlMs <= 0) return ids;
    const kept = this.intern(repository, ids);
    this.cache.set(key, { ids: kept }, ttlMs);
    return kept;
  }

  /**
   * Spec §4.4, as this registry uses it: the index names the repositories the token's holder may
   * read that list `imageId`; the caller links from one that truly holds the image. Any failure is
   * "none" (the pusher then uploads the image itself).
   */
  private async linkSources(header: string, repository: string, imageId: string): Promise<RepoName[]> {
    try {
      const res = await fetch(`${this.opts.indexEndpoint()}/v1/repositories/${repository}/layer/${imageId}/access`, {
        headers: { Authorization: header },
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 15000),
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        return [];
      }
      const raw = await bodyCapped(res, 1024 * 1024);
      if (jsonDepthExceeds(raw, 2)) return [];
      const body = JSON.parse(raw.toString('utf8')) as { access?: unknown; repositories?: unknown };
      if (body === null || typeof body !== 'object') return [];
      if (body.access !== true || !Array.isArray(body.repositories)) return [];
      const out: RepoName[] = [];
      for (const r of body.repositories.slice(0, 50)) {
        const name = typeof r === 'string' ? parseRepoName(r) : undefined;
        if (name && name.full !== repository) out.push(name);
      }
      return out;
    } catch (e) {
      this.opts.log.warn('index did not answer a layer access call', { err: (e as Error).message });
      return [];
    }
  }
}
