import { formatEndpoint, type Endpoint } from '../core/address.ts';
import type { ServerConfig } from '../config/schema.ts';

/**
 * One upstream server of a pool, with its live counters. Counters are plain numbers updated
 * on the data path; readiness is changed only through Pool (the one choke point).
 */
export class UpstreamServer {
  /** As written in config (`db1.internal:5432`); the name used in logs. */
  readonly label: string;
  /** Position in the pool's server list; stable for the pool's life. */
  readonly index: number;
  readonly endpoint: Endpoint;
  /** The address connected to: the literal, or the host name's address resolved at start. */
  connectHost: string;
  readonly port: number;
  readonly backup: boolean;
  readonly maxConnections: number;
  weight: number;

  /** Connections (TCP) or sessions (UDP) currently assigned. */
  active = 0;
  /** Connections or sessions ever assigned. */
  total = 0;
  /** Consecutive failed connects from real traffic (passive check). */
  consecutiveFailures = 0;

  /** Health as the checks see it. Only Pool writes it. */
  healthy = true;
  /** Administrative state: a disabled server takes no new traffic, whatever its health. */
  enabled = true;

  constructor(config: ServerConfig, index: number) {
    this.endpoint = config.address;
    this.label = formatEndpoint(config.address.host, config.address.port);
    this.index = index;
    this.connectHost = config.address.host;
    this.port = config.address.port;
    this.backup = config.backup;
    this.weight = config.weight;
    this.maxConnections = config.maxConnections ?? Number.POSITIVE_INFINITY;
  }

  /** ready = healthy && enabled: may be picked when it has capacity and a weight. */
  get ready(): boolean {
    return this.healthy && this.enabled;
  }

  /** Whether a selector may hand this server a new connection now. */
  get available(): boolean {
    return this.healthy && this.enabled && this.weight > 0 && this.active < this.maxConnections;
  }
}
