// The framework's floor for the small-request figures (issue 18): a bare koa + @koa/router app, the
// framework the design fixes, answering GET /v2/<name>/manifests/<reference> with a fixed manifest
// and its digest and nothing else (no storage, no auth, no metrics, no log). bench/compare.ts runs it
// beside the two servers with the same wrk load: no handler on koa can answer faster in that run.
//
//   node bench/koa-floor.mjs PORT MANIFEST_FILE
import { readFileSync } from 'node:fs';
import Koa from 'koa';
import Router from '@koa/router';

const [port, file] = process.argv.slice(2);
if (!port || !file || process.argv.includes('--help')) {
  console.log('usage: node bench/koa-floor.mjs PORT MANIFEST_FILE');
  process.exit(port && file ? 0 : 2);
}
const body = readFileSync(file);
const digest = `sha256:${(await import('node:crypto')).createHash('sha256').update(body).digest('hex')}`;
const app = new Koa();
const router = new Router();
router.get('/v2/', (ctx) => {
  ctx.body = {};
});
router.get(/^\/v2\/(.+)\/manifests\/([^/]+)$/, (ctx) => {
  ctx.set('Docker-Content-Digest', digest);
  ctx.type = 'application/vnd.docker.distribution.manifest.v2+json';
  ctx.body = body;
});
app.use(router.routes());
app.listen(Number(port), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
