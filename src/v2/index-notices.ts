import { parseV2Name } from '../content/v2-names.js';
import type { V2Deps } from './deps.js';

/**
 * Send the index the notices a crash or an unreachable index left pending, deciding from storage
 * what holds now: a pushed tag still there is announced with its current image (idempotent), a
 * deleted tag still absent is forgotten; anything else is done.
 */
export async function replayIndexNotices(deps: V2Deps): Promise<{ sent: number; dropped: number }> {
  const { journal, index, manifests, toV1, log } = deps;
  if (!journal || !index) return { sent: 0, dropped: 0 };
  return journal.replay(
    async (n) => {
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
    },
    (n, e) => log?.warn('index notice not delivered yet', { op: n.op, name: n.name, error: String(e) }),
  );
}
