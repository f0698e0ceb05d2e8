import { Command } from 'commander';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { fail, loadFrom, withConfigOptions, type ConfigOptions } from './common.js';

/** First line of stdin (a pipe). */
async function stdinLine(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

/** Ask on the terminal without echo. */
async function prompt(question: string): Promise<string> {
  const muted = new Writable({ write: (_c, _e, cb) => cb() });
  process.stderr.write(question);
  const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
  const answer = await new Promise<string>((resolve) => rl.question('', resolve));
  rl.close();
  process.stderr.write('\n');
  return answer;
}

/**
 * `legacy-registry htpasswd <file> <user>`: write a bcrypt ($2y$) entry for `v2_auth: htpasswd`
 * (spec v2-bridge §4.6), or remove one with --delete. The file is created when missing and
 * replaced atomically; a running registry picks the change up by its mtime.
 */
export function htpasswdCommand(): Command {
  return withConfigOptions(new Command('htpasswd'))
    .description('add, change (bcrypt $2y$) or --delete a user in an htpasswd file for v2_auth: htpasswd')
    .argument('<file>', 'the htpasswd file (created when missing)')
    .argument('<user>', 'user name')
    .option('--password-stdin', 'read the password from stdin (first line)')
    .option('-D, --delete', 'remove the user')
    .option('--cost <n>', 'bcrypt cost (default: bcrypt_cost of the configuration)', (v) => Number(v))
    .addHelpText('after', '\nWithout --password-stdin the password is asked twice on the terminal.')
    .action(async (file: string, user: string, opts: ConfigOptions & { passwordStdin?: boolean; delete?: boolean; cost?: number }) => {
      if (user === '' || /[:\s]/.test(user)) fail('user: must not be empty or contain ":" or spaces');
      const { writeHtpasswdEntry } = await import('../auth/htpasswd.js');
      if (opts.delete) {
        const existed = await writeHtpasswdEntry(file, user, undefined, 4);
        if (!existed) fail(`no such user in ${file}: ${user}`);
        process.stdout.write(`removed ${user} from ${file}\n`);
        return;
      }
      let cost = opts.cost;
      if (cost === undefined) {
        try {
          cost = loadFrom(opts).bcrypt_cost;
        } catch (e) {
          fail((e as Error).message);
        }
      }
      if (!Number.isInteger(cost) || cost < 4 || cost > 15) fail('--cost: an integer from 4 to 15');
      let password: string;
      if (opts.passwordStdin) {
        password = await stdinLine();
      } else {
        if (!process.stdin.isTTY) fail('no terminal: give --password-stdin and pipe the password');
        password = await prompt('Password: ');
        if ((await prompt('Again: ')) !== password) fail('the passwords differ');
      }
      if (password === '') fail('password: must not be empty');
      const existed = await writeHtpasswdEntry(file, user, password, cost);
      process.stdout.write(`${existed ? 'updated' : 'added'} ${user} in ${file}\n`);
    });
}
