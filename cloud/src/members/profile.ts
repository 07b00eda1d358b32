import type { Activity } from './types.ts';

/**
 * The member profile, computed from the member's activity (docs/members.md "Profiles"):
 * activity is stored per id, so a merge adds the other side's history and an unmerge
 * takes it back without any counter to fix [PROFILE-DERIVED-1].
 *
 * RFM after the usual retail tiers (Youzan 客户数据管理, sjwxsc): R from days since the
 * last purchase, F from purchases in the last 365 days, M from spend in the last 365
 * days, each 1..5 by fixed thresholds; tier: new / active / loyal / dormant / lost.
 */
export interface ChannelStats {
  channel: string;
  store: string;
  visits: number;
  purchases: number;
  spendCents: number;
  lastSeen: number;
}

export interface Profile {
  visits: number;
  purchases: number;
  spendCents: number;
  recognitions: number;
  lastSeen: number | null;
  lastPurchase: number | null;
  daysSinceLastSeen: number;
  daysSinceLastPurchase: number;
  rfm: { r: number; f: number; m: number; score: number };
  tier: 'prospect' | 'new' | 'active' | 'loyal' | 'dormant' | 'lost';
  byChannelStore: ChannelStats[];
}

const DAY = 86_400_000;
export const RFM_THRESHOLDS = {
  /** days since last purchase: ≤7 → 5, ≤30 → 4, ≤90 → 3, ≤180 → 2, else 1 */
  recencyDays: [7, 30, 90, 180],
  /** purchases in 365 days: ≥20 → 5, ≥10 → 4, ≥4 → 3, ≥2 → 2, else 1 */
  frequency: [20, 10, 4, 2],
  /** spend in 365 days (cents): ≥200000 → 5, ≥50000 → 4, ≥10000 → 3, ≥2000 → 2, else 1 */
  monetaryCents: [200_000, 50_000, 10_000, 2_000],
} as const;

/** Activity window a profile reads (RFM looks back a year). */
export const PROFILE_WINDOW_MS = 366 * DAY;

const VISIT_KINDS = new Set(['visit', 'recognized', 'cabinet_session', 'purchase']);

export function computeProfile(acts: readonly Activity[], now: number): Profile {
  const by = new Map<string, ChannelStats>();
  let visits = 0;
  let purchases = 0;
  let spend = 0;
  let recognitions = 0;
  let lastSeen: number | null = null;
  let lastPurchase: number | null = null;
  let f365 = 0;
  let m365 = 0;
  for (const a of acts) {
    const k = `${a.channel}\u0000${a.store}`;
    let s = by.get(k);
    if (!s) s = { channel: a.channel, store: a.store, visits: 0, purchases: 0, spendCents: 0, lastSeen: 0 };
    by.set(k, s);
    s.lastSeen = Math.max(s.lastSeen, a.at);
    lastSeen = Math.max(lastSeen ?? 0, a.at);
    if (VISIT_KINDS.has(a.kind)) {
      visits++;
      s.visits++;
    }
    if (a.kind === 'recognized') recognitions++;
    if (a.kind === 'purchase') {
      purchases++;
      s.purchases++;
      spend += a.amountCents;
      s.spendCents += a.amountCents;
      lastPurchase = Math.max(lastPurchase ?? 0, a.at);
      if (now - a.at <= 365 * DAY) {
        f365++;
        m365 += a.amountCents;
      }
    }
  }
  const daysSinceLastPurchase = lastPurchase === null ? 9999 : Math.floor((now - lastPurchase) / DAY);
  const r =
    lastPurchase === null
      ? 0
      : 5 - RFM_THRESHOLDS.recencyDays.filter((d) => daysSinceLastPurchase > d).length;
  const f = purchases === 0 ? 0 : 5 - RFM_THRESHOLDS.frequency.filter((x) => f365 < x).length;
  const m = purchases === 0 ? 0 : 5 - RFM_THRESHOLDS.monetaryCents.filter((x) => m365 < x).length;
  const tier: Profile['tier'] =
    purchases === 0
      ? 'prospect'
      : daysSinceLastPurchase > 180
        ? 'lost'
        : daysSinceLastPurchase > 60
          ? 'dormant'
          : f >= 4
            ? 'loyal'
            : purchases === 1
              ? 'new'
              : 'active';
  return {
    visits,
    purchases,
    spendCents: spend,
    recognitions,
    lastSeen,
    lastPurchase,
    daysSinceLastSeen: lastSeen === null ? 9999 : Math.floor((now - lastSeen) / DAY),
    daysSinceLastPurchase,
    rfm: { r, f, m, score: r * 100 + f * 10 + m },
    tier,
    byChannelStore: [...by.values()].sort((a, b) => (a.channel + a.store < b.channel + b.store ? -1 : 1)),
  };
}
