/**
 * What the Server needs from a listener of any protocol (tcp and udp now; http later).
 * Server builds listeners through the table in server.ts and never looks inside one.
 */
export interface Listener {
  readonly name: string;
  readonly protocol: string;
  /** Binds the address. Rejects with SwitchyardError('SWY_BIND_FAILED') naming listener and address. */
  listen(): Promise<void>;
  /** The bound address (port resolved when the config said 0). Only valid after listen(). */
  address(): { address: string; port: number };
  /** Stops taking new connections/sessions; existing ones continue. Idempotent. */
  stopAccepting(): void;
  /** Number of open connections (tcp) or sessions (udp). */
  openCount(): number;
  /** Force-closes everything still open and releases the socket(s). Idempotent. */
  close(): void;
}
