import type { RepoName } from '../content/names.js';

/** What the registry learnt when it authorised a request (spec §4.2–4.4). */
export interface RegistryAccess {
  /** Token mode: the ids the index listed for the token's repository (R4 membership check). */
  readonly allowedIds?: ReadonlySet<string>;
  /** Token mode: may this caller use that image as a parent / read that private image? */
  readonly imageAccess?: (imageId: string) => Promise<boolean>;
  /** Token mode: the repository the token names. */
  readonly tokenRepository?: string;
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
  authorize: () => Promise.resolve({}),
};
