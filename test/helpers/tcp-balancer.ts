
/** One server of a test pool: a port on 127.0.0.1 plus optional server keys. */
export type TestServer = number | { port: number; weight?: number; maxConnections?: number; backup?: boolean };

/**
 * A config document with one tcp listener `t` on 127.0.0.1:0 and one pool `p` of loopback
 * servers. `pool` and `listener` add keys (algorithm, retries, timeouts ...); `top` adds
 * top-level keys (log, shutdown). Defaults are the schema's.
 */
export function tcpDocument(
  servers: readonly TestServer[],
  extra: { pool?: Record<string, unknown>; listener?: Record<string, unknown>; top?: Record<string, unknown> } = {},
): Record<string, unknown> {
  return {
    log: { level: 'info' },
    ...extra.top,
    listeners: [{ name: 't', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'p', ...extra.listener }],
    pools: {
      p: {
        algorithm: 'round-robin',
        ...extra.pool,
        servers: servers.map((server) => {
          if (typeof server === 'number') return { address: `127.0.0.1:${server}` };
          const { port, ...keys } = server;
          return { address: `127.0.0.1:${port}`, ...keys };
        }),
      },
    },
  };
}

/** The per-connection log lines ('connection closed') among captured lines. */
export function connectionLines(lines: ReadonlyArray<Record<string, unknown>>): Array<Record<string, unknown>> {
  return lines.filter((line) => line.msg === 'connection closed');
}
