/**
 * What the UDP load (udp-client.ts), the UDP upstream (udp-upstream.ts) and the harness agree
 * on. Pure and dependency-free so the helper processes start fast.
 */

/**
 * Answers IP literals at once, for dgram's `lookup` option. Node's default (dns.lookup)
 * answers even a literal on a later tick: a tick and a closure on every send to an address.
 * The bench only ever uses IPv4 literals on 127.0.0.0/8.
 */
export function literalLookup(address: string, _options: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, 4);
}

/**
 * A latency histogram with 1 µs buckets up to `limitMs` (later values land in the last
 * bucket): recording is one array increment, so the load pays nothing per reply for it.
 */
export class LatencyHistogram {
  private readonly buckets: Uint32Array;
  count = 0;

  constructor(limitMs: number) {
    this.buckets = new Uint32Array(Math.ceil(limitMs * 1000) + 1);
  }

  /** Records one latency in milliseconds. */
  record(ms: number): void {
    const index = Math.round(ms * 1000);
    this.buckets[index < this.buckets.length ? (index < 0 ? 0 : index) : this.buckets.length - 1]++;
    this.count++;
  }

  /** The latency (ms) at or below which `fraction` (0–1) of the recordings fall; undefined when empty. */
  percentile(fraction: number): number | undefined {
    if (this.count === 0) return undefined;
    const rank = Math.max(1, Math.ceil(fraction * this.count));
    let seen = 0;
    for (let i = 0; i < this.buckets.length; i++) {
      seen += this.buckets[i];
      if (seen >= rank) return i / 1000;
    }
    return (this.buckets.length - 1) / 1000;
  }
}
