import { createHash } from 'node:crypto';
import { goCompact, goString, goTime, topLevelMembers } from './go-json.js';
import { MAX_ANCESTRY } from './v1-images.js';

/** One v1 image of a chain, as the bridge needs it. */
export interface V1ChainImage {
  /** the v1 JSON bytes exactly as uploaded */
  readonly json: Buffer;
  /** sha256 of the uncompressed layer tar */
  readonly diffId: string;
}

const DROPPED = ['id', 'parent', 'Size', 'parent_id', 'layer_id', 'throwaway'];

function historyEntry(json: Buffer): string {
  const v = JSON.parse(json.toString('utf8')) as {
    created?: unknown;
    author?: unknown;
    comment?: unknown;
    container_config?: { Cmd?: unknown } | null;
  };
  const parts: string[] = [];
  if (typeof v.created === 'string') parts.push(`"created":${goString(goTime(v.created))}`);
  if (typeof v.author === 'string' && v.author !== '') parts.push(`"author":${goString(v.author)}`);
  const cmd = v.container_config?.Cmd;
  const createdBy = Array.isArray(cmd) ? cmd.filter((c): c is string => typeof c === 'string').join(' ') : typeof cmd === 'string' ? cmd : '';
  if (createdBy !== '') parts.push(`"created_by":${goString(createdBy)}`);
  if (typeof v.comment === 'string' && v.comment !== '') parts.push(`"comment":${goString(v.comment)}`);
  return `{${parts.join(',')}}`;
}

/**
 * The image config of a v1 chain (spec v2-bridge §3.2): Docker's MakeConfigFromV1Config over the
 * top image's JSON with rootfs.diff_ids and one history entry per image, serialized with Go's
 * encoding/json rules so the digest is the image ID Docker ≥ 1.8.3 computed. (The struct
 * normalisation Docker applied to images older than 1.8.3 is skipped, as the spec recommends.)
 */
export function configFromV1Chain(chainRootFirst: readonly V1ChainImage[]): Buffer {
  const top = chainRootFirst[chainRootFirst.length - 1];
  if (!top) throw new Error('empty chain');
  const members = topLevelMembers(top.json.toString('utf8'));
  for (const k of DROPPED) members.delete(k);
  members.set('rootfs', `{"type":"layers","diff_ids":[${chainRootFirst.map((c) => goString(c.diffId)).join(',')}]}`);
  members.set('history', `[${chainRootFirst.map((c) => historyEntry(c.json)).join(',')}]`);
  // a manifest needs them: amd64/linux when the v1 JSON has none (spec §3.2 step 5)
  if (!members.has('architecture')) members.set('architecture', '"amd64"');
  if (!members.has('os')) members.set('os', '"linux"');
  const keys = [...members.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.from(`{${keys.map((k) => `${goString(k)}:${goCompact(members.get(k)!)}`).join(',')}}`, 'utf8');
}

/** The gzipped empty tar (spec v2-bridge §3.5): the blob of history entries with empty_layer. */
export const GZIPPED_EMPTY_TAR = Buffer.from('1f8b080000096e8800ff621805a360148c5800080000ffff2eafb5ef00040000', 'hex');
export const GZIPPED_EMPTY_TAR_DIGEST = 'sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4';

export interface V1ViewImage {
  readonly id: string;
  readonly parent: string;
  /** the v1 JSON served for the id */
  readonly json: Buffer;
  /** the layer blob digest (the gzipped empty tar for empty history entries) */
  readonly blob: string;
  readonly empty: boolean;
}

interface HistoryEntry {
  created?: unknown;
  author?: unknown;
  created_by?: unknown;
  comment?: unknown;
  empty_layer?: unknown;
}

/**
 * The v1 view of a v2 image (spec v2-bridge §3.6, distribution's schema1 config builder): one v1
 * image per history entry, ids derived from the blob digests, the parent and (top) the config
 * bytes, so v1 clients and schema1 see the same content-derived ids. Root first.
 * Throws when the image has no v1 view (no history, or history and layers disagree).
 */
export function v1ViewFromConfig(config: Buffer, layerDigests: readonly string[]): V1ViewImage[] {
  const cfg = JSON.parse(config.toString('utf8')) as { history?: HistoryEntry[]; rootfs?: { diff_ids?: unknown[] } };
  const history = cfg.history;
  if (!Array.isArray(history) || history.length === 0) throw new Error('the image config has no history');
  // one v1 image per entry, each with the ancestry of all before it (O(n²) bytes): no view of more
  // than a v1 chain may hold (an 8 MiB config has room for ~400,000 empty_layer entries)
  if (history.length > MAX_ANCESTRY)
    throw new Error(`the image config has ${history.length} history entries, more than the ${MAX_ANCESTRY} images a v1 chain may hold`);
  const nonEmpty = history.filter((h) => h.empty_layer !== true).length;
  const diffIds = Array.isArray(cfg.rootfs?.diff_ids) ? cfg.rootfs!.diff_ids!.length : -1;
  if (nonEmpty !== layerDigests.length || diffIds !== layerDigests.length) throw new Error('history, rootfs and layers disagree');
  const out: V1ViewImage[] = [];
  let parent = '';
  let j = 0;
  for (const [i, h] of history.entries()) {
    const empty = h.empty_layer === true;
    const blob = empty ? GZIPPED_EMPTY_TAR_DIGEST : layerDigests[j++]!;
    const hex = blob.slice('sha256:'.length);
    const isTop = i === history.length - 1;
    let id: string;
    let json: string;
    if (!isTop) {
      id = createHash('sha256').update(`${hex} ${parent}`).digest('hex');
      const parts = [`"id":${goString(id)}`];
      if (parent) parts.push(`"parent":${goString(parent)}`);
      if (typeof h.comment === 'string' && h.comment !== '') parts.push(`"comment":${goString(h.comment)}`);
      parts.push(`"created":${goString(typeof h.created === 'string' ? goTime(h.created) : '0001-01-01T00:00:00Z')}`);
      parts.push(`"container_config":{"Cmd":[${goString(typeof h.created_by === 'string' ? h.created_by : '')}]}`);
      if (typeof h.author === 'string' && h.author !== '') parts.push(`"author":${goString(h.author)}`);
      if (empty) parts.push('"throwaway":true');
      json = `{${parts.join(',')}}`;
    } else {
      id = createHash('sha256').update(`${hex} ${parent} `).update(config).digest('hex');
      const members = topLevelMembers(config.toString('utf8'));
      members.delete('rootfs');
      members.delete('history');
      members.set('id', goString(id));
      if (parent) members.set('parent', goString(parent));
      else members.delete('parent');
      if (empty) members.set('throwaway', 'true');
      const keys = [...members.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      json = `{${keys.map((k) => `${goString(k)}:${goCompact(members.get(k)!)}`).join(',')}}`;
    }
    out.push({ id, parent, json: Buffer.from(json, 'utf8'), blob, empty });
    parent = id;
  }
  return out;
}
