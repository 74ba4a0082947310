/**
 * Small, allocation-free 32-bit hashing for selectors (ip-hash). Not cryptographic: a client
 * who can choose its source address can choose its server anyway.
 *
 * FNV-1a alone mixes short strings poorly (IPs that differ only in their last digit land
 * close together), so every string hash is finished with murmur3's fmix32, whose avalanche
 * makes each input bit flip about half the output bits.
 */

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/**
 * FNV-1a over the UTF-16 code units of `text`, without allocating (charCodeAt loop).
 * Returns an unsigned 32-bit integer. Addresses are ASCII, so code units are bytes.
 */
export function fnv1a32(text: string, seed = FNV_OFFSET): number {
  let hash = seed;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, FNV_PRIME);
  }
  return hash >>> 0;
}

/** murmur3's 32-bit finaliser: a bijection on uint32 with full avalanche. Returns uint32. */
export function fmix32(value: number): number {
  let h = value | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A well-mixed uint32 hash of a string: fmix32(FNV-1a). Allocation-free. */
export function hashString(text: string): number {
  return fmix32(fnv1a32(text));
}

/**
 * A well-mixed uint32 of a pair. The pair is combined asymmetrically (the second value is
 * multiplied by the golden-ratio constant first) so that (a, b) and (b, a) differ, then
 * finalised, so flipping any input bit changes about half the output bits.
 */
export function mixPair(a: number, b: number): number {
  return fmix32((a ^ Math.imul(b, 0x9e3779b1)) + 0x7f4a7c15);
}

const TWO_POW_32 = 4_294_967_296;

/**
 * Maps a uint32 onto the open interval (0, 1): never 0 and never 1, so `Math.log` of the
 * result is finite and strictly negative.
 */
export function toOpenUnit(hash: number): number {
  return (hash + 0.5) / TWO_POW_32;
}
