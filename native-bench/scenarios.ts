/**
 * The scenarios, as data. Each names its upstream kind and listener protocol (from which every
 * balancer's config is generated, see systems.ts), builds its load command, and parses the
 * output. To add one (a UDP echo, an HTTP scenario), append an object here; see README.md.
 */
import { join } from 'node:path';
import { parseHold, parseIperf3, parseUdpClient, parseWrk } from './parse.ts';
import type { Endpoint, LoadSettings, LoadSpec, MetricSpec, Scenario } from './types.ts';

/**
 * wrk with one thread and a fixed 50 connections: one thread keeps the load generator on one
 * core (see README, "CPU placement"); 50 connections keep every system busy without queueing
 * for seconds. `--latency` prints the percentiles the parser reads.
 */
function wrkLoad(extraArgs: readonly string[]): LoadSpec {
  return {
    command: (target: Endpoint, settings: LoadSettings) => [
      'wrk',
      '-t1',
      '-c50',
      `-d${Math.max(1, Math.round(settings.durationSec))}s`,
      '--latency',
      ...extraArgs,
      `http://${target.host}:${target.port}/`,
    ],
    parse: (stdout) => parseWrk(stdout),
  };
}

/** iperf3 client, JSON output; `streams` parallel data connections (`-P`). */
function iperf3Load(streams: number): LoadSpec {
  return {
    command: (target: Endpoint, settings: LoadSettings) => [
      'iperf3',
      '-c',
      target.host,
      '-p',
      String(target.port),
      '-t',
      String(Math.max(1, Math.round(settings.durationSec))),
      '-P',
      String(streams),
      '-J',
    ],
    parse: (stdout) => parseIperf3(stdout),
  };
}

/**
 * udp-client.ts in `mode` (see its header). `rr` and `new` host the echo upstream themselves on
 * the upstream's address; `blast` reads the sink's counters there. The run measures
 * `udpSeconds` after `udpWarmupMs` (blast: no warm-up) and marks its window, so the harness
 * reads the balancer's CPU time over exactly that window.
 */
function udpLoad(mode: 'rr' | 'new' | 'blast', clients: number, size: number): LoadSpec {
  return {
    command: (target: Endpoint, settings: LoadSettings) => {
      const upstream = `${settings.upstream.host}:${settings.upstream.port}`;
      return [
        settings.nodePath,
        join(settings.benchDir, 'udp-client.ts'),
        '--mode',
        mode,
        '--host',
        target.host,
        '--port',
        String(target.port),
        '--seconds',
        String(settings.udpSeconds),
        '--warmup-ms',
        String(mode === 'blast' ? 0 : settings.udpWarmupMs),
        '--clients',
        String(clients),
        '--size',
        String(size),
        ...(mode === 'blast' ? ['--counters', upstream] : ['--echo', upstream]),
        '--tag',
        settings.workDir,
      ];
    },
    parse: (stdout, probes) => parseUdpClient(stdout, probes),
    measuresWindow: true,
  };
}

/**
 * The balancer's CPU over the measured window, and per unit of work: the efficiency the rate
 * alone hides when the load side, not the balancer, is what limits the rate. Split into user
 * space and kernel, because on loopback the kernel part (sending and delivering datagrams) is
 * much the same for every balancer and the difference lies in user space.
 */
function udpCpu(per: string): MetricSpec[] {
  return [
    { key: 'cpuPct', label: 'balancer CPU %', better: 'lower', digits: 0 },
    { key: 'cpuUsPerOp', label: `CPU µs/${per}`, better: 'lower', digits: 1, compare: true },
    { key: 'userUsPerOp', label: 'of which user µs', better: 'lower', digits: 1 },
    { key: 'systemUsPerOp', label: 'kernel µs', better: 'lower', digits: 1 },
  ];
}

const requestsPerSecond: MetricSpec = { key: 'rps', label: 'requests/s', better: 'higher', digits: 0 };
const p50: MetricSpec = { key: 'p50Ms', label: 'p50 ms', better: 'lower', digits: 3 };
const p99: MetricSpec = { key: 'p99Ms', label: 'p99 ms', better: 'lower', digits: 3 };
const gbps: MetricSpec = { key: 'gbps', label: 'Gbit/s', better: 'higher', digits: 2 };

