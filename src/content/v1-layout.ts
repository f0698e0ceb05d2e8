import type { StorageDriver } from '../storage/driver.js';
import type { Logger } from '../log/logger.js';
import { LINK_MAX, readOptional } from './small-objects.js';
import type { V1Images } from './v1-images.js';
import type { V1Repositories } from './v1-repositories.js';

const MARKER = 'v1/_layout';
const CURRENT = '2';

/**
 * Storage written before images belonged to repositories (layout 1) kept every v1 image in one
 * registry-wide set (v1/images/<id>). A registry with accounts now resolves ids within the token's
 * repository, so at its first start each repository gets its own records of the images its tags
 * name (the chain of each tag, copied record for record; layer bytes stay shared). Images no tag
 * names are not carried over: no pull could reach them by a tag. Runs once (marker v1/_layout).
 */
export async function upgradeV1Layout(driver: StorageDriver, images: V1Images, repos: V1Repositories, log: Logger): Promise<void> {
  if (!images.scoped) return;
  const marker = await readOptional(driver, MARKER, LINK_MAX);
  if (marker?.toString('utf8') === CURRENT) return;
  let repositories = 0;
  let tags = 0;
  for await (const repo of repos.allRepositories()) {
    repositories++;
    let listed: Record<string, string>;
    try {
      listed = await repos.listTags(repo);
    } catch {
      continue;
    }
    for (const id of new Set(Object.values(listed))) {
      if (await images.hasJson(repo, id)) continue;
      if (await images.link(null, repo, id)) tags++;
      else log.warn('storage upgrade: a tag names an image the registry does not hold whole', { repository: repo.full, id });
    }
  }
  await driver.putContent(MARKER, Buffer.from(CURRENT));
  if (repositories > 0) log.info('storage upgraded: v1 images now belong to repositories', { repositories, images: tags });
}
