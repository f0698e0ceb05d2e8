/**
 * v2 token scopes (spec v2-bridge §4.5) and the access entries of a JWT (§4.3):
 * `resourcescope = type ":" name ":" action *( "," action )`, several joined by spaces.
 */
export interface ResourceAccess {
  readonly type: string;
  readonly name: string;
  readonly actions: readonly string[];
}

const TYPE = /^[a-z0-9]+(?:\([a-z0-9]+\))?$/;
const ACTION = /^(?:[a-z]*|\*)$/;

/**
 * One resource scope. The name may hold one ':' (a `host:port/` prefix), so the type ends at the
 * first ':' and the actions start after the last (§4.5); `repository(plugin)` counts as `repository`.
 */
export function parseResourceScope(s: string): ResourceAccess | undefined {
  const first = s.indexOf(':');
  const last = s.lastIndexOf(':');
  if (first <= 0 || last <= first) return undefined;
  const rawType = s.slice(0, first);
  const name = s.slice(first + 1, last);
  if (!TYPE.test(rawType) || name === '') return undefined;
  const actions = s
    .slice(last + 1)
    .split(',')
    .filter((a) => a !== '');
  if (!actions.every((a) => ACTION.test(a))) return undefined;
  return { type: rawType.replace(/\(.*\)$/, ''), name, actions: [...new Set(actions)] };
}

/** Every scope of one or more `scope` values (each may hold several, space-separated); malformed ones are dropped. */
export function parseScopes(values: readonly string[]): ResourceAccess[] {
  const out: ResourceAccess[] = [];
  for (const v of values) {
    for (const part of v.split(' ')) {
      if (part === '') continue;
      const r = parseResourceScope(part);
      if (r) out.push(r);
    }
  }
  return mergeAccess(out);
}

/** Same type and name merged into one entry (actions unioned, order kept). */
export function mergeAccess(list: readonly ResourceAccess[]): ResourceAccess[] {
  const by = new Map<string, { type: string; name: string; actions: string[] }>();
  for (const a of list) {
    const key = `${a.type}\n${a.name}`;
    const e = by.get(key);
    if (e) {
      for (const x of a.actions) if (!e.actions.includes(x)) e.actions.push(x);
    } else {
      by.set(key, { type: a.type, name: a.name, actions: [...a.actions] });
    }
  }
  return [...by.values()];
}

export function formatScope(list: readonly ResourceAccess[]): string {
  return list.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`).join(' ');
}

/**
 * What of `needed` the granted access list lacks (empty: allowed). A granted `*` satisfies any
 * action on that resource (§4.4, distribution token/util.go).
 */
export function missingAccess(granted: readonly ResourceAccess[], needed: readonly ResourceAccess[]): ResourceAccess[] {
  const missing: ResourceAccess[] = [];
  for (const n of needed) {
    const have = granted.filter((g) => g.type === n.type && g.name === n.name).flatMap((g) => g.actions);
    const lacking = have.includes('*') ? [] : n.actions.filter((a) => !have.includes(a));
    if (lacking.length > 0) missing.push({ type: n.type, name: n.name, actions: lacking });
  }
  return missing;
}
