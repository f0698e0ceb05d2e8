import type { RepoName } from '../content/names.js';
import type { ImageScope } from '../content/keys.js';

/** What the registry learnt when it authorised a request (spec §4.2–4.4). */
export interface RegistryAccess {
  /**
   * Whose image records the request sees: the token's repository when the index vouches for tokens
   * (images belong to repositories), null for a registry without accounts (one registry-wide set).
   */
  readonly scope: ImageScope;
  /** Token mode: the ids the index listed for the token's repository (R4 membership check). */
  readonly allowedIds?: ReadonlySet<string>;
  /**
   * Token mode, write tokens: the repositories the token's holder may read that list this image id
   * (the index's word), to link an image the pusher already has access to instead of uploading it.
   */
  readonly linkSources?: (imageId: string) => Promise<RepoName[]>;
  /**
   * Token mode: asks the index again, bypassing the validation cache. Writes that publish (a tag, an
   * image's checksum) call it under the repository's lock, so a push racing a repository delete
   * either lands before the delete removes the content or is refused after it.
   */
  readonly confirm?: () => Promise<void>;
}

export interface AuthRequest {
  readonly method: string;
  readonly authorization: string | undefined;
  /** The repository named by the URL (tags, properties, json, delete routes); image routes have none. */
  readonly repo?: RepoName;
  /** Headers whose names start with X-Docker, for X-Signature checks. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly path: string;
}

/** Decides whether a registry request may go on; throws RegistryError 401 when not. */
export interface RegistryAuth {
  authorize(req: AuthRequest): Promise<RegistryAccess>;
}

/** standalone / disable_token_auth: everything is allowed, no index is asked (spec §4.1). */
export const OPEN_ACCESS: RegistryAuth = {
  authorize: () => Promise.resolve({ scope: null }),
};
