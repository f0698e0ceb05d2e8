import { saveUser } from '../../src/db/users.js';
import { makeImage, type TestImage } from '../helpers/v1-client.js';
import { pushV2Image, Site, v2Image, type Creds, type V2Image } from '../helpers/accounts.js';
import type { TestServer } from '../helpers/server.js';

export const ALICE: readonly [string, string] = ['alice', 'alicepw1'];
export const BOB: readonly [string, string] = ['bobby', 'bobbypw1'];
export const ROOT: readonly [string, string] = ['root', 'rootpw1'];

export interface Seeded {
  readonly site: Site;
  /** alice/oldapp:latest, pushed the Docker 1.x way (root first). */
  readonly v1Chain: readonly TestImage[];
  /** alice/newapp:1.0, pushed through /v2/ (schema2, two layers). */
  readonly v2: V2Image;
  /** library/busybox:latest, pushed through v1 by an admin. */
  readonly official: readonly TestImage[];
}

/** Three accounts and three repositories: one pushed over v1, one over v2, one official. */
export async function seed(server: TestServer): Promise<Seeded> {
  const db = server.db!;
  for (const [u, p, admin] of [
    [...ALICE, false],
    [...BOB, false],
    [...ROOT, true],
  ] as [string, string, boolean][]) {
    await saveUser(db, { username: u, email: `${u}@example.com`, password: p, active: true, admin }, { cost: 4 });
  }
  const site = new Site(server.url, server.url);
  const base = makeImage(undefined, { 'etc/os-release': 'NAME=web-test\n' });
  const top = makeImage(base.id, { 'app/run.sh': '#!/bin/sh\necho hello\n' });
  await site.pushV1('alice/oldapp', ALICE, [base, top], 'latest');
  const v2 = v2Image('newapp', 2);
  const token = await site.bearer(ALICE as Creds, 'repository:alice/newapp:pull,push');
  await pushV2Image(site, 'alice/newapp', '1.0', token, v2);
  const official = [makeImage(undefined, { 'bin/busybox': 'busybox\n' })];
  await site.pushV1('library/busybox', ROOT, official, 'latest');
  return { site, v1Chain: [base, top], v2, official };
}
