import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DbNotFoundError } from '../../src/db/errors.js';
import {
  addCollaborator,
  addComment,
  findCollaboratorAccess,
  findRepository,
  findRepositoryById,
  findRepositoryImage,
  isStarred,
  listCollaborators,
  listComments,
  listImages,
  markDeleted,
  mergeImages,
  purgeRepository,
  removeCollaborator,
  removeComment,
  saveRepository,
  setPushComplete,
  starRepository,
  unstarRepository,
  type Repository,
} from '../../src/db/repositories.js';
import { removeUser, saveUser, type User } from '../../src/db/users.js';
import { describeEachEngine, uniqueName } from './engines.js';

const id = (c: string): string => c.repeat(64).slice(0, 64);
const A = id('a');
const B = id('b');
const C = id('c');
const D = id('d');

describeEachEngine('repositories', (ctx) => {
  const newUser = async (): Promise<User> => {
    const username = uniqueName();
    return (await saveUser(ctx.db, { username, email: `${username}@x.org`, password: 'secret1' }, { cost: 4 })) as User;
  };
  const newRepo = async (ownerId: number | null = null): Promise<Repository> =>
    (await saveRepository(ctx.db, { namespace: uniqueName('ns'), name: 'app', ownerId })).repository;

  it('creates a repository once, then updates only the fields given', async () => {
    const owner = await newUser();
    const ns = owner.username;
    const first = await saveRepository(ctx.db, { namespace: ns, name: 'web', ownerId: owner.id });
    assert.equal(first.created, true);
    const r = first.repository;
    assert.equal(r.fullName, `${ns}/web`);
    assert.equal(r.description, '');
    assert.equal(r.private, false);
    assert.equal(r.ownerId, owner.id);
    assert.equal(r.pushComplete, false);
    assert.equal(r.starCount, 0);
    assert.equal(r.deletedAt, null);

    const again = await saveRepository(ctx.db, { namespace: ns, name: 'web' });
    assert.equal(again.created, false);
    assert.equal(again.repository.id, r.id);
    assert.equal(again.repository.ownerId, owner.id);

    const updated = await saveRepository(ctx.db, { namespace: ns, name: 'web', description: 'A web server', private: true });
    assert.equal(updated.repository.description, 'A web server');
    assert.equal(updated.repository.private, true);
    assert.deepEqual(await findRepository(ctx.db, ns, 'web'), updated.repository);
    assert.deepEqual(await findRepositoryById(ctx.db, r.id), updated.repository);

    assert.ok(await setPushComplete(ctx.db, r.id));
    assert.equal((await findRepository(ctx.db, ns, 'web'))?.pushComplete, true);
  });

  it('hides a logically deleted repository unless asked, then purges it with everything attached', async () => {
    const user = await newUser();
    const repo = await newRepo(user.id);
    await mergeImages(ctx.db, repo.id, [{ id: A }]);
    await starRepository(ctx.db, repo.id, user.id);
    await addCollaborator(ctx.db, repo.id, user.id, 'write');
    await addComment(ctx.db, repo.id, user.id, 'hi');

    assert.equal(await markDeleted(ctx.db, repo.id), true);
    assert.equal(await markDeleted(ctx.db, repo.id), false);
    assert.equal(await findRepository(ctx.db, repo.namespace, repo.name), undefined);
    const hidden = await findRepository(ctx.db, repo.namespace, repo.name, { includeDeleted: true });
    assert.ok(hidden?.deletedAt instanceof Date);

    assert.equal(await purgeRepository(ctx.db, repo.id), true);
    assert.equal(await findRepository(ctx.db, repo.namespace, repo.name, { includeDeleted: true }), undefined);
    for (const table of ['repository_images', 'stars', 'collaborators', 'comments']) {
      assert.equal((await ctx.db(table).where({ repo_id: repo.id })).length, 0, table);
    }
    assert.equal(await purgeRepository(ctx.db, repo.id), false);
  });

  it('a push onto a logically deleted repository starts afresh', async () => {
    const repo = await newRepo();
    await mergeImages(ctx.db, repo.id, [{ id: A, checksum: 'sha256:1' }]);
    await markDeleted(ctx.db, repo.id);
    const again = await saveRepository(ctx.db, { namespace: repo.namespace, name: repo.name, description: 'new' });
    assert.equal(again.created, true);
    assert.notEqual(again.repository.id, repo.id);
    assert.equal(again.repository.deletedAt, null);
    assert.deepEqual(await listImages(ctx.db, again.repository.id), []);
  });

  it('merges image lists: new ids appended in order, checksums kept, empty ones filled', async () => {
    const repo = await newRepo();
    // I5 of a first push: root first, one entry per (image, tag), no checksums.
    assert.deepEqual(await mergeImages(ctx.db, repo.id, [{ id: A }, { id: B, Tag: 'latest' }, { id: B, Tag: 'v1' }]), { added: 2, updated: 0 });
    assert.deepEqual(await listImages(ctx.db, repo.id), [
      { id: A, checksum: null, tag: null },
      { id: B, checksum: null, tag: 'v1' },
    ]);
    // I7 from an old client: checksums fill the empty ones; the first checksum given for an id wins.
    await mergeImages(ctx.db, repo.id, [
      { id: B, checksum: 'tarsum+sha256:bbb' },
      { id: B, checksum: 'tarsum+sha256:other' },
      { id: A, checksum: '' },
    ]);
    // A second push: an existing checksum is kept, new ids go after the existing ones.
    const r = await mergeImages(ctx.db, repo.id, [
      { id: C, Tag: 'latest' },
      { id: B, checksum: 'tarsum+sha256:changed' },
      { id: D, checksum: 'sha256:ddd' },
      { id: A, checksum: 'sha256:aaa' },
    ]);
    assert.deepEqual(r, { added: 2, updated: 1 });
    assert.deepEqual(await listImages(ctx.db, repo.id), [
      { id: A, checksum: 'sha256:aaa', tag: null },
      { id: B, checksum: 'tarsum+sha256:bbb', tag: 'v1' },
      { id: C, checksum: null, tag: 'latest' },
      { id: D, checksum: 'sha256:ddd', tag: null },
    ]);
    assert.deepEqual(await mergeImages(ctx.db, repo.id, []), { added: 0, updated: 0 });
    assert.deepEqual(await findRepositoryImage(ctx.db, repo.id, C), { id: C, checksum: null, tag: 'latest' });
    assert.equal(await findRepositoryImage(ctx.db, repo.id, id('e')), undefined);
  });

  it('merges a long list in one call and keeps its order', async () => {
    const repo = await newRepo();
    const ids = Array.from({ length: 700 }, (_, i) => i.toString(16).padStart(64, '0'));
    await mergeImages(
      ctx.db,
      repo.id,
      ids.map((i) => ({ id: i })),
    );
    assert.deepEqual(
      (await listImages(ctx.db, repo.id)).map((i) => i.id),
      ids,
    );
  });

  it('refuses to merge into an unknown repository', async () => {
    await assert.rejects(mergeImages(ctx.db, 987654, [{ id: A }]), DbNotFoundError);
  });

  it('grants, changes, lists and revokes collaborator access', async () => {
    const repo = await newRepo();
    const u1 = await newUser();
    const u2 = await newUser();
    await addCollaborator(ctx.db, repo.id, u1.id, 'read');
    await addCollaborator(ctx.db, repo.id, u2.id, 'write');
    await addCollaborator(ctx.db, repo.id, u1.id, 'write');
    assert.equal(await findCollaboratorAccess(ctx.db, repo.id, u1.id), 'write');
    const list = await listCollaborators(ctx.db, repo.id);
    assert.deepEqual(
      list.map((c) => [c.userId, c.access]).sort(),
      [
        [u1.id, 'write'],
        [u2.id, 'write'],
      ].sort(),
    );
    assert.equal(await removeCollaborator(ctx.db, repo.id, u1.id), true);
    assert.equal(await removeCollaborator(ctx.db, repo.id, u1.id), false);
    assert.equal(await findCollaboratorAccess(ctx.db, repo.id, u1.id), undefined);
  });

  it('keeps star_count right: idempotent star/unstar and user removal', async () => {
    const repo = await newRepo();
    const u1 = await newUser();
    const u2 = await newUser();
    const count = async (): Promise<number | undefined> => (await findRepositoryById(ctx.db, repo.id))?.starCount;
    assert.equal(await starRepository(ctx.db, repo.id, u1.id), true);
    assert.equal(await starRepository(ctx.db, repo.id, u1.id), false);
    assert.equal(await starRepository(ctx.db, repo.id, u2.id), true);
    assert.equal(await count(), 2);
    assert.equal(await isStarred(ctx.db, repo.id, u1.id), true);
    assert.equal(await unstarRepository(ctx.db, repo.id, u1.id), true);
    assert.equal(await unstarRepository(ctx.db, repo.id, u1.id), false);
    assert.equal(await count(), 1);
    await removeUser(ctx.db, u2.id);
    assert.equal(await count(), 0);
  });

  it('adds and pages comments, oldest first', async () => {
    const repo = await newRepo();
    const user = await newUser();
    const c1 = await addComment(ctx.db, repo.id, user.id, 'first');
    await addComment(ctx.db, repo.id, user.id, 'second; drop table users; --');
    await addComment(ctx.db, repo.id, user.id, 'third ✓');
    assert.equal(c1.username, user.username);
    assert.equal(c1.body, 'first');
    const p1 = await listComments(ctx.db, repo.id, { page: 1, pageSize: 2 });
    assert.equal(p1.total, 3);
    assert.deepEqual(
      p1.items.map((c) => c.body),
      ['first', 'second; drop table users; --'],
    );
    const p2 = await listComments(ctx.db, repo.id, { page: 2, pageSize: 2 });
    assert.deepEqual(
      p2.items.map((c) => c.body),
      ['third ✓'],
    );
    assert.equal(await removeComment(ctx.db, c1.id), true);
    assert.equal((await listComments(ctx.db, repo.id)).total, 2);
  });
});
