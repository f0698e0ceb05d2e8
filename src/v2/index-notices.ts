import { parseV2Name } from '../content/v2-names.js';
import type { V2Deps, V2IndexHook } from './deps.js';
import { NoticeRefused, type PendingNotice } from '../content/index-journal.js';

/**
 * Send the index the notices a crash or an unreachable index left pending, deciding from storage
 * what holds now: a pushed tag still there is announced with its current image (idempotent), a
 * deleted tag still absent is forgotten; anything else is done. A notice the index refuses for good
 * (NoticeRefused: the client's token forwarded with it has expired meanwhile, or no longer grants
 * the push) is dropped at once, as a split registry's v1 push notice is, not retried for a day.
 */
export async function replayIndexNotices(deps: V2Deps): Promise<{ sent: number; dropped: number }> {
  const { journal, index, log } = deps;
  if (!journal || !index) return { sent: 0, dropped: 0 };
  return journal.replay(
    (n) =>
      announce(deps, index, n).catch((e: unknown) => {
        if (!(e instanceof NoticeRefused)) throw e;
        log?.warn('the index refused a v2 notice for good: dropped', { op: n.op, name: n.name, error: e.message });
      }),
    (n, e) => log?.warn('index notice not delivered yet', { op: n.op, name: n.name, error: String(e) }),
  );
}

async function announce({ manifests, toV1 }: V2Deps, index: V2IndexHook, n: PendingNotice): Promise<void> {
  const name = parseV2Name(n.name);
  if (!name) return;
  const principal = { account: n.account, admin: n.admin };
  if (n.op === 'pushed' && n.tag) {
    const found = await manifests.get(name, { tag: n.tag });
    if (!found) return; // never landed, or deleted since: nothing to announce
    // a v1 push of the tag since then won: the index learnt that one from the v1 push
    if (toV1 && (await toV1.current(name, n.tag)) !== 'v2') return;
    const chain = toV1 ? await toV1.publish(name, n.tag, found.mediaType, found.bytes, found.digest) : undefined;
    await index.pushed(principal, name, n.tag, chain?.images ?? [], n.authorization);
  } else if (n.op === 'deleted' && n.tags) {
    const gone: string[] = [];
    for (const t of n.tags) if (!(await manifests.resolve(name, { tag: t }))) gone.push(t);
    if (gone.length > 0) await index.deleted(principal, name, gone, n.authorization);
  }
}
