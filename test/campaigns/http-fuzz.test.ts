import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from '../helpers/http.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { makeImage } from '../helpers/v1-client.js';
import { pushV2Image, Site, v2Image, type Creds } from '../helpers/accounts.js';
import { saveUser } from '../../src/db/users.js';
import { runHttpFuzz } from '../../campaigns/http-fuzz.js';

const ALICE: Creds = ['alice', 'alicepw'];

/**
 * The HTTP fuzzer (issue 17) against the default deployment (index + registry, v2 on, token auth)
 * holding v1 and v2 content: no 5xx, no dead server, no change of state from refused requests.
 * `node dist/campaigns/run.js fuzz --requests N` runs it longer.
 */
describe('HTTP fuzzer over every route', () => {
  let s: TestServer;
  before(async () => {
    s = await startTestServer({ bcrypt_cost: 4, storage_delete: true });
    const site = new Site(s.url, s.url);
    await saveUser(s.db!, { username: 'alice', email: 'a@example.com', password: 'alicepw', active: true }, { cost: 4 });
    await site.pushV1('alice/app', ALICE, [makeImage()]);
    await pushV2Image(site, 'alice/v2app', 'latest', await site.bearer(ALICE, 'repository:alice/v2app:pull,push'), v2Image('fuzz'));
  });
  after(() => s?.stop());

  it('5,000 random requests: never a 5xx, the server stays up, refused requests change nothing', async () => {
    const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
    const report = await runHttpFuzz({ url: s.url, dataDir: s.dataDir, db: s.db!, requests: 5000, seed });
    assert.deepEqual(report.fiveHundreds, [], `seed ${seed}`);
    assert.deepEqual(report.stateChanges, [], `seed ${seed}`);
    assert.equal(report.requests, 5000);
    assert.equal((await request(s.url, '/v1/_ping')).status, 200);
  });
});
