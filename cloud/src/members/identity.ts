import { cloudError } from '../errors.ts';
import { type IdKey, type IdType, idKey, parseIdKey } from './ids.ts';
import type { MembersTx } from './repo.ts';
import { canonicalPair, resolve } from './resolve.ts';
import type { LinkRow, MergeRow } from './types.ts';

/**
 * Identity resolution on the store (docs/members.md "Identity"). The stored members are
 * always `resolve(all active links)` (resolve.ts): each new link re-resolves the whole
 * raw component around it, so the members do not depend on the order links arrived
 * [ID-ORDER-1]; a merge is recorded with the link that caused it [ID-MERGE-1]; an unmerge
 * revokes that link (it stays as evidence and never applies again) and re-resolves, which
 * gives back the members there were before it [ID-UNMERGE-1] [ID-UNMERGE-2].
 *
 * Every member holds its own `member:<id>` key, linked to the first id it was created
 * for; coupons, tags and recognitions keyed by a member id follow it through merges.
 */
export interface IdentityOptions {
  newMemberId: () => string;
  newMergeId: () => string;
  caps?: Partial<Record<IdType, number>>;
  /** Largest raw component re-resolved at once (a guard against a runaway graph). */
  maxComponent?: number;
}

export interface LinkEvidence {
  source: string;
  evidence: Record<string, unknown>;
  at: number;
}

export type LinkOutcome =
  | {
      status: 'linked' | 'duplicate' | 'blocked' | 'conflicting';
      memberA: string;
      memberB: string;
      merges: MergeRow[];
    }
  | { status: 'same'; memberA: string; memberB: string; merges: MergeRow[] };

/** The member holding `key`, creating one for a first-seen id. */
export async function ensureMember(
  tx: MembersTx,
  key: IdKey,
  at: number,
  o: IdentityOptions,
): Promise<string> {
  const cur = (await tx.memberOfIds([key])).get(key);
  if (cur !== undefined) return cur;
  const { type, value } = parseIdKey(key);
  if (type === 'member') throw cloudError('CLOUD_ERR_MEMBER_UNKNOWN', { memberId: value });
  const id = o.newMemberId();
  const own = idKey('member', id);
  await tx.insertMember({ id, createdAt: at, mergedInto: null, erasedAt: null });
  await tx.assignId(own, id, at);
  await tx.assignId(key, id, at);
  const [a, b] = canonicalPair(own, key);
  await tx.insertLink({ a, b, source: 'created', evidence: {}, at, revokedAt: null });
  return id;
}

/** Current member of a (possibly merged-away) member id. */
export async function currentMember(tx: MembersTx, memberId: string): Promise<string | undefined> {
  return (await tx.memberOfIds([idKey('member', memberId)])).get(idKey('member', memberId));
}

/** [ID-MERGE-1] links two ids (both already normalised and junk-free). */
export async function linkIds(
  tx: MembersTx,
  x: IdKey,
  y: IdKey,
  ev: LinkEvidence,
  o: IdentityOptions,
): Promise<LinkOutcome> {
  // A first-seen id joins the other side's member; only when both are new is one created.
  const known = await tx.memberOfIds([x, y]);
  if (!known.has(x) && !known.has(y)) await ensureMember(tx, x, ev.at, o);
  for (const k of [x, y])
    if (!known.has(k) && parseIdKey(k).type === 'member') await ensureMember(tx, k, ev.at, o);
  const [a, b] = canonicalPair(x, y);
  const existing = await tx.getLink(a, b);
  let status: LinkOutcome['status'] = 'linked';
  let merges: MergeRow[] = [];
  if (existing) status = existing.revokedAt === null ? 'duplicate' : 'blocked';
  else if (a !== b) {
    await tx.insertLink({ a, b, source: ev.source, evidence: ev.evidence, at: ev.at, revokedAt: null });
    const r = await reresolve(
      tx,
      [a, b],
      { a, b, evidence: { source: ev.source, ...ev.evidence } },
      ev.at,
      o,
    );
    merges = r.merges;
    if (r.conflicting.has(`${a}\u0000${b}`)) status = 'conflicting';
  }
  // An id the link could not join (a cap) gets a member of its own.
  for (const k of [x, y]) await ensureMember(tx, k, ev.at, o);
  const m = await tx.memberOfIds([x, y]);
  return { status, memberA: m.get(x)!, memberB: m.get(y)!, merges };
}

/** [ID-UNMERGE-1] revokes the link that caused a merge and re-resolves. */
export async function unmerge(tx: MembersTx, mergeId: string, at: number, o: IdentityOptions) {
  const m = await tx.getMerge(mergeId);
  if (!m) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'merge', id: mergeId });
  if (m.undoneAt !== null) return { merge: m, already: true };
  // Everything the link did is undone together: it may have moved ids out of several members.
  const all = await tx.mergesByLink(m.linkA, m.linkB);
  await tx.revokeLink(m.linkA, m.linkB, at);
  const seeds = [m.linkA, m.linkB];
  for (const x of all) {
    // Hand the ids back to the member they came from, so re-resolution keeps its id.
    const back = await tx.memberOfIds(x.fromIds);
    for (const k of back.keys()) await tx.assignId(k, x.from, at);
    seeds.push(idKey('member', x.from), idKey('member', x.into), ...x.fromIds);
  }
  // Ids erased since are gone from the graph; re-resolve what is left.
  const live = await tx.memberOfIds(seeds);
  await reresolve(tx, [...live.keys()], undefined, at, o);
  for (const x of all) if (x.id !== m.id) await tx.saveMerge({ ...x, undoneAt: at });
  const done = { ...m, undoneAt: at };
  await tx.saveMerge(done);
  return { merge: done, already: false };
}

