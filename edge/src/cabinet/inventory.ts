import type { RfidInventory } from '../rfid/api.ts';
import type { WeightShelf } from '../weight/shelf.ts';

/**
 * The inventory seam of the cabinet (docs/cabinet.md "Inventory"): what is in the cabinet
 * right now, as items by key. A key is an RFID EPC (qty 1, its SKU from the tag map) or a
 * weight lane (qty = items counted on it). The session diffs the closing snapshot against
 * the opening one key by key [CAB-DIFF-1], so the same source must answer both.
 */
export type InventorySource = 'rfid' | 'weight' | 'memory';

export interface InventoryItem {
  key: string;
  sku: string;
  qty: number;
  /** Weight lanes: the SKU's unit weight (lets the diff recognise a put-back on the wrong lane). */
  unitGrams?: number;
}

/** A key whose content could not be attributed (ambiguous lane weight, unknown EPC). */
export interface UnresolvedEntry {
  key: string;
  reason: 'ambiguous' | 'unknown';
  candidates?: string[];
  netGrams?: number;
}

export interface Inventory {
  items: InventoryItem[];
  unresolved: UnresolvedEntry[];
  sources: InventorySource[];
}

export interface InventoryProvider {
  /**
   * A snapshot for a session boundary. `expect` (the opening snapshot, at close) lets a
   * source look harder for what it expected to see: RFID re-inventories missing tags
   * before calling them gone [CAB-INV-2].
   */
  snapshot(opts?: { expect?: Inventory | undefined }): Promise<Inventory>;
}

/** Several sources at once (RFID for tagged items, weight lanes for the rest). */
export function combinedInventory(parts: readonly InventoryProvider[]): InventoryProvider {
  return {
    async snapshot(opts) {
      const all = await Promise.all(parts.map((p) => p.snapshot(opts)));
      return {
        items: all.flatMap((a) => a.items),
        unresolved: all.flatMap((a) => a.unresolved),
        sources: [...new Set(all.flatMap((a) => a.sources))],
      };
    },
  };
}

/** An in-memory cabinet: tests and the torture set its content directly. */
export class MemoryInventory implements InventoryProvider {
  readonly items = new Map<string, InventoryItem>();

  put(key: string, sku: string, qty = 1): void {
    if (qty <= 0) this.items.delete(key);
    else this.items.set(key, { key, sku, qty });
  }

  async snapshot(): Promise<Inventory> {
    return { items: [...this.items.values()].map((i) => ({ ...i })), unresolved: [], sources: ['memory'] };
  }
}

// ---------------------------------------------------------------- weight

export interface WeightInventoryOptions {
  /** How long to wait for every lane to be stable (a swinging product) before counting anyway. */
  settleMs?: number;
  sleep?: (ms: number) => Promise<void>;
  now?: () => number;
}

/** Inventory from weight lanes: one item entry per lane keyed `w:{shelf}:{lane}`. */
export function weightInventory(
  shelves: readonly WeightShelf[],
  o: WeightInventoryOptions = {},
): InventoryProvider {
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = o.now ?? Date.now;
  return {
    async snapshot() {
      const deadline = now() + (o.settleMs ?? 0);
      while (!shelves.every((s) => s.allStable()) && now() < deadline) await sleep(50);
      const inv: Inventory = { items: [], unresolved: [], sources: ['weight'] };
      for (const s of shelves) {
        for (const c of s.counts()) {
          const key = `w:${s.id}:${c.lane}`;
          const r = c.result;
          if (!r || r.kind === 'unknown') {
            inv.unresolved.push({
              key,
              reason: 'unknown',
              ...(c.netGrams !== undefined ? { netGrams: c.netGrams } : {}),
            });
          } else if (r.kind === 'ambiguous') {
            // [WEIGHT-AMBIG-1] never guessed.
            inv.unresolved.push({
              key,
              reason: 'ambiguous',
              candidates: r.candidates.map((x) => `${x.count}x${x.sku}`),
              ...(c.netGrams !== undefined ? { netGrams: c.netGrams } : {}),
            });
          } else if (r.count > 0) {
            const unitGrams = s.lanes.get(c.lane)?.plan.skus.find((x) => x.sku === r.sku)?.unitGrams;
            inv.items.push({
              key,
              sku: r.sku,
              qty: r.count,
              ...(unitGrams !== undefined ? { unitGrams } : {}),
            });
          }
        }
      }
      return inv;
    },
  };
}

