import type { UpstreamServer } from '../pool/server.ts';
import { isCandidate, type Selector, type SelectorFactory } from './types.ts';

/**
 * Least connections, weighted: the candidate with the fewest `active` connections relative
 * to its weight wins (HAProxy `leastconn`, nginx `least_conn`). Right for long-lived L4
 * connections (databases, brokers), where round-robin counts arrivals but not how long each
 * one stays.
 *
 * `active / weight` is compared by cross-multiplying (`a.active * b.weight` against
 * `b.active * a.weight`): exact integer arithmetic, no division, no rounding ties. Both
 * factors are below 2^31 in practice, so the products stay far below 2^53.
 *
 * Ties are broken round-robin: the scan starts one past the previous winner, and the first
 * server in scan order with the lowest load wins. So an idle pool (everyone at 0) spreads
 * new connections across all servers instead of always handing the first one the next
 * connection, and equally loaded servers take turns. The first scan starts at a random
 * position (`options.random`) so several balancers restarted together do not all begin with
 * the same server.
 *
 * Servers that are not candidates (down, disabled, full at maxConnections, weight 0, already
 * tried) are skipped; nothing is rebuilt when health flaps. Cost: O(N) per pick, no
 * allocation.
 */
export const createLeastConnections: SelectorFactory = (servers, options) =>
  new LeastConnectionsSelector(servers, Math.floor(options.random() * servers.length));

class LeastConnectionsSelector implements Selector {
  private readonly servers: readonly UpstreamServer[];
  /** Where the next scan starts: one past the previous winner. */
  private next: number;

  constructor(servers: readonly UpstreamServer[], start: number) {
    this.servers = servers;
    // Guard against a random source that returns exactly 1 (outside its contract).
    this.next = servers.length === 0 ? 0 : Math.min(Math.max(start, 0), servers.length - 1);
  }

  pick(_clientIp: string, exclude: ReadonlySet<UpstreamServer> | undefined): UpstreamServer | undefined {
    const { servers } = this;
    const count = servers.length;
    let best: UpstreamServer | undefined;
    let bestIndex = 0;
    let at = this.next;
    for (let step = 0; step < count; step++, at = at + 1 === count ? 0 : at + 1) {
      const server = servers[at]!;
      if (!isCandidate(server, exclude)) continue;
      // Strictly fewer relative to weight; on a tie the earlier server in scan order stays.
      if (best === undefined || server.active * best.weight < best.active * server.weight) {
        best = server;
        bestIndex = at;
      }
    }
    if (best === undefined) return undefined;
    this.next = bestIndex + 1 === count ? 0 : bestIndex + 1;
    return best;
  }
}