interface Cause {
  a: IdKey;
  b: IdKey;
  evidence: Record<string, unknown>;
}

/** Loads the raw component around `seeds`, resolves it and writes any change of owner. */
async function reresolve(
  tx: MembersTx,
  seeds: IdKey[],
  cause: Cause | undefined,
  at: number,
  o: IdentityOptions,
) {
  const max = o.maxComponent ?? 10_000;
  const nodes = new Set<IdKey>(seeds);
  const links = new Map<string, LinkRow>();
  let frontier = [...seeds];
  while (frontier.length > 0 && nodes.size <= max) {
    const found = await tx.activeLinksTouching(frontier);
    frontier = [];
    for (const l of found) {
      links.set(`${l.a}\u0000${l.b}`, l);
      for (const e of [l.a, l.b])
        if (!nodes.has(e)) {
          nodes.add(e);
          frontier.push(e);
        }
    }
  }
  if (nodes.size > max) throw cloudError('CLOUD_ERR_MEMBER_GRAPH', { size: nodes.size, max });
  const res = resolve(nodes, [...links.values()], o.caps);
  const current = await tx.memberOfIds([...nodes]);
  const merges: MergeRow[] = [];
  for (const group of res.groups) {
    let owner = chooseOwner(group, current);
    if (owner === undefined) {
      // A part split off by a stronger link, holding no member key: a member of its own.
      owner = o.newMemberId();
      const own = idKey('member', owner);
      await tx.insertMember({ id: owner, createdAt: at, mergedInto: null, erasedAt: null });
      await tx.assignId(own, owner, at);
      const [a, b] = canonicalPair(own, group[0]!);
      await tx.insertLink({ a, b, source: 'created', evidence: {}, at, revokedAt: null });
    }
    const moved = new Map<string, IdKey[]>();
    for (const k of group) {
      const cur = current.get(k);
      if (cur === owner) continue;
      await tx.assignId(k, owner, at);
      if (cur !== undefined) {
        const l = moved.get(cur);
        if (l) l.push(k);
        else moved.set(cur, [k]);
      }
    }
    for (const k of group) {
      const { type, value } = parseIdKey(k);
      if (type !== 'member') continue;
      const row = await tx.lockMember(value);
      if (!row) continue;
      const want = value === owner ? null : owner;
      if (row.mergedInto !== want) await tx.saveMember({ ...row, mergedInto: want });
    }
    for (const [from, ids] of moved) {
      if (!cause) continue;
      const m: MergeRow = {
        id: o.newMergeId(),
        into: owner,
        from,
        linkA: cause.a,
        linkB: cause.b,
        fromIds: ids.sort(),
        evidence: cause.evidence,
        at,
        undoneAt: null,
      };
      await tx.insertMerge(m);
      merges.push(m);
    }
  }
  return { merges, conflicting: new Set(res.conflicting.map((l) => `${l.a}\u0000${l.b}`)) };
}

/**
 * The member that keeps a group: among the member keys in it, the one that holds most of
 * the group's ids now; ties go to the smaller (older, for ULIDs) id — so a merge keeps
 * the bigger side's id and an unmerge gives the split-off side its own id back.
 */
function chooseOwner(group: IdKey[], current: Map<IdKey, string>): string | undefined {
  const score = new Map<string, number>();
  for (const k of group) if (k.startsWith('member:')) score.set(k.slice(7), 0);
  for (const k of group) {
    const c = current.get(k);
    if (c !== undefined && score.has(c)) score.set(c, score.get(c)! + 1);
  }
  let best: string | undefined;
  for (const [id, s] of score)
    if (best === undefined || s > score.get(best)! || (s === score.get(best)! && id < best)) best = id;
  return best;
}

export interface Erased {
  memberId: string;
  /** Member ids merged into it (all erased with it). */
  aliases: string[];
  /** Face-gallery entries the edges must delete. */
  faceIds: string[];
  idCount: number;
}

/** [MEMBER-ERASE-1] removes every id, link, activity, tag, coupon and merge of the member. */
export async function eraseMember(tx: MembersTx, memberId: string, at: number): Promise<Erased> {
  const owner = await currentMember(tx, memberId);
  if (owner === undefined) throw cloudError('CLOUD_ERR_MEMBER_UNKNOWN', { memberId });
  const ids = await tx.idsOfMember(owner);
  const aliases = ids.filter((k) => k.startsWith('member:')).map((k) => k.slice(7));
  const faceIds = ids.filter((k) => k.startsWith('face_id:')).map((k) => k.slice(8));
  await tx.deleteCouponsOf(aliases);
  await tx.deleteTagsOf(aliases);
  await tx.deleteActivityOf(ids);
  await tx.deleteLinksTouching(ids);
  await tx.deleteMergesOf(aliases);
  await tx.removeIds(ids);
  for (const a of aliases) {
    const row = await tx.lockMember(a);
    if (row) await tx.saveMember({ ...row, erasedAt: at, mergedInto: a === owner ? null : owner });
  }
  return { memberId: owner, aliases, faceIds, idCount: ids.length };
}
