import type { Knex } from 'knex';
import { hostname } from 'node:os';
import { listenAddress } from '../config/load.js';
import { defaultAuthority } from '../config/advertise.js';
import type { StorageDriver } from '../storage/driver.js';
import { addQueueDepthSource } from '../metrics/registry.js';
import { deliveryCounts } from '../webhooks/store.js';
import { Webhooks, webhookOptions } from '../webhooks/service.js';
import { defaultNode, Notifier } from '../notifications/notifier.js';
import type { Site } from './site.js';

/** Who hears of pushes, pulls and deletes (issue 15): Hub webhooks of the index, distribution's notifications. */
export interface EventServices {
  /** distribution's notifications: events of this registry node, queued in storage per endpoint. */
  readonly notifier: Notifier | undefined;
  /** Hub webhooks of the index's repositories, queued in its database. */
  readonly webhooks: Webhooks | undefined;
  /** Start sending, once the server listens on `port`. */
  start(port: number): Promise<void>;
  /** Stop the queue-depth gauges and the senders. */
  stop(): Promise<void>;
}

/**
 * The notifier (registry nodes with live endpoints) and the webhook sender (an index with
 * `webhooks: true`), their queue depths sampled at scrape time (legacy_registry_event_*).
 * `boundPort` names this index in callback URLs once it listens.
 */
export function assembleEvents(site: Site, driver: StorageDriver, db: Knex | undefined, boundPort: () => number): EventServices {
  const { config, role, log, version } = site;
  const liveEndpoints = (config.notifications?.endpoints ?? []).filter((e) => !e.disabled);
  const notifier =
    role !== 'index' && liveEndpoints.length > 0
      ? new Notifier(
          driver,
          {
            endpoints: liveEndpoints,
            includeReferences: config.notifications?.events?.includereferences ?? false,
            node: config.notifications?.node ?? defaultNode(),
            sourceAddr: `${hostname()}:${listenAddress(config).port}`,
          },
          log,
        )
      : undefined;
  const metricSources: (() => void)[] = [];
  if (notifier) {
    metricSources.push(addQueueDepthSource(async () => Object.fromEntries(notifier.stats().map((q) => [q.endpoint, q.depth]))));
  }
  let webhooks: Webhooks | undefined;
  if (db && config.webhooks) {
    webhooks = new Webhooks(
      db,
      webhookOptions(config, { concurrency: config.webhook_concurrency, userAgent: `legacy-registry/${version} (webhooks)` }),
      // callback_url and repo_url: this index under a name that reaches this machine
      () => `${config.tls_certificate ? 'https' : 'http'}://${defaultAuthority(config, boundPort())}`,
      log,
    );
    metricSources.push(
      addQueueDepthSource(async () => {
        const counts = await deliveryCounts(db);
        return { webhooks: (counts.pending ?? 0) + (counts.sending ?? 0) + (counts.waiting ?? 0) };
      }),
    );
  }
  return {
    notifier,
    webhooks,
    start: async (port) => {
      webhooks?.start();
      if (notifier) {
        notifier.sourceAddr = `${hostname()}:${port}`;
        await notifier.start();
      }
    },
    stop: async () => {
      for (const remove of metricSources) remove();
      await webhooks?.stop();
      await notifier?.stop();
    },
  };
}
