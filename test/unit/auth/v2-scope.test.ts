import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { formatScope, missingAccess, parseResourceScope, parseScopes } from '../../../src/auth/v2-scope.js';
import { indexNameOf } from '../../../src/index/token-routes.js';

describe('v2 scope grammar (spec v2-bridge §4.5)', () => {
  it('splits the type at the first colon and the actions at the last (names may hold host:port)', () => {
    assert.deepEqual(parseResourceScope('repository:library/ubuntu:pull'), { type: 'repository', name: 'library/ubuntu', actions: ['pull'] });
    assert.deepEqual(parseResourceScope('repository:localhost:5000/a/b:pull,push'), {
      type: 'repository',
      name: 'localhost:5000/a/b',
      actions: ['pull', 'push'],
    });
    assert.deepEqual(parseResourceScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] });
    assert.deepEqual(parseResourceScope('repository(plugin):a/b:pull'), { type: 'repository', name: 'a/b', actions: ['pull'] });
    assert.deepEqual(parseResourceScope('repository:a/b:'), { type: 'repository', name: 'a/b', actions: [] });
    for (const bad of ['', 'repository', 'repository:a', ':a:pull', 'Repo:a:pull', 'repository::pull', 'repository:a:PULL']) {
      assert.equal(parseResourceScope(bad), undefined, bad);
    }
  });

  it('reads repeated and space-joined scopes, merging entries of one resource', () => {
    assert.deepEqual(parseScopes(['repository:a/b:pull repository:c/d:push', 'repository:a/b:push,pull', 'junk']), [
      { type: 'repository', name: 'a/b', actions: ['pull', 'push'] },
      { type: 'repository', name: 'c/d', actions: ['push'] },
    ]);
    assert.equal(formatScope(parseScopes(['repository:a/b:pull,push registry:catalog:*'])), 'repository:a/b:pull,push registry:catalog:*');
  });

  it('a granted * satisfies every action; anything else must be listed', () => {
    const granted = [
      { type: 'repository', name: 'a/b', actions: ['pull'] },
      { type: 'repository', name: 'c/d', actions: ['*'] },
    ];
    assert.deepEqual(missingAccess(granted, [{ type: 'repository', name: 'a/b', actions: ['pull'] }]), []);
    assert.deepEqual(missingAccess(granted, [{ type: 'repository', name: 'a/b', actions: ['pull', 'push'] }]), [
      { type: 'repository', name: 'a/b', actions: ['push'] },
    ]);
    assert.deepEqual(missingAccess(granted, [{ type: 'repository', name: 'c/d', actions: ['delete', 'push'] }]), []);
    assert.deepEqual(missingAccess(granted, [{ type: 'registry', name: 'catalog', actions: ['*'] }]), [{ type: 'registry', name: 'catalog', actions: ['*'] }]);
    assert.deepEqual(missingAccess([], []), []);
  });

  it('maps v2 names onto index namespaces as v1 does', () => {
    assert.deepEqual(indexNameOf('ubuntu'), { namespace: 'library', repository: 'ubuntu' });
    assert.deepEqual(indexNameOf('alice/app'), { namespace: 'alice', repository: 'app' });
    assert.deepEqual(indexNameOf('alice/team/app'), { namespace: 'alice', repository: 'team/app' });
    assert.equal(indexNameOf('Alice/app'), undefined);
    assert.equal(indexNameOf('localhost:5000/a'), undefined);
  });
});
