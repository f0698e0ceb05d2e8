import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { open, readFile, rename, rm } from 'node:fs/promises';
import { compare, hash } from 'bcryptjs';
import { RegistryError } from '../errors/index.js';
import { parseBasic, type V1TokenSigner } from './v1-token.js';
import type { AuthRequest, RegistryAccess, RegistryAuth } from './registry-auth.js';

/** A bcrypt hash of random bytes: unknown users cost one bcrypt compare too (spec v2-bridge §4.6). */
const DUMMY = '$2b$10$yP0oLmuWyCUFFAMMLve27uuj/6yhcXCwB0dLffFf69Z9T0MC8/Pcy';
const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

/** `user:hash` lines; only bcrypt hashes are kept (others never match, as in distribution). */
export function parseEntries(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const h = line.slice(i + 1);
    if (BCRYPT.test(h)) out.set(line.slice(0, i), h.replace(/^\$2y\$/, '$2b$'));
  }
  return out;
}

/**
 * The htpasswd file of `v2_auth: htpasswd` (spec §4.6): bcrypt only; re-read whenever its mtime
 * (or size) changes, as distribution 2.8 does, so edits apply without a restart.
 */
export class Htpasswd {
  private entries = new Map<string, string>();
  private stamp = '';

  constructor(readonly path: string) {
    this.reload();
  }

  private reload(): void {
    let st;
    try {
      st = statSync(this.path);
    } catch {
      this.entries = new Map();
      this.stamp = 'missing';
      return;
    }
    const stamp = `${st.mtimeMs}:${st.size}:${st.ino}`;
    if (stamp === this.stamp) return;
    this.entries = parseEntries(readFileSync(this.path, 'utf8'));
    this.stamp = stamp;
  }

  async verify(user: string, password: string): Promise<boolean> {
    this.reload();
    const h = this.entries.get(user);
    const ok = await compare(password, h ?? DUMMY);
    return ok && h !== undefined;
  }
}

/**
 * Add, replace (password given) or remove (undefined) one entry; creates the file; writes a
 * temporary file and renames it over the old one (atomic for readers). Returns whether the user
 * existed before.
 */
export async function writeHtpasswdEntry(path: string, user: string, password: string | undefined, cost: number): Promise<boolean> {
  let text = '';
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const kept = lines.filter((l) => l.slice(0, l.indexOf(':')) !== user);
  const existed = kept.length !== lines.length;
  if (password !== undefined) {
    // distribution and Apache write $2y$; the hash itself is the same algorithm as $2b$.
    const h = (await hash(password, cost)).replace(/^\$2[ab]\$/, '$2y$');
    kept.push(`${user}:${h}`);
  }
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(kept.map((l) => `${l}\n`).join(''));
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  return existed;
}

/** What the v1 routes of a standalone registry in htpasswd mode check (spec v2-bridge §4.6). */
export interface HtpasswdGate {
  readonly file: Htpasswd;
  /** Signs the stand-in index's X-Docker-Token values, so the registry can check them. */
  readonly signer: V1TokenSigner;
  readonly realm: string;
}

/** The Basic challenge of htpasswd mode. */
export function basicChallenge(realm: string): Record<string, string> {
  return { 'WWW-Authenticate': `Basic realm="${realm.replace(/["\\]/g, '\\$&')}"` };
}

/** The account of valid Basic credentials, else undefined. */
export async function htpasswdUser(gate: HtpasswdGate, authorization: string | undefined): Promise<string | undefined> {
  const creds = parseBasic(authorization);
  return creds && (await gate.file.verify(creds.username, creds.password)) ? creds.username : undefined;
}

/**
 * v1 registry routes of a standalone registry in htpasswd mode: a registry without an index has no
 * other gate, so every request needs Basic credentials from the file, or a token the stand-in index
 * issued (after checking them) for the repository the URL names.
 */
export class HtpasswdRegistryAuth implements RegistryAuth {
  constructor(private readonly gate: HtpasswdGate) {}

  async authorize(req: AuthRequest): Promise<RegistryAccess> {
    if (await htpasswdUser(this.gate, req.authorization)) return { scope: null };
    const claims = /^\s*token\b/i.test(req.authorization ?? '') ? this.gate.signer.verify(req.authorization) : undefined;
    if (claims && (!req.repo || req.repo.full === claims.repository)) return { scope: null };
    throw new RegistryError('REQUIRES_AUTHORIZATION', undefined, basicChallenge(this.gate.realm));
  }
}
