/**
 * Random numbers for the data path's random choices (fault injection, mirroring, backoff jitter,
 * weighted backends, balancer picks), from one seedable source so tests are deterministic.
 *
 * Each purpose draws from its own stream (`stream(seed, "fault")`): with a fixed seed, the
 * sequence one purpose sees does not depend on how many draws another purpose made — so "2,000
 * requests with a 50% fault" gives the same count whatever the balancer did meanwhile. Without a
 * seed, every stream comes from Math.random (never seeded, never reproducible).
 */

/** A uniform source in [0, 1). */
export type Random = () => number;

/**
 * mulberry32: 32 bits of state, uniform in [0, 1) with 2^-32 resolution. Not cryptographic —
 * nothing security-relevant may draw from it.
 */
export function mulberry32(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of a string, 32 bits: turns a stream name into seed material. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * The stream `name` of a sidecar seeded with `seed` (`--random-seed`); undefined seed means
 * Math.random. Streams of one seed with different names are independent sequences.
 */
export function stream(seed: number | undefined, name: string): Random {
  if (seed === undefined) return Math.random;
  return mulberry32((seed ^ fnv1a(name)) >>> 0);
}

/**
 * True with probability `percent`/100 (0–100; values outside are clamped). 100 draws nothing and
 * 0 draws nothing, so a policy at 100% does not advance its stream.
 */
export function chance(random: Random, percent: number): boolean {
  if (percent >= 100) return true;
  if (!(percent > 0)) return false;
  return random() * 100 < percent;
}
