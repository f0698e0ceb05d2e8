import { goCompact, goString, goTime, topLevelMembers } from './go-json.js';

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
