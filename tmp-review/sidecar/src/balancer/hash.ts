/**
 * The ring hash's hash function: MurmurHash3 x86_32 (Austin Appleby, public domain; spec and test
 * vectors in the SMHasher repository), written here from the algorithm. Non-cryptographic, fast,
 * with full avalanche: keys that differ in one character ("user-1", "user-2") land far apart on
 * the ring, which FNV-1a alone does not guarantee.
 *
 * Strings are hashed as their UTF-16 code units, two per 32-bit block, so the result equals
 * MurmurHash3 over the string's UTF-16LE bytes. That needs no encoding step (no `Buffer` per
 * request) and is the same on every sidecar, which is all consistency needs: every caller of a
 * service must place a key at the same ring position.
 */

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

/** 32-bit rotate left. */
function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

/** One body block mixed into `h` (the murmur3 round). */
function round(h: number, k: number): number {
  let k1 = Math.imul(k, C1);
  k1 = rotl(k1, 15);
  k1 = Math.imul(k1, C2);
  const h1 = rotl(h ^ k1, 13);
  return (Math.imul(h1, 5) + 0xe6546b64) | 0;
}

/** The murmur3 finaliser: forces every input bit to affect every output bit. Returns uint32. */
export function fmix32(h: number): number {
  let x = h ^ (h >>> 16);
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/**
 * MurmurHash3 x86_32 of `text`'s UTF-16LE bytes, with `seed` (uint32, default 0). Returns a
 * uint32. No allocation; O(text.length).
 */
export function murmur3(text: string, seed = 0): number {
  const n = text.length;
  let h = seed | 0;
  const blocks = n - (n & 1);
  for (let i = 0; i < blocks; i += 2) h = round(h, text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16));
  if ((n & 1) === 1) {
    // The 2-byte tail: mixed like a block but without the rotate-multiply-add on h.
    let k1 = Math.imul(text.charCodeAt(n - 1), C1);
    k1 = rotl(k1, 15);
    h ^= Math.imul(k1, C2);
  }
  return fmix32(h ^ (n * 2));
}

/**
 * MurmurHash3 x86_32 of the 4-byte little-endian encoding of `value` (a uint32), with `seed`.
 * The ring uses it to derive an endpoint's virtual-node points from the hash of its key without
 * building a string per point.
 */
export function murmur3Uint32(value: number, seed: number): number {
  return fmix32(round(seed | 0, value | 0) ^ 4);
}
