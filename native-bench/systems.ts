/**
 * The balancers under test and their configs, generated from one description of the listener
 * (`BalancerSetup`), so that every balancer gets the same job: one listener on 127.0.0.1, one
 * pool with one server, round-robin, no health checks, no logging of traffic, one worker/thread.
 * Everything else stays at each product's defaults: the comparison is of what ships.
 *
 * The generators are pure (text out); `planBalancer` adds file names and command lines.
 */
import { join } from 'node:path';
import type { BalancerName, Endpoint, ListenerProtocol } from './types.ts';

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
}

export interface BalancerEnvironment {
  repoRoot: string;
  nodePath: string;
  /** Why Switchyard cannot run (e.g. src/cli.ts missing), or undefined when it can. */
  switchyardUnavailable?: string;
}

export type BalancerPlan =
  | { configFile: string; configText: string; argv: string[]; cwd: string; logFile: string }
  | { unavailable: string };

/**
 * Connections a balancer can carry within `nofile` descriptors: each proxied connection holds
 * two (downstream and upstream), and a few are kept for listeners, logs and pollers.
 */
export function connectionCapacity(nofile: number): number {
  return Math.max(1, Math.floor((nofile - 100) / 2));
}

/** HAProxy 2.x, `mode tcp`, one thread. Returns an `unsupported` reason for UDP (HAProxy CE has no UDP proxy). */
export function haproxyConfig(setup: BalancerSetup): string | { unsupported: string } {
  if (setup.protocol !== 'tcp') return { unsupported: 'HAProxy (community edition) has no UDP proxying' };
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

/** nginx, stream module (L4), `worker_processes 1`, foreground. */
export function nginxStreamConfig(setup: BalancerSetup): string {
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
    `events { worker_connections ${connectionCapacity(setup.nofile) * 2}; }`,
    'stream {',
    `  upstream upstream { server ${setup.upstream.host}:${setup.upstream.port}; }`,
    '  server {',
    `    listen ${setup.listen.host}:${setup.listen.port}${setup.protocol === 'udp' ? ' udp' : ''};`,
    '    proxy_pass upstream;',
    '    proxy_connect_timeout 3s;',
    '    proxy_timeout 1h;',
    '  }',
    '}',
    '',
  );
  return lines.join('\n');
}

/** Switchyard, in the format of src/config/schema.ts, logging at `warn`. */
export function switchyardConfig(setup: BalancerSetup): string {
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
 * Switchyard runs as `node --experimental-strip-types src/cli.ts --config <file>` from the repo
 * root; HAProxy with `-db` (foreground); nginx with the work dir as prefix, logging to stderr.
 */
export function planBalancer(name: BalancerName, setup: BalancerSetup, environment: BalancerEnvironment): BalancerPlan {
  const base = join(setup.workDir, `${setup.tag}-${name}`);
  const logFile = `${base}.out`;
  switch (name) {
    case 'haproxy': {
      const config = haproxyConfig(setup);
      if (typeof config !== 'string') return { unavailable: config.unsupported };
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
        argv: [environment.nodePath, '--experimental-strip-types', '--no-warnings=ExperimentalWarning', 'src/cli.ts', '--config', configFile],
        cwd: environment.repoRoot,
        logFile,
      };
    }
  }
}
