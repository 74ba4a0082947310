import { z } from 'zod';
import { parseDuration } from '../core/duration.ts';
import { parseCidr, parseEndpoint, type Endpoint } from '../core/address.ts';
import { decodeEscapes } from '../health/probe-payload.ts';

/**
 * The config file's schema. The TypeScript types used everywhere else are inferred from it
 * (`Config`, `ListenerConfig`, `PoolConfig`, ...), so the documentation in README.md, this
 * file and the code cannot drift apart. Every object is strict: an unknown key is an error,
 * because a typo (`maxConection`) must never be silently ignored.
 *
 * Defaults live here, once. Durations come out as milliseconds; addresses as Endpoint.
 */

/** Node timers cannot wait longer than 2^31-1 ms; a longer delay would fire after 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

const duration = z.string({ error: 'expected a duration such as 500ms, 3s, 10m, 1h' }).transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration: expected a number with ms, s, m, h or d (e.g. 3s)` });
    return z.NEVER;
  }
  if (ms > MAX_TIMER_MS) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is too long: durations are limited to 24d (Node timers cannot wait longer)` });
    return z.NEVER;
  }
  return ms;
});

const endpoint = z.string({ error: 'expected host:port' }).transform((text, ctx): Endpoint => {
  const parsed = parseEndpoint(text);
  if (typeof parsed === 'string') {
    ctx.addIssue({ code: 'custom', message: `${parsed} (got "${text}")` });
    return z.NEVER;
  }
  return parsed;
});

const cidr = z.string().refine((text) => typeof parseCidr(text) !== 'string', {
  error: (issue) => `${parseCidr(String(issue.input))} (expected a CIDR range such as 10.0.0.0/8 or ::1/128)`,
});

const positiveInt = z.number().int().positive();
const positiveDuration = duration.refine((ms) => ms > 0, 'must be longer than 0');
const name = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'expected a name of letters, digits, "_", "." or "-"');

export const logSchema = z.strictObject({
  level: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
});

export const shutdownSchema = z.strictObject({
  /** How long open connections may finish after SIGTERM/SIGINT before they are closed. */
  drainTimeout: duration.default(10_000),
});

/** Accepting the PROXY protocol from load balancers in front (HAProxy `accept-proxy`). */
export const acceptProxySchema = z.strictObject({
  /** Sources allowed (and required) to send a PROXY header. Others are closed. */
  trusted: z.array(cidr).min(1, 'list at least one trusted source range'),
  /** A trusted connection must deliver its whole header within this time. */
  timeout: duration.default(3_000),
});

const tcpTimeoutsSchema = z.strictObject({
  /** Upstream connect timeout; on expiry the next server is tried (see pool.retries). */
  connect: duration.default(3_000),
  /** Close a connection with no traffic in either direction for this long. 0 disables. */
  idle: duration.default(3_600_000),
});

const listenerBase = {
  name,
  bind: endpoint,
  pool: name,
};

export const tcpListenerSchema = z.strictObject({
  ...listenerBase,
  protocol: z.literal('tcp'),
  /** Cap on concurrent downstream connections; above it new connections are closed at once. */
  maxConnections: positiveInt.optional(),
  timeouts: tcpTimeoutsSchema.default({ connect: 3_000, idle: 3_600_000 }),
  proxyProtocol: acceptProxySchema.optional(),
});

export const udpSettingsSchema = z.strictObject({
  /** A downstream address:port with no datagrams for this long loses its session. */
  sessionTimeout: duration.default(30_000),
  /** Close the session after this many replies (DNS: 1). Unset means unlimited. */
  responses: positiveInt.optional(),
  /** Cap on concurrent sessions; when full, datagrams from new downstreams are dropped. */
  maxSessions: positiveInt.default(100_000),
});

export const udpListenerSchema = z.strictObject({
  ...listenerBase,
  protocol: z.literal('udp'),
  udp: udpSettingsSchema.default({ sessionTimeout: 30_000, maxSessions: 100_000 }),
});

export const listenerSchema = z.discriminatedUnion('protocol', [tcpListenerSchema, udpListenerSchema], {
  error: (issue) =>
    issue.code === 'invalid_union' ? 'protocol must be "tcp" or "udp" ("http" arrives with L7 mode)' : undefined,
});

export const serverSchema = z.strictObject({
  address: endpoint.refine((address) => address.port !== 0, 'a server needs a port from 1 to 65535'),
  /** Relative share of new traffic. 0 = no new traffic (existing connections continue). */
  weight: z.number().int().min(0).max(1_000_000).default(1),
  /** Per-server cap on concurrent connections; a full server is skipped. */
  maxConnections: positiveInt.optional(),
  /** Used only while no primary (non-backup) server of the pool is ready. */
  backup: z.boolean().default(false),
});

