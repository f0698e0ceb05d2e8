import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context } from 'koa';
import type { Knex } from 'knex';
import {
  credentialFingerprint,
  findSessionWithAccount,
  removeExpiredSessions,
  removeSession,
  removeUserSessions,
  saveSession,
  touchSession,
  trimUserSessions,
  type WebSession,
} from '../db/web.js';
import type { User } from '../db/users.js';
import type { Logger } from '../log/logger.js';

/**
 * Browser sessions of the web UI (issue 14): a random token in an httpOnly, SameSite=Lax cookie
 * (Secure under TLS), its sha256 kept in the index database (so every index node honours it and a
 * copy of the database holds no usable token). A session ends when it expires, on logout, when its
 * account is deactivated or deleted, and when the account's password changes by any path.
 *
 * CSRF: every form carries a token. Signed in, it is the session's own random token; signed out
 * (login, signup), a random token in a second httpOnly cookie that the form must repeat (double
 * submit: another site can neither read nor set our cookies). Unsafe requests from another origin
 * are refused on their Origin header too.
 */
export const SESSION_COOKIE = 'lr_session';
export const CSRF_COOKIE = 'lr_csrf';

const sha256hex = (s: string): string => createHash('sha256').update(s).digest('hex');
const TOKEN = /^[A-Za-z0-9_-]{20,100}$/;

export interface SessionOptions {
  /** Seconds a session lives without use (sliding). */
  readonly ttl: number;
  /**
   * Seconds a session lives at most from its sign-in, however often it is used (web_session_max_age;
   * before 2026-12-07 a session used at least every `ttl` never ended). Absent: no such bound.
   */
  readonly maxAge?: number;
  /** Cookies with Secure (served over TLS). */
  readonly secure: boolean;
}

export interface WebIdentity {
  readonly user: User | undefined;
  readonly session: WebSession | undefined;
  /** The token forms of this page carry. */
  readonly csrf: string;
}

/**
 * Sessions one account keeps: a sign-in past it ends the account's least recently used one. Each
 * sign-in adds a row that lives web_session_ttl (14 days) unused; before 2026-12-07 nothing bounded
 * their number, and one account signing in in a loop grew the database without end.
 */
export const MAX_SESSIONS_PER_ACCOUNT = 64;

/** Slide the expiry at most this often (each page view need not write). */
const TOUCH_EVERY_MS = 5 * 60_000;
const PURGE_EVERY_MS = 10 * 60_000;

export class Sessions {
  private lastPurge = 0;
  constructor(
    private readonly db: Knex,
    private readonly opts: SessionOptions,
    private readonly log?: Logger,
  ) {}

  private cookie(ctx: Context, name: string, value: string | null, maxAgeSec?: number): void {
    const parts = [`${name}=${value ?? ''}`, 'Path=/', 'HttpOnly', 'SameSite=Lax'];
    if (this.opts.secure || ctx.secure) parts.push('Secure');
    if (value === null) parts.push('Max-Age=0');
    else if (maxAgeSec !== undefined) parts.push(`Max-Age=${maxAgeSec}`);
    ctx.append('Set-Cookie', parts.join('; '));
  }

  private readCookie(ctx: Context, name: string): string | undefined {
    const header = ctx.get('Cookie');
    if (!header || header.length > 8192) return undefined;
    for (const part of header.split(';')) {
      const i = part.indexOf('=');
      if (i < 0) continue;
      if (part.slice(0, i).trim() === name) {
        const v = part.slice(i + 1).trim();
        return TOKEN.test(v) ? v : undefined;
      }
    }
    return undefined;
  }

