import type { Logger } from '../core/log.ts';
import type { TcpListenerConfig } from '../config/schema.ts';
import type { Pool } from '../pool/pool.ts';
import type { TcpConnection } from './tcp-connection.ts';

/** Counters of one TCP listener: plain numbers, bumped on the data path. */
export interface TcpListenerCounters {
  accepted: number;
  /** Closed at once: listener full (maxConnections). */
  rejectedFull: number;
  /** Closed by PROXY protocol checks: untrusted, malformed, timeout. */
  rejectedProxy: number;
  /** Closed because no server could be connected (none ready, none available, all failed). */
  refused: number;
}

/**
 * What every TcpConnection of one listener shares. Built once per listener so a connection
 * holds one reference instead of copying fields.
 */
export interface TcpListenerContext {
  readonly config: TcpListenerConfig;
  readonly pool: Pool;
  readonly logger: Logger;
  /** logger.isLevelEnabled('info'), cached: the per-connection log line costs nothing at warn. */
  readonly logConnections: boolean;
  readonly counters: TcpListenerCounters;
  onFinish(connection: TcpConnection): void;
}
