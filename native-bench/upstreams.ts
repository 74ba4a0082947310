/**
 * The upstreams every system forwards to, one per kind, shared by all scenarios of an
 * invocation. They are deliberately fast and simple so that they are not what limits a run:
 * `http` is nginx answering `200 ok\n` from memory, `iperf3` is `iperf3 -s`, `udp-sink` is
 * udp-upstream.ts counting datagrams. `udp-echo` has no process of its own: each UDP
 * request/reply load hosts the echo on the upstream's address (see udp-client.ts).
 *
 * To add a kind: add it to UpstreamKind in types.ts and a case here.
 */
import { join } from 'node:path';
import type { Endpoint, UpstreamKind } from './types.ts';

/**
 * Extra loopback addresses the HTTP upstream also listens on (same port). Balancer sets take
 * turns using them, so that the upstream connections of one balancer process never have to
 * wait for the TIME_WAIT sockets of another: a run of the concurrency scenario closes ~10,000
 * balancer→upstream connections, and with a single upstream address a few consecutive runs
 * exhaust the ~28,000 source ports towards it (connects then stall for seconds).
 */
export const HTTP_UPSTREAM_ALIASES = Array.from({ length: 16 }, (_, i) => `127.0.0.${i + 2}`);

export interface UpstreamPlan {
  kind: UpstreamKind;
  /** Hosts it listens on besides `listen.host` (same port); balancers may use any of them. */
  aliases: string[];
  /** Ports it needs free on its host (`udp-sink` takes both: datagrams and counters). */
  transports: ('tcp' | 'udp')[];
  /**
   * The load process hosts this upstream (udp-echo): nothing to start, only a port to reserve.
   * Otherwise the binary it needs on PATH (or an absolute path) and its command line.
   */
  hostedByLoad?: boolean;
  binary: string;
  argv: string[];
  cwd: string;
  logFile: string;
  configFile?: string;
  configText?: string;
}

/**
 * nginx as a tiny HTTP server: one worker, no access log, a fixed body. keepalive_requests is
 * raised from its default of 1000 so that wrk's keep-alive connections are never recycled
 * mid-run (that would add connection setup to the keep-alive scenario). worker_connections
 * follows the fd limit so the concurrency scenario's thousands of connections fit.
 */
export function httpUpstreamConfig(listen: Endpoint, nofile: number, workDir: string, aliases: readonly string[] = []): string {
  return [
    'worker_processes 1;',
    `worker_rlimit_nofile ${nofile};`,
    'daemon off;',
    `pid ${join(workDir, 'upstream-http.pid')};`,
    'error_log stderr warn;',
    `events { worker_connections ${Math.max(1024, nofile - 100)}; }`,
    'http {',
    '  access_log off;',
    '  keepalive_requests 1000000;',
    '  keepalive_timeout 300s;',
    // Debian's compiled-in temp paths live in /var/lib/nginx; keep everything in the work dir.
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => `  ${name}_temp_path ${join(workDir, `upstream-http-${name}`)};`),
    '  server {',
    ...[listen.host, ...aliases].map((host) => `    listen ${host}:${listen.port};`),
    '    location / { return 200 "ok\\n"; }',
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Where the harness's own helper scripts are and which Node runs them. */
export interface HelperScripts {
  nodePath: string;
  benchDir: string;
}

/** The command line (and config) that starts an upstream of `kind` on `listen`. */
export function planUpstream(kind: UpstreamKind, listen: Endpoint, nofile: number, workDir: string, helpers: HelperScripts): UpstreamPlan {
  const logFile = join(workDir, `upstream-${kind}.out`);
  switch (kind) {
    case 'udp-echo':
      return { kind, hostedByLoad: true, binary: helpers.nodePath, argv: [], aliases: [], transports: ['udp'], cwd: workDir, logFile };
    case 'udp-sink':
      return {
        kind,
        binary: helpers.nodePath,
        argv: [
          helpers.nodePath,
          join(helpers.benchDir, 'udp-upstream.ts'),
          '--mode',
          'sink',
          '--host',
          listen.host,
          '--port',
          String(listen.port),
          '--tag',
          workDir,
        ],
        // No TIME_WAIT in UDP: one address serves every balancer.
        aliases: [],
        transports: ['udp', 'tcp'],
        cwd: workDir,
        logFile,
      };
    case 'http': {
      const configFile = join(workDir, 'upstream-http.conf');
      return {
        kind,
        binary: 'nginx',
        argv: ['nginx', '-p', `${workDir}/`, '-e', 'stderr', '-c', configFile],
        cwd: workDir,
        logFile,
        configFile,
        configText: httpUpstreamConfig(listen, nofile, workDir, HTTP_UPSTREAM_ALIASES),
        aliases: HTTP_UPSTREAM_ALIASES,
        transports: ['tcp'],
      };
    }
    case 'iperf3':
      return {
        kind,
        binary: 'iperf3',
        // The pidfile path puts the work dir into the command line, which is how leftovers are found.
        argv: ['iperf3', '-s', '-B', listen.host, '-p', String(listen.port), '-I', join(workDir, 'upstream-iperf3.pid')],
        // A bulk run opens at most a handful of connections.
        aliases: [],
        transports: ['tcp'],
        cwd: workDir,
        logFile,
      };
  }
}
