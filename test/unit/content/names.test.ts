import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseRepoName, parseTag } from '../../../src/content/names.js';
import { matchRepoRoute } from '../../../src/registry/routes.js';
import { tagMetadata } from '../../../src/content/v1-repositories.js';
import { tarsumMatches } from '../../../src/content/v1-images.js';

describe('repository names (spec §1.5, §7.2)', () => {
  it('maps a single segment to library/', () => {
    assert.equal(parseRepoName('busybox')?.full, 'library/busybox');
    assert.equal(parseRepoName('busybox/')?.full, 'library/busybox');
    assert.equal(parseRepoName('alice/web.app_1-x')?.full, 'alice/web.app_1-x');
  });
  it('refuses names off the grammar and traversal', () => {
    for (const bad of [
      '',
      '..',
      '.',
      'a/..',
      'a/.',
      'A/b',
      'a/B',
      'a/b/c',
      'a b/c',
      'a/b%2f',
      '-a/b',
      'a-/b',
      'a/' + 'x'.repeat(65),
      'a'.repeat(64).replace(/a/g, 'f'),
      'ns/\u0000',
    ]) {
      assert.equal(parseRepoName(bad), undefined, JSON.stringify(bad));
    }
  });
  it('checks tags with ^[\\w][\\w.-]{0,127}$', () => {
    assert.equal(parseTag('latest'), 'latest');
    assert.equal(parseTag('1.0-rc_1'), '1.0-rc_1');
    assert.equal(parseTag('a'.repeat(128)), 'a'.repeat(128));
    for (const bad of ['', '-x', '.x', 'a'.repeat(129), 'a/b', 'a:b', 'é']) assert.equal(parseTag(bad), undefined, bad);
  });
});

describe('repository route matching (greedy, as the Python router)', () => {
  it('splits the repository from the suffix', () => {
    assert.deepEqual(matchRepoRoute('ns/repo/tags'), { kind: 'tags', repo: 'ns/repo' });
    assert.deepEqual(matchRepoRoute('ns/repo/tags/latest'), { kind: 'tag', repo: 'ns/repo', tag: 'latest' });
    assert.deepEqual(matchRepoRoute('ns/repo/tags/latest/json'), { kind: 'tagJson', repo: 'ns/repo', tag: 'latest' });
    assert.deepEqual(matchRepoRoute('repo/images'), { kind: 'images', repo: 'repo' });
    assert.deepEqual(matchRepoRoute('ns/repo/'), { kind: 'root', repo: 'ns/repo', slash: true });
    assert.deepEqual(matchRepoRoute('ns/repo/layer/abc/access'), { kind: 'layerAccess', repo: 'ns/repo', id: 'abc' });
  });
});

describe('tag metadata from the User-Agent (spec §2.16)', () => {
  it('reads docker, go, kernel, os and arch', () => {
    const m = tagMetadata('docker/1.5.0 go/go1.4.1 git-commit/a8a31ef kernel/3.16.0-4-amd64 os/Linux arch/AMD64', 1420070400000);
    assert.deepEqual(m, {
      last_update: 1420070400,
      docker_version: '1.5.0',
      docker_go_version: 'go1.4.1',
      kernel: '3.16.0-4-amd64',
      os: 'linux',
      arch: 'amd64',
    });
    assert.deepEqual(tagMetadata(undefined, 0), { last_update: 0 });
  });
});

describe('tarsum comparison', () => {
  const t = { v0: 'tarsum+sha256:aa', v0Plain: 'tarsum+sha256:bb', v1: 'tarsum.v1+sha256:cc', dev: 'tarsum.dev+sha256:cc' };
  it('accepts the value of the label sent and nothing else', () => {
    assert.ok(tarsumMatches('tarsum+sha256:aa', t));
    assert.ok(tarsumMatches('tarsum+sha256:bb', t));
    assert.ok(!tarsumMatches('tarsum+sha256:cc', t));
    assert.ok(tarsumMatches('tarsum.v1+sha256:cc', t));
    assert.ok(!tarsumMatches('tarsum.dev+sha256:aa', t));
  });
});