// ---------------------------------------------------------------- RFID

/** What the cabinet needs of the RFID driver (edge/src/rfid/api.ts `RfidInventory`). */
export type RfidReaderLike = Pick<RfidInventory, 'inventoryNow'> & Partial<Pick<RfidInventory, 'present'>>;

export interface RfidInventoryOptions {
  /** EPC → SKU (the tag map; SGTIN decoding would go here). Unknown EPCs are reported. */
  skuOf: (epc: string) => string | undefined;
  /** Rounds always run for a snapshot (missed reads are per round: the union counts) [CAB-INV-1]. */
  rounds?: number;
  /** Extra rounds at most, run only while expected tags are still missing [CAB-INV-2]. */
  extraRounds?: number;
}

/**
 * RFID inventory [CAB-INV-1][CAB-INV-2]: a tag missed in one round (collision,
 * interference, a hand over it) is a false theft if one round decides. A snapshot is the
 * union of `rounds` fresh rounds (`inventoryNow`, unsmoothed: the driver's smoothed
 * `present()` view lags departures, which would charge a tag taken in the previous
 * session to the next customer). Tags expected (at close: the opening count; at opening:
 * the last closing count, plus the driver's smoothed `present()` view) and still unseen get
 * up to `extraRounds` more rounds. If an
 * antenna failed in any round, an expected tag still unseen is `unknown`, not gone, and is
 * never charged (the driver's `complete: false`).
 */
export function rfidInventory(reader: RfidReaderLike, o: RfidInventoryOptions): InventoryProvider {
  const rounds = o.rounds ?? 3;
  const extra = o.extraRounds ?? 6;
  return {
    async snapshot(opts) {
      const seen = new Set<string>();
      let completeRounds = 0;
      let attempts = 0;
      const round = async () => {
        attempts++;
        const r = await reader.inventoryNow();
        if (r.complete) completeRounds++;
        for (const epc of r.tags.keys()) seen.add(epc);
      };
      // A round with a failed antenna does not count towards the quota (its reads do).
      while (completeRounds < rounds && attempts < rounds + extra) await round();
      const expected = (opts?.expect?.items ?? [])
        .filter((it) => it.key.startsWith('rfid:'))
        .map((it) => it.key.slice(5));
      // The driver's smoothed view only says where to look harder (a tag stocked since the
      // last count), never what is there: it lags departures [CAB-INV-2].
      if (reader.present)
        for (const epc of reader.present().keys()) if (!expected.includes(epc)) expected.push(epc);
      for (let i = 0; i < extra && attempts < rounds + 2 * extra && expected.some((e) => !seen.has(e)); i++)
        await round();
      const complete = completeRounds >= rounds;
      const inv: Inventory = { items: [], unresolved: [], sources: ['rfid'] };
      for (const epc of seen) {
        const sku = o.skuOf(epc);
        if (sku) inv.items.push({ key: `rfid:${epc}`, sku, qty: 1 });
        else inv.unresolved.push({ key: `rfid:${epc}`, reason: 'unknown' });
      }
      if (!complete) {
        for (const epc of expected)
          if (!seen.has(epc)) inv.unresolved.push({ key: `rfid:${epc}`, reason: 'unknown' });
      }
      return inv;
    },
  };
}

// ---------------------------------------------------------------- diff

/**
 * [CAB-DIFF-2] weight lanes: an item missing from lane A while lane B (another SKU of the
 * same unit weight) gained one is, by weight alone, a put-back on the wrong lane as much
 * as a take plus a foreign item. Customers misplace cans far more often than they bring
 * in foreign ones, so the pair cancels: nothing is charged or returned for it and lane A
 * is reported ambiguous (staff re-faces the shelf). Per key: how many items to add back
 * to its closing count (positive on the losing lane, negative on the gaining one).
 */
