/**
 * Which SKU and how many explain a weight change (docs/cabinet.md "Weight shelves").
 * A lane's planogram lists the SKUs that may sit on it with their unit weights.
 *
 * [WEIGHT-AMBIG-1] every (sku, count) whose weight is within tolerance of |delta| is a
 * candidate; exactly one candidate is the answer; more than one (two SKUs of the same
 * unit weight, or 2×250 g vs 1×500 g) is reported as ambiguous with all candidates, never
 * guessed; none is `unknown` (a foreign object, a hand, a miscalibrated lane).
 */
export interface PlanogramSku {
  sku: string;
  unitGrams: number;
}

export interface LanePlanogram {
  lane: string;
  skus: readonly PlanogramSku[];
  /** Largest count considered in one change (default 10). */
  maxCount?: number;
}

export interface Tolerance {
  /** Absolute tolerance in grams (scale noise). */
  absG: number;
  /** Relative tolerance of the item weight (products vary: 2% is typical for packaged goods). */
  rel: number;
  /**
   * Load-cell creep allowed when counting a lane from its net weight [WEIGHT-DRIFT-1]
   * (never more than a third of the unit weight, so a count stays unambiguous).
   */
  creepG: number;
}
export const DEFAULT_TOLERANCE: Tolerance = { absG: 4, rel: 0.02, creepG: 15 };

export type Classification =
  | { kind: 'match'; sku: string; count: number }
  | { kind: 'ambiguous'; candidates: Array<{ sku: string; count: number }> }
  | { kind: 'unknown' };

export function classifyDelta(
  deltaGrams: number,
  plan: LanePlanogram,
  tol: Tolerance = DEFAULT_TOLERANCE,
): Classification {
  const w = Math.abs(deltaGrams);
  const candidates: Array<{ sku: string; count: number; err: number }> = [];
  for (const s of plan.skus) {
    for (let n = 1; n <= (plan.maxCount ?? 10); n++) {
      const expect = n * s.unitGrams;
      if (expect > w * 1.5 + tol.absG) break;
      const err = Math.abs(w - expect);
      if (err <= tol.absG + tol.rel * expect) candidates.push({ sku: s.sku, count: n, err });
    }
  }
  if (candidates.length === 0) return { kind: 'unknown' };
  if (candidates.length === 1) return { kind: 'match', sku: candidates[0]!.sku, count: candidates[0]!.count };
  return {
    kind: 'ambiguous',
    candidates: candidates.sort((a, b) => a.err - b.err).map(({ sku, count }) => ({ sku, count })),
  };
}

/**
 * Counts per SKU from a lane's net weight (for a closing inventory): only a lane whose
 * planogram has one SKU, or whose weight one SKU/count explains alone, can be counted;
 * otherwise the lane is ambiguous [WEIGHT-AMBIG-1].
 */
export function countOnLane(netGrams: number, plan: LanePlanogram, tol: Tolerance = DEFAULT_TOLERANCE) {
  if (Math.abs(netGrams) <= tol.absG)
    return { kind: 'match' as const, sku: plan.skus[0]?.sku ?? '', count: 0 };
  if (plan.skus.length === 1) {
    const s = plan.skus[0]!;
    const n = Math.round(netGrams / s.unitGrams);
    const err = Math.abs(netGrams - n * s.unitGrams);
    const creep = Math.min(tol.creepG, s.unitGrams / 3);
    if (n >= 0 && err <= tol.absG + creep + tol.rel * n * s.unitGrams)
      return { kind: 'match' as const, sku: s.sku, count: n };
    return { kind: 'unknown' as const };
  }
  return classifyDelta(netGrams, { ...plan, maxCount: plan.maxCount ?? 50 }, tol);
}
