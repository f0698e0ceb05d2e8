import type { Config } from '../config/schema.js';
import type { BlobStore } from '../content/blob-store.js';
import type { V2Name } from '../content/v2-names.js';
import type { V2Uploads } from '../content/v2-uploads.js';
import type { V2Manifests } from '../content/v2-manifests.js';
import type { V1ToV2 } from '../content/v1-to-v2.js';
import type { V2ToV1 } from '../content/v2-to-v1.js';
import type { Schema1Bridge } from '../content/schema1-bridge.js';
import type { V2Authorizer, V2Principal } from '../auth/v2-registry-auth.js';
import type { CatalogSource } from '../content/v2-catalog.js';
import type { Logger } from '../log/logger.js';
import type { IndexJournal } from '../content/index-journal.js';
import type { Notifier } from '../notifications/notifier.js';
import type { PullThrough } from '../mirror/pull-through.js';

/** The index learning of v2 pushes (issue 4): repository, tag and top v1 id of the bridge. */
export interface V2IndexHook {
  /** images: the derived v1 chain, root first (the last is the tagged one); empty without a v1 view. */
  pushed(
    principal: V2Principal,
    name: V2Name,
    tag: string,
    images: readonly { id: string; checksum?: string }[],
    authorization: string | undefined,
  ): Promise<void>;
  deleted(principal: V2Principal, name: V2Name, tags: readonly string[], authorization: string | undefined): Promise<void>;
}

export interface V2Deps {
  readonly config: Config;
  readonly blobs: BlobStore;
  readonly uploads: V2Uploads;
  readonly manifests: V2Manifests;
  /** v1-pushed tags seen through /v2/ (the bridge). */
  readonly fromV1?: V1ToV2;
  /** v2-pushed tags made visible to v1 clients (the bridge). */
  readonly toV1?: V2ToV1;
  /** signed schema1 for clients that take nothing newer. */
  readonly schema1?: Schema1Bridge;
  /** Who may do what (spec §4.4); default: everything (a standalone registry without auth). */
  readonly auth?: V2Authorizer;
  /** Where /v2/_catalog reads names; absent: the catalog answers UNSUPPORTED. */
  readonly catalog?: CatalogSource;
  /** Told of every tagged manifest push, when an index runs in this process. */
  readonly index?: V2IndexHook;
  readonly log?: Logger;
  /**
   * Answers derived from metadata (a tag's manifest for an Accept header, a tag list) are kept for
   * this long while `stamp()` (bumped by every write of this node) is unchanged; another node's
   * change shows within the time, as with the metadata cache. Absent or 0: nothing kept.
   */
  readonly answerCache?: { readonly ttlMs: number; readonly stamp: () => number };
  /** Write-ahead intents of index notices (with `index`), replayed by {@link replayIndexNotices}. */
  readonly journal?: IndexJournal;
  /** distribution's notifications (issue 15): events of pushes, pulls, mounts and deletes. */
  readonly notifier?: Notifier;
  /**
   * The pull-through mirror (issue 13): names under an upstream's prefix are read from it through
   * the local cache; writes to them answer UNSUPPORTED. Other names are local repositories.
   */
  readonly mirror?: PullThrough;
}
