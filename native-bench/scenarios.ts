/**
 * The scenarios, as data. Each names its upstream kind and listener protocol (from which every
 * balancer's config is generated, see systems.ts), builds its load command, and parses the
 * output. To add one (a UDP echo, an HTTP scenario), append an object here; see README.md.
 */
import { join } from 'node:path';
import { parseHold, parseIperf3, parseWrk } from './parse.ts';
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
];

/** The scenario named `name`, or undefined. */
export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((scenario) => scenario.name === name);
}
