import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ID_TYPES, type IdType, normaliseId } from './ids.ts';
import { MemoryMembersRepo } from './memory-repo.ts';
import { MembersService } from './service.ts';

/**
 * Identity resolution properties (docs/members.md "Identity"): [ID-ORDER-1] the same
 * links in any order give the same members; [ID-CAP-1] caps hold; [ID-JUNK-1] junk ids
 * never link anything; [ID-UNMERGE-1] an unmerge gives back the members there were.
 */
type Id = { type: IdType; value: string };

const VALUES: Record<string, string[]> = {
  phone: ['13912345678', '13912345679', '15800001111'],
  member_card: ['C1001', 'C1002'],
  wechat_unionid: ['uA', 'uB'],
  wechat_openid: ['oA', 'oB', 'oC', 'oD', 'oE', 'oF', 'oG'],
  alipay_user_id: ['2088000000000001', '2088000000000002'],
  device_id: ['d1', 'd2', 'd3'],
};
const arbId: fc.Arbitrary<Id> = fc
  .constantFrom(...Object.keys(VALUES))
  .chain((t) => fc.constantFrom(...VALUES[t]!).map((value) => ({ type: t as IdType, value })));
const arbLink = fc.tuple(arbId, arbId).filter(([a, b]) => a.type !== b.type || a.value !== b.value);
const arbLinks = fc.array(arbLink, { minLength: 1, maxLength: 14 });

function service() {
  let n = 0;
  const repo = new MemoryMembersRepo();
  const svc = new MembersService({
    repo,
    now: () => 1_700_000_000_000,
    newId: () => `M${String(++n).padStart(6, '0')}`,
    // small caps so that conflicts happen often
    caps: { wechat_openid: 2, device_id: 2 },
  });
  return { repo, svc };
}

async function apply(svc: MembersService, links: [Id, Id][]) {
  for (const [a, b] of links) await svc.link(a, b, { source: 'test', evidence: {} });
}

/** Members as sets of external ids (member keys are names the order may change). */
function partition(repo: MemoryMembersRepo): string[] {
  const by = new Map<string, string[]>();
  for (const [k, m] of repo.ids) {
    if (k.startsWith('member:')) continue;
    const l = by.get(m);
    if (l) l.push(k);
    else by.set(m, [k]);
  }
  return [...by.values()].map((g) => g.sort().join(',')).sort();
}

describe('identity resolution properties', () => {
  it('[ID-ORDER-1] the same links in any order give the same members', async () => {
    await fc.assert(
      fc.asyncProperty(
        arbLinks.chain((ls) =>
          fc.tuple(fc.constant(ls), fc.shuffledSubarray(ls, { minLength: ls.length, maxLength: ls.length })),
        ),
        async ([links, shuffled]) => {
          const x = service();
          const y = service();
          await apply(x.svc, links);
          await apply(y.svc, shuffled);
          expect(partition(y.repo)).toEqual(partition(x.repo));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('[ID-CAP-1] no member holds more ids of a type than its cap; every id has one member', async () => {
    await fc.assert(
      fc.asyncProperty(arbLinks, async (links) => {
        const { repo, svc } = service();
        await apply(svc, links);
        const caps: Record<string, number> = {
          ...Object.fromEntries(Object.entries(ID_TYPES).map(([t, v]) => [t, v.cap])),
          wechat_openid: 2,
          device_id: 2,
        };
        for (const [member, keys] of repo.idsByMember) {
          const count = new Map<string, number>();
          for (const k of keys) count.set(k.split(':')[0]!, (count.get(k.split(':')[0]!) ?? 0) + 1);
          for (const [t, n] of count) expect(n, `${member} holds ${n} ${t}`).toBeLessThanOrEqual(caps[t]!);
          for (const k of keys) expect(repo.ids.get(k)).toBe(member);
        }
        // every linked id belongs to a live member (not merged away, not erased)
        for (const m of new Set(repo.ids.values())) expect(repo.members.get(m)?.mergedInto).toBeNull();
      }),
      { numRuns: 150 },
    );
  });

  it('[ID-JUNK-1] junk and placeholder ids never link anything', async () => {
    const generic = fc.constantFrom(
      '',
      '  ',
      '0',
      'unknown',
      'NULL',
      'undefined',
      'test',
      'nan',
      '-1',
      'N/A',
      '0000000',
    );
    const junk = fc.oneof(
      fc.tuple(
        generic,
        fc.constantFrom('phone', 'wechat_openid', 'member_card', 'device_id', 'alipay_user_id'),
      ),
      fc.tuple(
        fc.constantFrom('13800138000', '11111111111', '12345678901', '139123', '+1 555 0100'),
        fc.constant('phone'),
      ),
    );
    await fc.assert(
      fc.asyncProperty(arbLinks, junk, async (links, [value, type]) => {
        const { repo, svc } = service();
        await apply(svc, links);
        const before = partition(repo);
        const linksBefore = repo.links.size;
        await expect(
          svc.link({ type: type as IdType, value }, links[0]![0], { source: 'test', evidence: {} }),
        ).rejects.toMatchObject({
          code: 'CLOUD_ERR_MEMBER_ID',
        });
        const r = await svc.record({
          key: `junk-${value}`,
          id: { type, value },
          kind: 'visit',
          channel: 'app',
          store: 's1',
          at: 1,
        });
        expect(r.outcome).toBe('refused');
        expect(partition(repo)).toEqual(before);
        expect(repo.links.size).toBe(linksBefore);
      }),
      { numRuns: 60 },
    );
    expect(normaliseId('phone', '+86 139-1234-5678')).toMatchObject({ ok: true, value: '13912345678' });
  });

  it('[ID-UNMERGE-1] unmerging the merges a link caused restores the previous members, ids and all', async () => {
    await fc.assert(
      fc.asyncProperty(arbLinks, arbLink, async (links, extra) => {
        const { repo, svc } = service();
        await apply(svc, links);
        const before = new Map(repo.ids);
        const r = await svc.link(extra[0], extra[1], { source: 'test', evidence: { why: 'extra' } });
        fc.pre(r.merges.length > 0);
        await svc.unmerge(r.merges[r.merges.length - 1]!.id);
        // the two ends may be new ids; apart from them (and their fresh members) nothing changed
        const after = new Map([...repo.ids].filter(([k]) => before.has(k)));
        expect(after).toEqual(before);
        // and merging is blocked from coming back by a replay of the same link
        const again = await svc.link(extra[0], extra[1], { source: 'test', evidence: {} });
        expect(again.status).toBe('blocked');
        expect(new Map([...repo.ids].filter(([k]) => before.has(k)))).toEqual(before);
      }),
      { numRuns: 150 },
    );
  });
});