export const healthCheckSchema = z.strictObject({
  type: z.enum(['tcp', 'udp']).default('tcp'),
  /** Between probes of one server; each probe is jittered by up to 10% so probes do not align. */
  interval: positiveDuration.default(2_000),
  timeout: positiveDuration.default(1_000),
  /** Consecutive passes for a down server to become healthy. */
  rise: positiveInt.default(2),
  /** Consecutive failures for an up server to become unhealthy. */
  fall: positiveInt.default(3),
  /** Bytes written after connect (tcp) or as the datagram (udp). Escapes: \r \n \t \\ \xHH. */
  send: z.string().optional(),
  /** The reply must start with this text, or match it as a regex when written /like this/. */
  expect: z.string().optional(),
  /** Probe this port instead of the server's own (e.g. a sidecar health port). */
  port: z.number().int().min(1).max(65535).optional(),
});

export const passiveCheckSchema = z.strictObject({
  /** Consecutive failed connects from real traffic that mark a server down. 0 disables. */
  failures: z.number().int().min(0).default(3),
  /** Without an active health check, a passively failed server is retried after this long. */
  cooldown: duration.default(10_000),
});

export const algorithmSchema = z.enum(['round-robin', 'least-connections', 'ip-hash']);

export const poolSchema = z.strictObject({
  algorithm: algorithmSchema.default('round-robin'),
  /** Other servers tried when a connect fails, before the downstream connection is closed. */
  retries: z.number().int().min(0).max(100).default(2),
  servers: z.array(serverSchema).min(1, 'a pool needs at least one server'),
  healthCheck: healthCheckSchema.optional(),
  passiveCheck: passiveCheckSchema.default({ failures: 3, cooldown: 10_000 }),
  /** Send a PROXY protocol header to every server of this pool (and with its probes). */
  sendProxyProtocol: z.enum(['v1', 'v2']).optional(),
});

export const configSchema = z
  .strictObject({
    log: logSchema.default({ level: 'info' }),
    shutdown: shutdownSchema.default({ drainTimeout: 10_000 }),
    listeners: z.array(listenerSchema).min(1, 'define at least one listener'),
    pools: z.record(name, poolSchema),
  })
  .superRefine((config, ctx) => {
    const names = new Map<string, number>();
    const binds = new Map<string, number>();
    config.listeners.forEach((listener, index) => {
      const previous = names.get(listener.name);
      if (previous !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['listeners', index, 'name'], message: `duplicate listener name "${listener.name}" (also listeners[${previous}])` });
      }
      names.set(listener.name, index);
      const bindKey = `${listener.protocol}/${listener.bind.host}/${listener.bind.port}`;
      const sameBind = binds.get(bindKey);
      if (sameBind !== undefined && listener.bind.port !== 0) {
        ctx.addIssue({ code: 'custom', path: ['listeners', index, 'bind'], message: `${listener.protocol} address already bound by listeners[${sameBind}]` });
      }
      binds.set(bindKey, index);
      const pool = config.pools[listener.pool];
      if (!pool) {
        const known = Object.keys(config.pools);
        ctx.addIssue({ code: 'custom', path: ['listeners', index, 'pool'], message: `no pool named "${listener.pool}"${known.length ? ` (pools: ${known.join(', ')})` : ''}` });
      } else if (listener.protocol === 'udp' && pool.sendProxyProtocol === 'v1') {
        ctx.addIssue({ code: 'custom', path: ['pools', listener.pool, 'sendProxyProtocol'], message: 'PROXY v1 has no datagram form; use v2 for a pool behind a udp listener' });
      }
    });
    for (const [poolName, pool] of Object.entries(config.pools)) {
      if (!pool.servers.some((server) => !server.backup)) {
        ctx.addIssue({ code: 'custom', path: ['pools', poolName, 'servers'], message: 'a pool needs at least one server that is not a backup' });
      }
      const hc = pool.healthCheck;
      if (hc?.send !== undefined) {
        const decoded = decodeEscapes(hc.send);
        if (typeof decoded === 'string') ctx.addIssue({ code: 'custom', path: ['pools', poolName, 'healthCheck', 'send'], message: decoded });
      }
      if (hc && hc.timeout > hc.interval) {
        ctx.addIssue({ code: 'custom', path: ['pools', poolName, 'healthCheck', 'timeout'], message: 'must not be longer than interval' });
      }
      if (hc?.expect?.startsWith('/') && hc.expect.length > 1 && hc.expect.endsWith('/')) {
        try {
          new RegExp(hc.expect.slice(1, -1));
        } catch (err) {
          ctx.addIssue({ code: 'custom', path: ['pools', poolName, 'healthCheck', 'expect'], message: `invalid regex: ${(err as Error).message}` });
        }
      }
    }
  });

export type Config = z.output<typeof configSchema>;
export type ListenerConfig = Config['listeners'][number];
export type TcpListenerConfig = z.output<typeof tcpListenerSchema>;
export type UdpListenerConfig = z.output<typeof udpListenerSchema>;
export type PoolConfig = z.output<typeof poolSchema>;
export type ServerConfig = z.output<typeof serverSchema>;
export type HealthCheckConfig = z.output<typeof healthCheckSchema>;
export type PassiveCheckConfig = z.output<typeof passiveCheckSchema>;
export type AcceptProxyConfig = z.output<typeof acceptProxySchema>;
export type Algorithm = z.output<typeof algorithmSchema>;