export const SCENARIOS: readonly Scenario[] = [
  {
    name: 'tcp-keepalive',
    title: 'TCP request/response over 50 persistent connections (wrk keep-alive through the TCP listener to an HTTP upstream)',
    upstream: 'http',
    listener: 'tcp',
    load: wrkLoad([]),
    primary: requestsPerSecond,
    secondary: [p50, p99],
    addedOverDirect: [
      { key: 'p50Ms', label: '+p50 ms vs direct', better: 'lower', digits: 3 },
      { key: 'p99Ms', label: '+p99 ms vs direct', better: 'lower', digits: 3 },
    ],
    includeDirect: true,
  },
  {
    name: 'tcp-connect',
    title: 'TCP new-connection rate (wrk, `Connection: close`: one connection per request)',
    upstream: 'http',
    listener: 'tcp',
    load: wrkLoad(['-H', 'Connection: close']),
    primary: { key: 'rps', label: 'connections/s', better: 'higher', digits: 0 },
    secondary: [p99, { key: 'errors', label: 'errors', better: 'lower', digits: 0 }],
    includeDirect: true,
  },
  {
    name: 'bulk-1',
    title: 'Bulk throughput, 1 stream (iperf3)',
    upstream: 'iperf3',
    listener: 'tcp',
    load: iperf3Load(1),
    primary: gbps,
    secondary: [],
    includeDirect: true,
    directInQuick: false,
  },
  {
    name: 'bulk-4',
    title: 'Bulk throughput, 4 streams (iperf3 -P 4)',
    upstream: 'iperf3',
    listener: 'tcp',
    load: iperf3Load(4),
    primary: gbps,
    secondary: [],
    includeDirect: true,
    directInQuick: false,
  },
  {
    name: 'concurrency',
    title: 'Memory per idle connection (connections opened through the balancer, one request each, then held)',
    upstream: 'http',
    listener: 'tcp',
    load: {
      command: (target: Endpoint, settings: LoadSettings) => [
        settings.nodePath,
        '--experimental-strip-types',
        '--no-warnings=ExperimentalWarning',
        join(settings.benchDir, 'conn-client.ts'),
        '--host',
        target.host,
        '--port',
        String(target.port),
        '--connections',
        String(settings.connections),
        '--tag',
        settings.workDir,
      ],
      parse: (stdout, probes) => parseHold(stdout, probes),
      holdUntilSampled: true,
    },
    primary: { key: 'kibPerConn', label: 'KiB/connection', better: 'lower', digits: 2 },
    secondary: [
      { key: 'rssBeforeMiB', label: 'RSS before MiB', better: 'lower', digits: 1 },
      { key: 'rssHeldMiB', label: 'RSS held MiB', better: 'lower', digits: 1 },
      { key: 'opened', label: 'connections', better: 'higher', digits: 0 },
    ],
    // Direct has no balancer whose memory could be read.
    includeDirect: false,
    freshBalancerPerRun: true,
  },
  {
    name: 'udp-rr',
    title:
      'UDP request/reply: 64 clients, each its own source port (so its own session), 64-byte datagrams, closed loop; sessions persist (default session settings, no `responses`)',
    upstream: 'udp-echo',
    listener: 'udp',
    load: udpLoad('rr', 64, 64),
    primary: requestsPerSecond,
    secondary: [p50, p99, { key: 'lossPct', label: 'lost %', better: 'lower', digits: 2 }, ...udpCpu('request')],
    includeDirect: true,
    reference: 'nginx',
  },
  {
    name: 'udp-dns',
    title:
      'UDP, one session per query (DNS-style: Switchyard `responses: 1`, nginx `proxy_responses 1`): 64 clients, 64-byte datagrams, closed loop; every request opens and ends a session',
    upstream: 'udp-echo',
    listener: 'udp',
    load: udpLoad('rr', 64, 64),
    primary: { key: 'rps', label: 'requests/s (= sessions/s)', better: 'higher', digits: 0 },
    secondary: [p50, p99, { key: 'lossPct', label: 'lost %', better: 'lower', digits: 2 }, ...udpCpu('request')],
    includeDirect: true,
    reference: 'nginx',
    udpSession: { responses: 1 },
    inQuick: false,
  },
  {
    name: 'udp-throughput',
    title: 'UDP one-way throughput: 4 clients send 1,200-byte datagrams as fast as they can; counted where they arrive, at the upstream (loss is part of the result)',
    upstream: 'udp-sink',
    listener: 'udp',
    load: udpLoad('blast', 4, 1200),
    primary: { key: 'pps', label: 'datagrams/s received', better: 'higher', digits: 0 },
    secondary: [
      { key: 'mbps', label: 'Mbit/s', better: 'higher', digits: 0 },
      { key: 'lossPct', label: 'loss %', better: 'lower', digits: 1 },
      ...udpCpu('datagram'),
    ],
    includeDirect: true,
    reference: 'nginx',
    inQuick: false,
  },
  {
    name: 'udp-new-sessions',
    title:
      'UDP sessions from new sources: 32 clients, each sends one 64-byte query from a fresh socket (new source port), waits for the reply, closes, repeats; sessions idle out after 500 ms (Switchyard `sessionTimeout: 500ms`, nginx `proxy_timeout 500ms`)',
    upstream: 'udp-echo',
    listener: 'udp',
    load: udpLoad('new', 32, 64),
    primary: { key: 'sps', label: 'sessions/s', better: 'higher', digits: 0 },
    secondary: [p50, p99, { key: 'lossPct', label: 'lost %', better: 'lower', digits: 2 }, ...udpCpu('session')],
    includeDirect: true,
    reference: 'nginx',
    // Short, so that the sessions held at any time (rate × timeout) stay well inside the
    // ephemeral ports and descriptors both balancers have for their upstream sockets.
    udpSession: { sessionTimeoutMs: 500 },
    inQuick: false,
  },
];

/** The scenario named `name`, or undefined. */
export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((scenario) => scenario.name === name);
}
