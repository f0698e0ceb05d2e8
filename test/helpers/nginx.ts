import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT } from './paths.js';
import { freePort } from './ports.js';

export const NGINX = process.env.NGINX_PATH || '/usr/sbin/nginx';

/** Why nginx tests cannot run here, or undefined. E2E_REQUIRED (CI) turns the skip into a failure. */
export function nginxMissing(): string | undefined {
  if (existsSync(NGINX)) return undefined;
  const why = `nginx is not installed at ${NGINX} (apt-get install nginx; .ci/setup.d/30-nginx.sh)`;
  if (process.env.E2E_REQUIRED) throw new Error(`E2E_REQUIRED: ${why}`);
  return why;
}

export interface NginxSite {
  /** host:port of the registry name's server block. */
  readonly registry: string;
  /** host:port of the index name's server block. */
  readonly index: string;
  readonly dir: string;
  readonly proc: ChildProcess;
  errorLog(): Promise<string>;
  accessLog(): Promise<string>;
  stop(): Promise<void>;
}

export interface NginxTargets {
  readonly registryNodes: readonly string[];
  readonly indexNodes: readonly string[];
  /** The storage root the /_storage/ location aliases (nginx_x_accel_redirect). */
  readonly storageRoot: string;
}

/**
 * examples/nginx/legacy-registry.conf as shipped, with only its addresses replaced: the upstream
 * servers, each server block's listen (a loopback port of its own instead of name-based virtual
 * hosts on port 80) and the storage alias. Anything else in the example is tested as written.
 */
export async function exampleConfig(t: NginxTargets, ports: { registry: number; index: number }): Promise<string> {
  let conf = await readFile(join(ROOT, 'examples', 'nginx', 'legacy-registry.conf'), 'utf8');
  const upstream = (name: string, servers: readonly string[]): void => {
    const re = new RegExp(`(upstream ${name} \\{\\n)((?:\\s*server [^\\n]*\\n)+)`);
    if (!re.test(conf)) throw new Error(`example has no upstream ${name}`);
    conf = conf.replace(re, (_m, head: string, lines: string) => {
      const opts = /server \S+( [^;]*)?;/.exec(lines)?.[1] ?? '';
      return head + servers.map((s) => `    server ${s}${opts};\n`).join('');
    });
  };
  upstream('legacy_registry_nodes', t.registryNodes);
  upstream('legacy_registry_index', t.indexNodes);
  for (const [name, port] of [
    ['registry.example.com', ports.registry],
    ['index.example.com', ports.index],
  ] as const) {
    const re = new RegExp(`listen 80;(\\n\\s*server_name ${name.replace(/\./g, '\\.')};)`);
    if (!re.test(conf)) throw new Error(`example has no server block for ${name}`);
    conf = conf.replace(re, `listen 127.0.0.1:${port};$1`);
  }
  if (!conf.includes('alias /var/lib/legacy-registry/;')) throw new Error('example has no storage alias');
  conf = conf.replace('alias /var/lib/legacy-registry/;', `alias ${t.storageRoot.replace(/\/?$/, '/')};`);
  return conf;
}

/** Debian's nginx in the foreground with a private prefix, serving the example site. */
export async function startNginx(t: NginxTargets, fixed?: { registry: number; index: number }): Promise<NginxSite> {
  const dir = await mkdtemp(join(tmpdir(), 'lr-nginx-'));
  const ports = fixed ?? { registry: await freePort(), index: await freePort() };
  await writeFile(join(dir, 'legacy-registry.conf'), await exampleConfig(t, ports));
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(join(dir, d));
  // the main file Debian's /etc/nginx/nginx.conf would be, reduced to what a private instance needs
  const main = `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
events { worker_connections 512; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  include ${dir}/legacy-registry.conf;
}
`;
  await writeFile(join(dir, 'nginx.conf'), main);
  const proc = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log'), '-g', 'daemon off;'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const registry = `127.0.0.1:${ports.registry}`;
  const index = `127.0.0.1:${ports.index}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nginx exited: ${out}\n${await readFile(join(dir, 'error.log'), 'utf8').catch(() => '')}`);
    const up = await fetch(`http://${registry}/v1/_ping`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.status < 500,
      () => false,
    );
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not answer: ${out}`);
    await sleep(100);
  }
  return {
    registry,
    index,
    dir,
    proc,
    errorLog: () => readFile(join(dir, 'error.log'), 'utf8').catch(() => ''),
    accessLog: () => readFile(join(dir, 'access.log'), 'utf8').catch(() => ''),
    async stop() {
      if (proc.exitCode === null) {
        proc.kill('SIGQUIT');
        await Promise.race([exited, sleep(5000)]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
