/**
 * Screenshots of the main pages in Debian's Chromium (docs/screenshots/, shown in docs/web-ui.md):
 * `node dist/test/web/screenshots.js [outdir]`. Not a test: a seeded server, a few pages, light,
 * dark and narrow.
 */
import { mkdir } from 'node:fs/promises';
import { startTestServer } from '../helpers/server.js';
import { launch, login, person } from './browser.js';
import { ALICE, seed } from './seed.js';

const out = process.argv[2] ?? 'docs/screenshots';
await mkdir(out, { recursive: true });
const server = await startTestServer();
const browser = await launch();
try {
  await seed(server);
  const u = server.url;
  const light = await person(browser);
  const page = await light.newPage();
  await login(page, u, ALICE[0], ALICE[1]);
  await page.goto(`${u}/u/alice/oldapp/settings`);
  await page.fill('#description', 'A small app pushed with Docker 1.5');
  await page.fill(
    '#full_description',
    '## Usage\n\nRun it with `docker run`:\n\n```sh\ndocker run alice/oldapp\n```\n\n* pushed over **v1**\n* pulled by Docker 1.x and by podman alike\n\n<script>alert(1)</script> stays text.',
  );
  await page.click('form[action$="/settings/description"] button');
  await page.goto(`${u}/u/alice/oldapp/`);
  await page.fill('#comment-body', 'Works with **podman 4** too.');
  await page.click('form[action$="/comments"] button');
  await page.click('form.js-star button');
  await page.waitForFunction(() => document.querySelector('#star-count')?.textContent === '1');
  const shots: [string, string][] = [
    ['explore', '/'],
    ['search', '/search?q=app'],
    ['repository-v1', '/u/alice/oldapp/'],
    ['repository-v2', '/u/alice/newapp/'],
    ['tag-v2', '/u/alice/newapp/tags/1.0/'],
    ['settings', '/u/alice/oldapp/settings'],
  ];
  for (const [name, path] of shots) {
    await page.goto(`${u}${path}`);
    await page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
  }
  const dark = await person(browser, { dark: true });
  const dp = await dark.newPage();
  await dp.goto(`${u}/u/alice/oldapp/`);
  await dp.screenshot({ path: `${out}/repository-dark.png`, fullPage: true });
  const mobile = await person(browser, { mobile: true });
  const mp = await mobile.newPage();
  await mp.goto(`${u}/u/alice/newapp/`);
  await mp.screenshot({ path: `${out}/repository-mobile.png`, fullPage: true });
  await dp.goto(`${u}/login`);
  await dp.screenshot({ path: `${out}/login-dark.png` });
  console.log(`screenshots in ${out}`);
} finally {
  await browser.close();
  await server.stop();
}
