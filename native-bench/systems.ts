/**
 * The balancers under test and their configs, generated from one description of the listener
 * (`BalancerSetup`), so that every balancer gets the same job: one listener on 127.0.0.1, one
 * pool with one server, round-robin, no health checks, no logging of traffic, one worker/thread.
 * Everything else stays at each product's defaults: the comparison is of what ships.
 *
 * The generators are pure (text out); `planBalancer` adds file names and command lines.
 */
import { join } from 'node:path';
import type { BalancerName, Endpoint, ListenerProtocol, UdpSessionSettings } from './types.ts';

export interface BalancerSetup {
  /** Names the config files, e.g. the scenario name. */
  tag: string;
  protocol: ListenerProtocol;
  listen: Endpoint;
  upstream: Endpoint;
  /** The open-files limit the balancer runs with; connection caps derive from it. */
  nofile: number;
  workDir: string;
  /** nginx: absolute path of ngx_stream_module.so to `load_module`, or undefined when built in. */
  nginxStreamModule?: string;
  /** UDP listeners: the scenario's session settings (unset: Switchyard's defaults). */
  udp?: UdpSessionSettings;
  /** Extra arguments for `node` before the script (Switchyard only), e.g. `--cpu-prof`. */
  nodeFlags?: string[];
}

/** Switchyard's default `udp.sessionTimeout`, which nginx gets as `proxy_timeout` when a scenario sets none. */
export const DEFAULT_UDP_SESSION_TIMEOUT_MS = 30_000;

export interface BalancerEnvironment {
  repoRoot: string;
  nodePath: string;
  /** Why Switchyard cannot run (e.g. src/cli.ts missing), or undefined when it can. */
  switchyardUnavailable?: string;
}

export type BalancerPlan =
  | { configFile: string; configText: string; argv: string[]; cwd: string; logFile: string }
  | { unavailable: string; notApplicable?: boolean };

/**
 * Whether `name` can proxy `protocol` at all: true, or the reason it cannot (the report then
 * says n/a for it rather than "not available").
 */
export function balancerSupports(name: BalancerName, protocol: ListenerProtocol): true | string {
  if (name === 'haproxy' && protocol !== 'tcp') return 'HAProxy (community edition) has no UDP proxying';
  return true;
}

/**
 * Connections a balancer can carry within `nofile` descriptors: each proxied connection holds
 * two (downstream and upstream), and a few are kept for listeners, logs and pollers.
 */
export function connectionCapacity(nofile: number): number {
  return Math.max(1, Math.floor((nofile - 100) / 2));
}

/** HAProxy 2.x, `mode tcp`, one thread. Returns an `unsupported` reason for UDP (HAProxy CE has no UDP proxy). */
export function haproxyConfig(setup: BalancerSetup): string | { unsupported: string } {
  const supported = balancerSupports('haproxy', setup.protocol);
  if (supported !== true) return { unsupported: supported };
  return [
    'global',
    '  nbthread 1',
    // Explicit, so HAProxy neither refuses the concurrency scenario nor warns about the fd limit.
    `  maxconn ${connectionCapacity(setup.nofile)}`,
    '',
    'defaults',
    '  mode tcp',
    '  timeout connect 3s',
    '  timeout client 1h',
    '  timeout server 1h',
    '',
    'frontend bench',
    `  bind ${setup.listen.host}:${setup.listen.port}`,
    '  default_backend upstream',
    '',
    'backend upstream',
    '  balance roundrobin',
    `  server s1 ${setup.upstream.host}:${setup.upstream.port}`,
    '',
  ].join('\n');
}

/**
 * nginx, stream module (L4), `worker_processes 1`, foreground. UDP (`listen … udp`): sessions
 * idle out after `proxy_timeout` (the scenario's session timeout, else Switchyard's default
 * 30 s, so both keep sessions alike), `proxy_responses` only when the scenario sets
 * `responses` (nginx's default, like Switchyard's, is unlimited replies per session).
 */
