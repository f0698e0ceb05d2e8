import type { Knex } from 'knex';
import { createHmac, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { RepoName } from '../content/names.js';
import { findRepository, type Repository } from '../db/repositories.js';
import { findFullDescription } from '../db/web.js';
import { toNum } from '../db/rows.js';
import type { Logger } from '../log/logger.js';
import type { Config } from '../config/schema.js';
import { DestinationPolicy, postWebhook } from './outgoing.js';
import { claimDue, enqueuePush, enqueueTest, finishAttempt, pruneDeliveries, type Claimed, type Webhook } from './store.js';

/** Headers of every delivery (besides Content-Type and User-Agent). */
export const DELIVERY_HEADER = 'X-Registry-Delivery';
export const EVENT_HEADER = 'X-Registry-Event';
/** `sha256=<hex HMAC-SHA256 of the body with the hook's secret>`, when it has one (as GitHub's X-Hub-Signature-256). */
export const SIGNATURE_HEADER = 'X-Registry-Signature-256';

export interface WebhookOptions {
  /** Seconds an attempt may take. */
  readonly timeout: number;
  /** Attempts before a delivery is failed. */
  readonly maxAttempts: number;
  /** Seconds before the 2nd attempt; doubled after each failure up to `retryMax`. */
  readonly retryBase: number;
  readonly retryMax: number;
  /** Seconds between looks at the outbox when nothing woke the sender. */
  readonly pollInterval: number;
  /** Deliveries sent at once by this node. */
  readonly concurrency: number;
  /** Absolute URL of the index as receivers reach it (callback_url, repo_url); null: the pushing request's origin. */
  readonly baseUrl: string | null;
  readonly userAgent: string;
  /** Where deliveries may connect: public addresses, and the operator's `webhook_allowed_networks`. */
  readonly destinations: DestinationPolicy;
}

/** The webhook_* keys of a configuration as options; concurrency and userAgent are the caller's. */
export function webhookOptions(
  config: Pick<
    Config,
    | 'webhook_timeout'
    | 'webhook_max_attempts'
    | 'webhook_retry_base'
    | 'webhook_retry_max'
    | 'webhook_poll_interval'
    | 'webhook_base_url'
    | 'webhook_allowed_networks'
  >,
  own: Pick<WebhookOptions, 'concurrency' | 'userAgent'>,
): WebhookOptions {
  return {
    timeout: config.webhook_timeout,
    maxAttempts: config.webhook_max_attempts,
    retryBase: config.webhook_retry_base,
    retryMax: config.webhook_retry_max,
    pollInterval: config.webhook_poll_interval,
    baseUrl: config.webhook_base_url,
    destinations: new DestinationPolicy(config.webhook_allowed_networks),
    ...own,
  };
}

/** The signature header value of a body. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Docker Hub's payload (spec operations §3.1), images = v1 ids of the pushed chain, top last. */
export async function hubPayload(
  db: Knex,
  repo: Repository,
  push: { tag: string; images: readonly string[]; pusher: string; pushedAt: number },
  base: string,
  token: string,
): Promise<string> {
  const comments = (await db('comments').where({ repo_id: repo.id }).count({ n: '*' }).first()) as { n: unknown } | undefined;
  const fullDescription = await findFullDescription(db, repo.id);
  const repoUrl = `${base}/u/${repo.namespace}/${repo.name}/`;
  return JSON.stringify({
    callback_url: `${repoUrl}hook/${token}/`,
    push_data: { images: push.images, pushed_at: Math.floor(push.pushedAt / 1000), pusher: push.pusher, tag: push.tag },
    repository: {
      comment_count: toNum(comments?.n),
      date_created: Math.floor(repo.createdAt.getTime() / 1000),
      description: repo.description,
      dockerfile: '',
      full_description: fullDescription,
      is_official: repo.namespace === 'library',
      is_private: repo.private,
      is_trusted: false,
      name: repo.name,
      namespace: repo.namespace,
      owner: repo.namespace,
      repo_name: `${repo.namespace}/${repo.name}`,
      repo_url: repoUrl,
      star_count: repo.starCount,
      status: 'Active',
    },
  });
}

/** How long, and how many per hook, finished deliveries stay in the history. */
const HISTORY_MS = 30 * 86400_000;
const HISTORY_PER_HOOK = 200;

/** Bytes of a receiver's answer kept in the history. */
const EXCERPT_BYTES = 512;

/**
 * The webhooks of an index node: queues deliveries in the outbox when a tag is pushed (one insert;
 * the push never waits for a receiver), and sends due deliveries from the outbox shared by every
 * node, each taken by one node, retried with exponential backoff up to a cap, then failed.
 */
export class Webhooks {
  readonly node = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private stopped = true;
  private inflight = new Set<Promise<void>>();
  private passing: Promise<void> | undefined;
  /** Called after each attempt (tests and metrics): delivery id, status, ms from queueing. */
  onAttempt?: (e: { id: string; status: number | null; delivered: boolean; sinceQueuedMs: number }) => void;

  constructor(
    private readonly db: Knex,
    private readonly opts: WebhookOptions,
    /** This index's own origin, when webhook_base_url is unset. */
    private readonly origin: () => string,
    private readonly log: Logger,
  ) {}

  /** A tag was pushed (v1 or v2): queue one delivery per hook of the repository (once per `noticeId`). */
  async pushed(name: RepoName, tag: string, images: readonly string[], pusher: string | null, noticeId?: string): Promise<number> {
    const repo = await findRepository(this.db, name.namespace, name.repository);
    if (!repo) return 0;
    const hooks = (await this.db('webhooks').where({ repo_id: repo.id }).count({ n: '*' }).first()) as { n: unknown } | undefined;
    if (toNum(hooks?.n) === 0) return 0;
    const now = Date.now();
    // one payload for every hook but its callback_url: built once around a placeholder, which
    // comes first in the text (callback_url is the first key), so one replace puts the token in
    const mark = randomBytes(16).toString('hex');
    const template = await hubPayload(this.db, repo, { tag, images, pusher: pusher ?? '', pushedAt: now }, this.base(), mark);
    const ids = await enqueuePush(this.db, repo.id, tag, (token) => template.replace(mark, token), now, noticeId);
    this.kick();
    return ids.length;
  }

  /** Where deliveries may go (hooks to a refused address literal are refused when added). */
  get destinations(): DestinationPolicy {
    return this.opts.destinations;
  }

  private base(): string {
    return (this.opts.baseUrl ?? this.origin()).replace(/\/+$/, '');
  }

  /** A "test" delivery to one hook: the payload of a push of `latest` with no images. */
  async test(hook: Webhook, repo: Repository, pusher: string): Promise<string | undefined> {
    const base = this.base();
    const mark = randomBytes(16).toString('hex');
    const template = await hubPayload(this.db, repo, { tag: 'latest', images: [], pusher, pushedAt: Date.now() }, base, mark);
    const id = await enqueueTest(this.db, hook, (token) => template.replace(mark, token));
    if (id !== undefined) this.kick();
    return id;
  }

  private pruneTimer: NodeJS.Timeout | undefined;

  /** Start sending (each index node); the history is pruned hourly (30 days, 200 finished deliveries per hook). */
  start(): void {
    this.stopped = false;
    this.schedule(0);
    const prune = (): void => {
      pruneDeliveries(this.db, HISTORY_MS, HISTORY_PER_HOOK).then(
        (n) => n > 0 && this.log.info('old webhook deliveries pruned', { count: n }),
        (e: unknown) => this.log.warn('webhook history not pruned', { err: String(e) }),
      );
    };
    this.pruneTimer = setInterval(prune, 3600_000);
    this.pruneTimer.unref();
    setTimeout(prune, 60_000).unref();
  }

  /** Stop taking deliveries; wait for those being sent. What is left stays in the outbox. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pruneTimer);
    // a look at the outbox under way finishes first (its claims become sends waited for below):
    // the database may be closed right after stop()
    await this.passing;
    await Promise.allSettled([...this.inflight]);
  }

  /** Look at the outbox now (after queueing, and after a callback released a chain). */
  kick(): void {
    if (this.stopped) return;
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  private schedule(ms: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.passing = this.pass();
    }, ms);
    this.timer.unref();
  }

  private async pass(): Promise<void> {
    if (this.stopped || this.running) return;
    this.running = true;
    this.again = false;
    try {
      const room = this.opts.concurrency - this.inflight.size;
      if (room > 0) {
        const lease = (this.opts.timeout + 30) * 1000;
        const claimed = await claimDue(this.db, this.node, room, lease);
        for (const c of claimed) {
          const p = this.send(c).finally(() => {
            this.inflight.delete(p);
            this.kick();
          });
          this.inflight.add(p);
        }
        if (claimed.length === room) this.again = true;
      }
    } catch (e) {
      this.log.warn('webhook outbox not read', { err: String(e) });
    } finally {
      this.running = false;
      if (!this.stopped) this.schedule(this.again ? 0 : this.opts.pollInterval * 1000);
    }
  }

  private async send(c: Claimed): Promise<void> {
    const started = performance.now();
    let status: number | null = null;
    let error: string | null = null;
    let body: string | null = null;
    try {
      // redirects are not followed; only permitted addresses are connected to (outgoing.ts)
      const res = await postWebhook(
        c.url,
        {
          'Content-Type': 'application/json',
          'User-Agent': this.opts.userAgent,
          [DELIVERY_HEADER]: c.id,
          [EVENT_HEADER]: c.event,
          ...(c.secret ? { [SIGNATURE_HEADER]: signBody(c.secret, c.payload) } : {}),
        },
        c.payload,
        { timeoutMs: this.opts.timeout * 1000, policy: this.opts.destinations, maxBytes: EXCERPT_BYTES },
      );
      status = res.status;
      body = res.excerpt;
    } catch (e) {
      error = (e as Error).name === 'TimeoutError' ? `no answer within ${this.opts.timeout} s` : String((e as Error).message);
    }
    const durationMs = performance.now() - started;
    const delivered = status !== null && status >= 200 && status < 300;
    if (!delivered && error === null) error = `HTTP ${status}`;
    const attempt = c.attempts + 1;
    const now = Date.now();
    const retryAt = attempt >= this.opts.maxAttempts ? undefined : now + this.backoffMs(attempt);
    try {
      await finishAttempt(
        this.db,
        this.node,
        c.id,
        { status, durationMs, error: delivered ? null : error, excerpt: body },
        delivered ? { delivered: true } : { delivered: false, ...(retryAt !== undefined ? { retryAt } : {}) },
        now,
      );
    } catch (e) {
      this.log.warn('webhook attempt not recorded', { delivery: c.id, err: String(e) });
    }
    if (!delivered) this.log.info('webhook delivery failed', { delivery: c.id, attempt, status, error, retry: retryAt !== undefined });
    this.onAttempt?.({ id: c.id, status, delivered, sinceQueuedMs: now - c.createdAt });
  }

  /** Exponential backoff with a cap, with ±20 % jitter so receivers coming back are not stampeded. */
  backoffMs(attempt: number): number {
    const base = Math.min(this.opts.retryMax, this.opts.retryBase * 2 ** (attempt - 1)) * 1000;
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }
}