function misplacedPutBacks(
  open: Map<string, InventoryItem>,
  close: Map<string, InventoryItem>,
  skip: Set<string>,
): Map<string, number> {
  const losses: Array<{ key: string; unit: number; n: number }> = [];
  const gains: Array<{ key: string; unit: number; n: number }> = [];
  for (const key of new Set([...open.keys(), ...close.keys()])) {
    if (!key.startsWith('w:') || skip.has(key)) continue;
    const a = open.get(key);
    const b = close.get(key);
    const unit = a?.unitGrams ?? b?.unitGrams;
    if (unit === undefined) continue;
    const d = (b?.qty ?? 0) - (a?.qty ?? 0);
    if (d < 0) losses.push({ key, unit, n: -d });
    if (d > 0) gains.push({ key, unit, n: d });
  }
  const out = new Map<string, number>();
  for (const g of gains) {
    for (const l of losses) {
      if (g.n === 0) break;
      if (l.n === 0 || Math.abs(l.unit - g.unit) > 0.02 * l.unit) continue;
      const n = Math.min(l.n, g.n);
      l.n -= n;
      g.n -= n;
      out.set(l.key, (out.get(l.key) ?? 0) + n);
      out.set(g.key, (out.get(g.key) ?? 0) - n);
    }
  }
  return out;
}

export interface InventoryDiff {
  taken: Array<{ sku: string; qty: number }>;
  returned: Array<{ sku: string; qty: number }>;
  unresolved: Array<{
    key: string;
    reason: 'ambiguous' | 'unknown' | 'foreign';
    candidates?: string[];
    deltaGrams?: number;
  }>;
}

/**
 * [CAB-DIFF-1] key by key: fewer items under a key than at opening → taken (of that
 * key's SKU); more → returned (a product put back on another lane or a foreign tag:
 * never charged, never credited against other items). A key unresolved at either end
 * is reported, and nothing under it is charged. Net per SKU: a take and a put-back of
 * the same SKU on another lane cancel out (the customer does not have it).
 */
export function diffInventory(opening: Inventory, closing: Inventory): InventoryDiff {
  const open = new Map(opening.items.map((i) => [i.key, i]));
  const close = new Map(closing.items.map((i) => [i.key, i]));
  const unresolvedKeys = new Set([...opening.unresolved, ...closing.unresolved].map((u) => u.key));
  const misplaced = misplacedPutBacks(open, close, unresolvedKeys);
  const takenBySku = new Map<string, number>();
  const returnedBySku = new Map<string, number>();
  const add = (m: Map<string, number>, sku: string, n: number) => m.set(sku, (m.get(sku) ?? 0) + n);
  for (const key of new Set([...open.keys(), ...close.keys()])) {
    if (unresolvedKeys.has(key)) continue;
    const a = open.get(key);
    const b = close.get(key);
    const before = a?.qty ?? 0;
    // [CAB-DIFF-2] a put-back on the wrong lane: neither a take nor a return.
    const after = (b?.qty ?? 0) + (misplaced.get(key) ?? 0);
    if (a && b && a.sku !== b.sku) {
      add(takenBySku, a.sku, before);
      add(returnedBySku, b.sku, after);
    } else if (after < before) add(takenBySku, a!.sku, before - after);
    else if (after > before) add(returnedBySku, b!.sku, after - before);
  }
  // A SKU taken from one key and put back under another: the customer does not have it.
  for (const [sku, r] of returnedBySku) {
    const t = takenBySku.get(sku) ?? 0;
    const n = Math.min(t, r);
    if (n > 0) {
      takenBySku.set(sku, t - n);
      returnedBySku.set(sku, r - n);
    }
  }
  const list = (m: Map<string, number>) =>
    [...m.entries()]
      .filter(([, q]) => q > 0)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([sku, qty]) => ({ sku, qty }));
  const unresolved: InventoryDiff['unresolved'] = [];
  const seen = new Set<string>();
  for (const [key, n] of misplaced) {
    if (n > 0)
      unresolved.push({ key, reason: 'ambiguous', candidates: [`${n}x put back on a lane of equal weight`] });
  }
  for (const u of [...closing.unresolved, ...opening.unresolved]) {
    if (seen.has(u.key)) continue;
    seen.add(u.key);
    unresolved.push({ key: u.key, reason: u.reason, ...(u.candidates ? { candidates: u.candidates } : {}) });
  }
  return { taken: list(takenBySku), returned: list(returnedBySku), unresolved };
}
