import type { UpstreamServer } from '../pool/server.ts';
import { isCandidate, type Selector, type SelectorFactory } from './types.ts';

/**
 * Smooth weighted round-robin, exactly as nginx does it (ngx_http_upstream_get_peer).
 *
 * On each pick, every eligible server's `current` grows by its weight; the server with the
 * largest `current` wins and loses the sum of the eligible weights. Over any full cycle of
 * `sum(weights)` picks each server is chosen exactly `weight` times, and the choices are
 * interleaved rather than bursty: weights 5,1,1 give a a b a c a a, not a a a a a b c. That
 * matters for L4, where a burst of new connections on one server is a burst of handshakes.
 *
 * A server that is not a candidate (down, disabled, full, weight 0, already tried by this
 * connection) is simply left out of that pick: its `current` is frozen and the total is
 * taken over the eligible servers only, as nginx does. Nothing is rebuilt when health
 * flaps, and a weight changed at run time takes effect on the next pick.
 *
 * nginx also keeps an `effective_weight` that it lowers on failures and recovers one step
 * per pick; Switchyard leaves failures to the passive check in Pool, so the weight is used
 * as is. `options.random` is not used: the order is deterministic, as in nginx.
 *
 * Cost: O(N) per pick, no allocation (the running weights live in one Float64Array).
 */
export const createRoundRobin: SelectorFactory = (servers) => new RoundRobinSelector(servers);

class RoundRobinSelector implements Selector {
  private readonly servers: readonly UpstreamServer[];
  /** nginx's `current_weight`, one per server, by position in `servers`. */
  private readonly current: Float64Array;

  constructor(servers: readonly UpstreamServer[]) {
    this.servers = servers;
    this.current = new Float64Array(servers.length);
  }

  pick(_clientIp: string, exclude: ReadonlySet<UpstreamServer> | undefined): UpstreamServer | undefined {
    const { servers, current } = this;
    let best = -1;
    let total = 0;
    for (let i = 0; i < servers.length; i++) {
      const server = servers[i]!;
      if (!isCandidate(server, exclude)) continue;
      current[i] += server.weight;
      total += server.weight;
      // Strictly greater: ties go to the earlier server, as in nginx.
      if (best < 0 || current[i] > current[best]) best = i;
    }
    if (best < 0) return undefined;
    current[best] -= total;
    return servers[best];
  }
}
