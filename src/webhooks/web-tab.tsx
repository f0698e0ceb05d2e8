import type { IndexService } from '../index/service.js';
import type { SettingsTab } from '../web/routes.js';
import { RegistryError } from '../errors/index.js';
import { isUniqueViolation } from '../db/rows.js';
import { countHooks, createHook, deleteHook, findHook, listDeliveries, listHooks } from './store.js';
import type { Webhooks } from './service.js';
import { MAX_HOOKS_PER_REPOSITORY, validHook } from './routes.js';

const when = (ms: number): string =>
  new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');

/**
 * The repository settings' "Webhooks" tab (web UI, issue 14's slot): the hooks with their recent
 * deliveries (time, state, HTTP status, duration, the receiver's answer, its callback), a form to
 * add one, and per hook "Send test" and "Remove". Every form posts to the tab's URL with `op`.
 */
export function webhooksTab(index: IndexService, hooks: Webhooks): SettingsTab {
  return {
    id: 'webhooks',
    title: 'Webhooks',
    async render({ repo, csrf, action }) {
      const list = await listHooks(index.db, repo.id);
      const deliveries = await Promise.all(list.map((h) => listDeliveries(index.db, h.id, 10)));
      return (
        <>
          <h2 id="s-webhooks">Webhooks</h2>
          <p class="hint">
            After each push of a tag (v1 or v2) every hook receives Docker Hub's JSON payload by POST. A receiver may validate the push by posting{' '}
            <code>{'{"state": "success"}'}</code> to the payload's <code>callback_url</code>; a chained hook fires only after the previous hook's success. With
            a secret, each delivery carries <code>X-Registry-Signature-256: sha256=&lt;HMAC of the body&gt;</code>.
          </p>
          {list.length === 0 ? (
            <p class="empty">No webhooks.</p>
          ) : (
            list.map((h, i) => (
              <section class="card" aria-label={`Webhook ${h.name}`} data-hook={h.name}>
                <h3>{h.name}</h3>
                <p>
                  <code>{h.url}</code>
                  {h.hasSecret ? ' · signed' : ''}
                  {h.chained ? ' · chained after the previous hook' : ''}
                </p>
                <div class="row">
                  <form method="post" action={action}>
                    <input type="hidden" name="_csrf" value={csrf} />
                    <input type="hidden" name="op" value="test" />
                    <input type="hidden" name="id" value={String(h.id)} />
                    <button type="submit" class="secondary" aria-label={`Send a test delivery to ${h.name}`}>
                      Send test
                    </button>
                  </form>
                  <form method="post" action={action} data-confirm={`Remove the webhook ${h.name}?`}>
                    <input type="hidden" name="_csrf" value={csrf} />
                    <input type="hidden" name="op" value="remove" />
                    <input type="hidden" name="id" value={String(h.id)} />
                    <button type="submit" class="secondary" aria-label={`Remove ${h.name}`}>
                      Remove
                    </button>
                  </form>
                </div>
                {deliveries[i]!.length === 0 ? (
                  <p class="empty">No deliveries yet.</p>
                ) : (
                  <table class="deliveries">
                    <caption class="sr-only">Recent deliveries of {h.name}</caption>
                    <thead>
                      <tr>
                        <th scope="col">Queued</th>
                        <th scope="col">Event</th>
                        <th scope="col">State</th>
                        <th scope="col">Last attempt</th>
                        <th scope="col">Callback</th>
                      </tr>
                    </thead>
                    <tbody>
                      {deliveries[i]!.map((d) => {
                        const last = d.attemptsLog[d.attemptsLog.length - 1];
                        return (
                          <tr data-delivery={d.id}>
                            <td>{when(d.createdAt)}</td>
                            <td>
                              {d.event}
                              {d.tag ? ` ${d.tag}` : ''}
                            </td>
                            <td>
                              {d.state}
                              {d.attempts > 1 ? ` (${d.attempts} attempts)` : ''}
                            </td>
                            <td>
                              {last ? `${last.status ?? last.error ?? '-'} in ${last.durationMs} ms` : '-'}
                              {last?.responseExcerpt ? (
                                <>
                                  <br />
                                  <code>{last.responseExcerpt.slice(0, 120)}</code>
                                </>
                              ) : null}
                            </td>
                            <td>{d.callback ? `${d.callback.state}${d.callback.description ? `: ${d.callback.description}` : ''}` : '-'}</td>
                          </tr>
                        );
                      })}
                    </tbody>
                  </table>
                )}
              </section>
            ))
          )}
          <h3>Add a webhook</h3>
          <form method="post" action={action}>
            <input type="hidden" name="_csrf" value={csrf} />
            <input type="hidden" name="op" value="add" />
            <div>
              <label for="hook-name">Name</label>
              <input id="hook-name" type="text" name="name" required maxLength={100} autocomplete="off" />
            </div>
            <div>
              <label for="hook-url">URL</label>
              <input id="hook-url" type="url" name="url" required maxLength={2048} autocomplete="off" placeholder="https://ci.example.com/hooks/docker" />
            </div>
            <div>
              <label for="hook-secret">Secret (optional)</label>
              <input id="hook-secret" type="password" name="secret" maxLength={200} autocomplete="new-password" />
            </div>
            <div>
              <label>
                <input type="checkbox" name="chained" /> Chained: fire only after the previous hook's success callback
              </label>
            </div>
            <button type="submit">Add webhook</button>
          </form>
        </>
      );
    },
    async post({ repo, user, form }) {
      const op = form.get('op');
      if (op === 'add') {
        const h = validHook(
          {
            name: form.get('name') ?? undefined,
            url: form.get('url') ?? undefined,
            secret: form.get('secret') ?? undefined,
            chained: form.get('chained') ?? undefined,
          },
          hooks.destinations,
        );
        if ((await countHooks(index.db, repo.id)) >= MAX_HOOKS_PER_REPOSITORY)
          throw new RegistryError('INVALID_DATA', `At most ${MAX_HOOKS_PER_REPOSITORY} webhooks per repository`);
        try {
          await createHook(index.db, repo.id, h);
        } catch (e) {
          if (isUniqueViolation(e)) throw new RegistryError('INVALID_DATA', `A webhook named ${h.name} exists`);
          throw e;
        }
        return;
      }
      const hook = await findHook(index.db, repo.id, Number(form.get('id')));
      if (!hook) throw new RegistryError('NOT_FOUND', 'Webhook not found');
      if (op === 'remove') await deleteHook(index.db, repo.id, hook.id);
      else if (op === 'test') {
        if ((await hooks.test(hook, repo, user.username)) === undefined) throw new RegistryError('TOO_MANY_DELIVERIES');
      } else throw new RegistryError('INVALID_DATA');
    },
  };
}
