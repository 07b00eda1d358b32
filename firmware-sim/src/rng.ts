/**
 * Small seeded PRNG (mulberry32) so a simulated device behaves the same way for the
 * same seed: a failing test can be replayed exactly. Not for anything secret.
 */
export type Rng = () => number;

export function mulberry32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a: a stable default seed per device id, so two devices in a fleet differ. */
export function seedFrom(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A normally distributed sample (Box-Muller) from a uniform source. */
export function gaussian(rng: Rng): number {
  const u = Math.max(rng(), Number.EPSILON);
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/**
 * A clock running `factor` times faster than the wall clock from `start`, for tests and
 * demos: a fridge's ten minutes of warming pass in one second at factor 600.
 */
export function acceleratedClock(factor: number, start: number = Date.now()): () => number {
  const t0 = Date.now();
  return () => Math.round(start + (Date.now() - t0) * factor);
}