  /** Who is browsing: the session's active account, or anonymous (with a form token). */
  async identify(ctx: Context): Promise<WebIdentity> {
    const now = new Date();
    this.purge(now);
    const token = this.readCookie(ctx, SESSION_COOKIE);
    if (token) {
      const found = await findSessionWithAccount(this.db, sha256hex(token));
      const s = found?.session;
      // deactivated, or the password changed since sign-in: the session is over
      if (s && found.user.active && found.cred === s.cred && s.expiresAt > now && now < this.endOf(s.createdAt)) {
        if (now.getTime() - s.lastSeenAt.getTime() > TOUCH_EVERY_MS) {
          const expires = this.expiry(s.createdAt, now);
          await touchSession(this.db, s.id, now, expires);
          // the cookie slides with the session (never past its last moment)
          this.cookie(ctx, SESSION_COOKIE, token, Math.max(1, Math.ceil((expires.getTime() - now.getTime()) / 1000)));
        }
        return { user: found.user, session: s, csrf: s.csrf };
      }
      if (s) await removeSession(this.db, s.id);
      this.cookie(ctx, SESSION_COOKIE, null);
    }
    let csrf = this.readCookie(ctx, CSRF_COOKIE);
    if (!csrf) {
      csrf = randomBytes(24).toString('base64url');
      this.cookie(ctx, CSRF_COOKIE, csrf);
    }
    return { user: undefined, session: undefined, csrf };
  }

  /** Start a session for an account that just proved its password. */
  async start(ctx: Context, user: User): Promise<WebSession> {
    const token = randomBytes(32).toString('base64url');
    const now = new Date();
    const s: WebSession = {
      id: sha256hex(token),
      userId: user.id,
      csrf: randomBytes(24).toString('base64url'),
      cred: (await credentialFingerprint(this.db, user.id)) ?? '',
      createdAt: now,
      lastSeenAt: now,
      expiresAt: this.expiry(now, now),
    };
    await saveSession(this.db, s);
    await trimUserSessions(this.db, user.id, MAX_SESSIONS_PER_ACCOUNT);
    this.cookie(ctx, SESSION_COOKIE, token, Math.ceil((s.expiresAt.getTime() - now.getTime()) / 1000));
    return s;
  }

  /** The last moment of a session signed in at `created`, however it is used (maxAge). */
  private endOf(created: Date): Date {
    return new Date(this.opts.maxAge === undefined ? Number.MAX_SAFE_INTEGER : created.getTime() + this.opts.maxAge * 1000);
  }

  /** A session's expiry when used at `now`: `ttl` on, but never past its last moment. */
  private expiry(created: Date, now: Date): Date {
    return new Date(Math.min(now.getTime() + this.opts.ttl * 1000, this.endOf(created).getTime()));
  }

  async end(ctx: Context, session: WebSession | undefined): Promise<void> {
    if (session) await removeSession(this.db, session.id);
    this.cookie(ctx, SESSION_COOKIE, null);
  }

  /**
   * After a password change: every other session of the account ends, and this browser gets a
   * fresh session (the old one's fingerprint no longer matches).
   */
  async restart(ctx: Context, user: User, current: WebSession | undefined): Promise<number> {
    const ended = await removeUserSessions(this.db, user.id, current?.id);
    if (current) await removeSession(this.db, current.id);
    await this.start(ctx, user);
    return ended;
  }

  /** Is this unsafe request's form token the one of its session (or pre-session cookie)? */
  checkCsrf(ctx: Context, identity: WebIdentity, submitted: string | undefined): boolean {
    if (!submitted || !identity.csrf) return false;
    // signed out, the cookie must have come with the request (a fresh one set now does not count)
    if (!identity.session && this.readCookie(ctx, CSRF_COOKIE) !== identity.csrf) return false;
    const a = Buffer.from(submitted);
    const b = Buffer.from(identity.csrf);
    return a.length === b.length && timingSafeEqual(a, b);
  }

  private purge(now: Date): void {
    if (now.getTime() - this.lastPurge < PURGE_EVERY_MS) return;
    this.lastPurge = now.getTime();
    removeExpiredSessions(this.db, now).catch((e: unknown) => this.log?.warn('expired web sessions not removed', { err: String(e) }));
  }
}
