import type Koa from 'koa';
import type { RepoName } from '../content/names.js';
import { isRegistryError } from '../errors/index.js';
import { V2Uploads } from '../content/v2-uploads.js';
import { webRouter } from '../web/routes.js';
import { RepoContent } from '../web/content.js';
import { webhooksTab } from '../webhooks/web-tab.js';
import type { StorageServices } from './storage.js';
import type { IndexServices } from './index.js';
import type { EventServices } from './events.js';
import { bridgeContent } from './v2.js';
import type { Site } from './site.js';

/**
 * The web UI (issue 14, src/web/): pages for browsers on the index's accounts and access rules.
 * With the registry in this process the pages read stored content through the registry's own
 * services (tags, digests, sizes, layers); an index alone shows what its database knows.
 * Webhooks plug a settings tab in through `settingsTabs` (docs/web-ui.md).
 */
export function mountWebUi(
  app: Koa,
  site: Site,
  services: IndexServices | undefined,
  store: StorageServices,
  events: EventServices,
  v2Uploads: V2Uploads | undefined,
): void {
  const { config, effective, role, log } = site;
  if (!services || !config.web_ui) return;
  const { index } = services;
  const { driver, blobs, images, repos, repoLock } = store;
  let content: RepoContent | undefined;
  if (role === 'all') {
    const uploads = v2Uploads ?? new V2Uploads(driver, blobs, config.max_layer_size);
    const { manifests, fromV1, configs, toV1, schema1 } = bridgeContent(site, store, uploads);
    content = new RepoContent({ driver, repos, images, manifests, fromV1, configs, toV1, schema1 });
  }
  // under the repository's lock, as DELETE /v1/repositories removes it (src/assemble/index.ts): a
  // v1 tag PUT checks its token and writes its tag under that lock, so a push racing this delete
  // lands before the removal or is refused; without it the tag written after the removal stayed
  const removeContent =
    role === 'all'
      ? async (name: RepoName): Promise<void> => {
          await repoLock
            .run(name.full, () => repos.deleteRepository(name))
            .catch((e: unknown) => {
              if (!(isRegistryError(e) && e.code === 'REPOSITORY_NOT_FOUND')) throw e;
            });
        }
      : undefined;
  const hooks = events.webhooks;
  app.use(
    webRouter({
      config: effective,
      index,
      log,
      ...(content ? { content } : {}),
      ...(removeContent ? { removeContent } : {}),
      ...(hooks ? { settingsTabs: [webhooksTab(index, hooks)] } : {}),
    }).routes(),
  );
}
