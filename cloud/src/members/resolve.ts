import { capOf, type IdKey, type IdType, priorityOf, typeOf } from './ids.ts';

/**
 * Identity resolution as a pure function of a set of links (docs/members.md):
 *
 * [ID-ORDER-1] the result depends on the set of links only, never on the order they
 * arrived: links are applied in a canonical order — strongest first (the lower of the
 * two ends' priorities, then the higher), then by text — with union-find.
 * [ID-CAP-1] two groups are joined only if the joined group holds no more ids of any type
 * than that type's cap; a link that would break a cap is kept as evidence but not
 * applied (it is "conflicting"), so the stronger, earlier-applied link wins.
 *
 * The service keeps the stored members equal to `resolve(all active links)` by
 * re-resolving the whole raw component around each new or revoked link.
 */
export interface LinkEdge {
  a: IdKey;
  b: IdKey;
}

export function canonicalPair(x: IdKey, y: IdKey): [IdKey, IdKey] {
  return x < y ? [x, y] : [y, x];
}

function linkRank(l: LinkEdge): [number, number, string] {
  const pa = priorityOf(l.a);
  const pb = priorityOf(l.b);
  const [a, b] = canonicalPair(l.a, l.b);
  return [Math.min(pa, pb), Math.max(pa, pb), `${a}\u0000${b}`];
}

export function compareLinks(x: LinkEdge, y: LinkEdge): number {
  const rx = linkRank(x);
  const ry = linkRank(y);
  return rx[0] - ry[0] || rx[1] - ry[1] || (rx[2] < ry[2] ? -1 : rx[2] > ry[2] ? 1 : 0);
}

export interface Resolution {
  /** Groups of ids (each sorted), sorted by their first id. */
  groups: IdKey[][];
  /** Links not applied because they would break a cap. */
  conflicting: LinkEdge[];
}

export function resolve(
  nodes: Iterable<IdKey>,
  links: readonly LinkEdge[],
  caps?: Partial<Record<IdType, number>>,
): Resolution {
  const parent = new Map<IdKey, IdKey>();
  const counts = new Map<IdKey, Map<IdType, number>>();
  const add = (k: IdKey) => {
    if (parent.has(k)) return;
    parent.set(k, k);
    counts.set(k, new Map([[typeOf(k), 1]]));
  };
  const find = (k: IdKey): IdKey => {
    let r = k;
    while (parent.get(r) !== r) r = parent.get(r)!;
    let c = k;
    while (c !== r) {
      const n = parent.get(c)!;
      parent.set(c, r);
      c = n;
    }
    return r;
  };
  for (const n of nodes) add(n);
  const conflicting: LinkEdge[] = [];
  const seen = new Set<string>();
  const sorted = [...links].sort(compareLinks);
  for (const l of sorted) {
    const [a, b] = canonicalPair(l.a, l.b);
    const dedupe = `${a}\u0000${b}`;
    if (seen.has(dedupe) || a === b) continue;
    seen.add(dedupe);
    add(a);
    add(b);
    const ra = find(a);
    const rb = find(b);
    if (ra === rb) continue;
    const ca = counts.get(ra)!;
    const cb = counts.get(rb)!;
    let fits = true;
    for (const [t, n] of cb) if ((ca.get(t) ?? 0) + n > capOf(t, caps)) fits = false;
    if (!fits) {
      conflicting.push({ a, b });
      continue;
    }
    // Union by smaller key so the root is deterministic too.
    const [root, child] = ra < rb ? [ra, rb] : [rb, ra];
    parent.set(child, root);
    const merged = counts.get(root)!;
    for (const [t, n] of counts.get(child)!) merged.set(t, (merged.get(t) ?? 0) + n);
    counts.delete(child);
  }
  const byRoot = new Map<IdKey, IdKey[]>();
  for (const k of parent.keys()) {
    const r = find(k);
    const g = byRoot.get(r);
    if (g) g.push(k);
    else byRoot.set(r, [k]);
  }
  const groups = [...byRoot.values()].map((g) => g.sort());
  groups.sort((x, y) => (x[0]! < y[0]! ? -1 : 1));
  return { groups, conflicting };
}
