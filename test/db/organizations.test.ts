import assert from 'node:assert/strict';
import { it } from 'node:test';
import { DbConflictError, DbNotFoundError } from '../../src/db/errors.js';
import {
  addMember,
  findMemberRole,
  findOrganizationByName,
  isMember,
  listMembers,
  listOrganizationsForUser,
  removeMember,
  removeOrganization,
  saveOrganization,
  type Organization,
} from '../../src/db/organizations.js';
import { saveUser, type User } from '../../src/db/users.js';
import { describeEachEngine, uniqueName } from './engines.js';

describeEachEngine('organizations', (ctx) => {
  const newUser = async (): Promise<User> => {
    const username = uniqueName();
    return (await saveUser(ctx.db, { username, email: `${username}@x.org`, password: 'secret1' }, { cost: 4 })) as User;
  };

  it('creates and renames an organization; names are unique', async () => {
    const name = uniqueName('org');
    const org = (await saveOrganization(ctx.db, { name })) as Organization;
    assert.equal(org.name, name);
    assert.deepEqual(await findOrganizationByName(ctx.db, name), org);
    await assert.rejects(saveOrganization(ctx.db, { name }), (e: unknown) => e instanceof DbConflictError && e.field === 'organization');
    const renamed = uniqueName('org');
    assert.equal((await saveOrganization(ctx.db, { id: org.id, name: renamed }))?.name, renamed);
    assert.equal(await findOrganizationByName(ctx.db, name), undefined);
    assert.equal(await saveOrganization(ctx.db, { id: 987654, name: uniqueName('org') }), undefined);
  });

  it('refuses a name a user already has (one name space)', async () => {
    const user = await newUser();
    await assert.rejects(saveOrganization(ctx.db, { name: user.username }), (e: unknown) => e instanceof DbConflictError && e.field === 'namespace');
    const org = (await saveOrganization(ctx.db, { name: uniqueName('org') })) as Organization;
    await assert.rejects(
      saveOrganization(ctx.db, { id: org.id, name: user.username }),
      (e: unknown) => e instanceof DbConflictError && e.field === 'namespace',
    );
  });

  it('adds, re-roles, lists and removes members', async () => {
    const org = (await saveOrganization(ctx.db, { name: uniqueName('org') })) as Organization;
    const alice = await newUser();
    const bob = await newUser();
    await addMember(ctx.db, org.id, alice.id, 'owner');
    await addMember(ctx.db, org.id, bob.id);
    assert.equal(await isMember(ctx.db, org.id, alice.id), true);
    assert.equal(await findMemberRole(ctx.db, org.id, bob.id), 'member');
    await addMember(ctx.db, org.id, bob.id, 'owner');
    assert.equal(await findMemberRole(ctx.db, org.id, bob.id), 'owner');
    assert.deepEqual((await listMembers(ctx.db, org.id)).map((m) => m.userId).sort(), [alice.id, bob.id].sort());
    const memberships = await listOrganizationsForUser(ctx.db, alice.id);
    assert.deepEqual(memberships, [{ ...org, role: 'owner' }]);
    assert.equal(await removeMember(ctx.db, org.id, bob.id), true);
    assert.equal(await removeMember(ctx.db, org.id, bob.id), false);
    assert.equal(await isMember(ctx.db, org.id, bob.id), false);
    assert.deepEqual(await listOrganizationsForUser(ctx.db, bob.id), []);
  });

  it('says which side is missing when adding a member', async () => {
    const org = (await saveOrganization(ctx.db, { name: uniqueName('org') })) as Organization;
    const user = await newUser();
    await assert.rejects(addMember(ctx.db, 987654, user.id), (e: unknown) => e instanceof DbNotFoundError && e.entity === 'organization');
    await assert.rejects(addMember(ctx.db, org.id, 987654), (e: unknown) => e instanceof DbNotFoundError && e.entity === 'user');
  });

  it('removing an organization removes its memberships', async () => {
    const org = (await saveOrganization(ctx.db, { name: uniqueName('org') })) as Organization;
    const user = await newUser();
    await addMember(ctx.db, org.id, user.id);
    assert.equal(await removeOrganization(ctx.db, org.id), true);
    assert.deepEqual(await listOrganizationsForUser(ctx.db, user.id), []);
    assert.equal((await ctx.db('organization_members').where({ org_id: org.id })).length, 0);
  });
});
