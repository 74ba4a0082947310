import type { UpstreamServer } from '../pool/server.ts';

/**
 * A selector orders the servers of one tier (primaries or backups) for a single pick.
 *
 * Contract (Pingora's "health never rebuilds the selector"): a selector is built once from
 * the server list and keeps its own state (weights, ring, cursor). It is rebuilt only when
 * membership changes. Each pick walks its candidates and skips any server for which
 * `isCandidate(server, exclude)` is false, so health flaps never reshuffle anyone else.
 */
export interface Selector {
  /**
   * Returns the preferred available server, or undefined when none is.
   * @param clientIp the downstream IP, already normalised (used by ip-hash; others ignore it)
   * @param exclude servers already tried for this connection (failover), or undefined
   */
  pick(clientIp: string, exclude: ReadonlySet<UpstreamServer> | undefined): UpstreamServer | undefined;
}

export interface SelectorOptions {
  /** Uniform random in [0, 1); injected so tests are deterministic. */
  random: () => number;
}

export type SelectorFactory = (servers: readonly UpstreamServer[], options: SelectorOptions) => Selector;

/** The one eligibility test every selector applies. */
export function isCandidate(server: UpstreamServer, exclude: ReadonlySet<UpstreamServer> | undefined): boolean {
  return server.available && (exclude === undefined || !exclude.has(server));
}