export function nginxStreamConfig(setup: BalancerSetup): string {
  const udp = setup.protocol === 'udp';
  const server = udp
    ? [
        `    listen ${setup.listen.host}:${setup.listen.port} udp;`,
        '    proxy_pass upstream;',
        `    proxy_timeout ${setup.udp?.sessionTimeoutMs ?? DEFAULT_UDP_SESSION_TIMEOUT_MS}ms;`,
        ...(setup.udp?.responses === undefined ? [] : [`    proxy_responses ${setup.udp.responses};`]),
      ]
    : [`    listen ${setup.listen.host}:${setup.listen.port};`, '    proxy_pass upstream;', '    proxy_connect_timeout 3s;', '    proxy_timeout 1h;'];
  // TCP: two descriptors and two connection slots per proxied connection. UDP: a session
  // takes two connection slots (the downstream one shares the listener's socket) but only
  // one descriptor, its upstream socket.
  const workerConnections = udp ? 2 * Math.max(1, setup.nofile - 100) : connectionCapacity(setup.nofile) * 2;
  const lines: string[] = [];
  if (setup.nginxStreamModule !== undefined) lines.push(`load_module ${setup.nginxStreamModule};`);
  lines.push(
    'worker_processes 1;',
    `worker_rlimit_nofile ${setup.nofile};`,
    'daemon off;',
    `pid ${join(setup.workDir, `${setup.tag}-nginx.pid`)};`,
    // stderr is the .out file the harness shows when a start fails.
    'error_log stderr warn;',
    // worker_connections counts both sides of a proxied connection.
    `events { worker_connections ${workerConnections}; }`,
    'stream {',
    `  upstream upstream { server ${setup.upstream.host}:${setup.upstream.port}; }`,
    '  server {',
    ...server,
    '  }',
    '}',
    '',
  );
  return lines.join('\n');
}

/**
 * Switchyard, in the format of src/config/schema.ts, logging at `warn`. A UDP listener gets a
 * `udp:` block only for what the scenario sets; everything else stays at its defaults.
 */
export function switchyardConfig(setup: BalancerSetup): string {
  const udp: string[] = [];
  if (setup.protocol === 'udp' && setup.udp !== undefined) {
    if (setup.udp.sessionTimeoutMs !== undefined) udp.push(`      sessionTimeout: ${setup.udp.sessionTimeoutMs}ms`);
    if (setup.udp.responses !== undefined) udp.push(`      responses: ${setup.udp.responses}`);
    if (udp.length > 0) udp.unshift('    udp:');
  }
  return [
    'log:',
    '  level: warn',
    'shutdown:',
    // The harness stops Switchyard only after its load has finished; no need to wait long.
    '  drainTimeout: 500ms',
    'listeners:',
    '  - name: bench',
    `    protocol: ${setup.protocol}`,
    `    bind: ${setup.listen.host}:${setup.listen.port}`,
    '    pool: upstream',
    ...udp,
    'pools:',
    '  upstream:',
    '    algorithm: round-robin',
    '    servers:',
    `      - address: ${setup.upstream.host}:${setup.upstream.port}`,
    '',
  ].join('\n');
}

/**
 * The config text, file and command line for balancer `name`, or why it cannot take part.
 * Switchyard runs as `node --experimental-strip-types [nodeFlags] src/cli.ts --config <file>`
 * from the repo root; HAProxy with `-db` (foreground); nginx with the work dir as prefix, logging to stderr.
 */
export function planBalancer(name: BalancerName, setup: BalancerSetup, environment: BalancerEnvironment): BalancerPlan {
  const base = join(setup.workDir, `${setup.tag}-${name}`);
  const logFile = `${base}.out`;
  switch (name) {
    case 'haproxy': {
      const config = haproxyConfig(setup);
      if (typeof config !== 'string') return { unavailable: config.unsupported, notApplicable: true };
      const configFile = `${base}.cfg`;
      return { configFile, configText: config, argv: ['haproxy', '-db', '-f', configFile], cwd: setup.workDir, logFile };
    }
    case 'nginx': {
      const configFile = `${base}.conf`;
      return {
        configFile,
        configText: nginxStreamConfig(setup),
        argv: ['nginx', '-p', `${setup.workDir}/`, '-e', 'stderr', '-c', configFile],
        cwd: setup.workDir,
        logFile,
      };
    }
    case 'switchyard': {
      if (environment.switchyardUnavailable !== undefined) return { unavailable: environment.switchyardUnavailable };
      const configFile = `${base}.yaml`;
      return {
        configFile,
        configText: switchyardConfig(setup),
        argv: [environment.nodePath, '--experimental-strip-types', '--no-warnings=ExperimentalWarning', ...(setup.nodeFlags ?? []), 'src/cli.ts', '--config', configFile],
        cwd: environment.repoRoot,
        logFile,
      };
    }
  }
}
