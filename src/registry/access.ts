import type { Context } from 'koa';
import type { RegistryAccess } from '../auth/registry-auth.js';
import { RegistryError } from '../errors/index.js';
import type { RepoName } from '../content/names.js';
import type { CompleteImage } from '../content/v1-images.js';
import type { RegistryDeps } from './deps.js';

/** What every v1 registry handler asks first: who is asking, and may an image be read or linked. */
export interface V1Access {
  /** The request's access (spec §4.1): token, htpasswd or open; throws the refusal. */
  authorize(ctx: Context, repo?: RepoName): Promise<RegistryAccess>;
  /**
   * Bring image `id` into the token's repository from a repository its holder may read that truly
   * holds it (write tokens only: a push reusing an image it can already pull). The index names the
   * candidates (repositories the holder may read whose image list has the id); storage decides,
   * since image lists are written by clients.
   */
  linkInto(access: RegistryAccess, id: string): Promise<boolean>;
  /**
   * The done check and existence of an image for the GET routes, within the request's scope, and
   * its records (V1Images.complete: from memory while the metadata cache may keep them). A write
   * token's probe (`GET …/json` before a push) also links an image from a repository the pusher
   * may write, or an official one (see IndexService.linkSources). Throws 400 for an image being
   * pushed, 404 for one the scope does not hold.
   */
  readable(access: RegistryAccess, id: string): Promise<CompleteImage>;
}

export function v1Access(deps: RegistryDeps): V1Access {
  const { auth, images } = deps;
  const authorize = (ctx: Context, repo?: RepoName): Promise<RegistryAccess> =>
    auth.authorize({
      method: ctx.method,
      authorization: ctx.get('Authorization') || undefined,
      ...(repo ? { repo } : {}),
      headers: ctx.headers,
      path: ctx.path,
    });
  const linkInto = async (access: RegistryAccess, id: string): Promise<boolean> => {
    if (!access.scope || !access.linkSources) return false;
    for (const source of await access.linkSources(id)) {
      if (await images.link(source, access.scope, id)) return true;
    }
    return false;
  };
  const readable = async (access: RegistryAccess, id: string): Promise<CompleteImage> => {
    const held = await images.complete(access.scope, id);
    if (held) return held;
    if (await images.hasJson(access.scope, id)) await images.assertComplete(access.scope, id);
    else if (!(await linkInto(access, id))) throw new RegistryError('IMAGE_NOT_FOUND');
    // linked just now, or its push completed between the two looks
    const now = await images.complete(access.scope, id);
    if (now) return now;
    await images.assertComplete(access.scope, id);
    throw new RegistryError('IMAGE_NOT_FOUND');
  };
  return { authorize, linkInto, readable };
}
