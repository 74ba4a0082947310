/**
 * The vocabulary of the native benchmark, shared by the scenarios, the runner and the report.
 *
 * A *system* is what the load goes through: the upstream directly (the ceiling), Switchyard,
 * HAProxy or nginx. A *scenario* is one kind of load with one headline metric. A *run* is one
 * load against one system; a *round* runs every system once, and rounds repeat so that drift
 * (thermal, noisy neighbours) hits every system alike.
 */

export type SystemName = 'direct' | 'switchyard' | 'haproxy' | 'nginx';

/** In the order they run within a round and appear in the report. */
export const ALL_SYSTEMS: readonly SystemName[] = ['direct', 'switchyard', 'haproxy', 'nginx'];

/** Balancers are the systems under test; `direct` has no process of its own. */
export type BalancerName = Exclude<SystemName, 'direct'>;

/** What a listener under test speaks. */
export type ListenerProtocol = 'tcp' | 'udp';

/**
 * The upstream kinds. Every system of a scenario points at the same one.
 * `http`: nginx serving `200 ok\n` (worker_processes 1). `iperf3`: `iperf3 -s`.
 * `udp-echo`: a UDP echo hosted by the load process itself (udp-client.ts `--echo-port`), so
 * that the load side is one process on its core instead of two (see README, "UDP").
 * `udp-sink`: udp-upstream.ts counting datagrams, its counters readable over TCP.
 */
export type UpstreamKind = 'http' | 'iperf3' | 'udp-echo' | 'udp-sink';

/**
 * UDP session settings a scenario gives every balancer alike (Switchyard `udp.sessionTimeout`
 * and `udp.responses`, nginx `proxy_timeout` and `proxy_responses`). Unset fields keep
 * Switchyard's defaults (30 s, unlimited replies); nginx gets the same values explicitly.
 */
export interface UdpSessionSettings {
  /** Idle time after which a session ends, ms. */
  sessionTimeoutMs?: number;
  /** Replies after which a session ends (DNS: 1). */
  responses?: number;
}

export interface Endpoint {
  host: string;
  port: number;
}

/** Numbers a run produced, by metric key (e.g. `rps`, `p99Ms`). */
export type Metrics = Record<string, number>;

/** A parser's verdict: metrics, or a sentence saying why the output is not usable. */
export type ParseResult = { metrics: Metrics; warnings?: string[] } | { error: string };

export interface MetricSpec {
  key: string;
  /** Column header, e.g. `requests/s`. */
  label: string;
  /** Which direction is better; the report prints it next to every ratio. */
  better: 'higher' | 'lower';
  /** Digits after the decimal point in the table. */
  digits: number;
  /**
   * Also compared to the reference system (a paired-ratio column next to the median, and a
   * row in the summary), as the primary metric always is.
   */
  compare?: boolean;
}

/** Settings that every load command builder receives. */
export interface LoadSettings {
  /** Seconds per run for time-bound loads (wrk, iperf3). */
  durationSec: number;
  /** Seconds measured per run of the UDP loads (udp-client.ts takes fractions). */
  udpSeconds: number;
  /** Warm-up before a UDP load's measured window, ms. */
  udpWarmupMs: number;
  /** Where the scenario's upstream listens (a load hosting the upstream binds it). */
  upstream: Endpoint;
  /** Connections the concurrency scenario holds open. */
  connections: number;
  /** Absolute path of the harness's work directory for this invocation. */
  workDir: string;
  /** Absolute path of native-bench/ (to find helper scripts such as conn-client.ts). */
  benchDir: string;
  /** The Node binary running the harness (Node 24). */
  nodePath: string;
}

/** Readings the harness takes from the balancer around a load that holds steady state. */
export interface ProbeReadings {
  /** Resident set of the balancer's process tree before the load started, bytes. */
  rssBeforeBytes?: number;
  /** Resident set while the load held its connections, bytes. */
  rssHeldBytes?: number;
  /** CPU time of the balancer's process tree during the measured window, s (scheduler, ns precision). */
  cpuSeconds?: number;
  /** The same window's user-space and kernel CPU time, s (clock ticks: 10 ms resolution). */
  userSeconds?: number;
  systemSeconds?: number;
}

/**
 * The load half of a scenario: how to build the command and how to read its output.
 * `holdUntilSampled`: the command waits for a first line on stdin before it starts (so the
 * harness can read the balancer's baseline RSS while the command boots), prints a line starting
 * with `READY` once it holds steady state, then waits; the harness reads the balancer's RSS
 * again and closes the command's stdin to let it finish.
 */
export interface LoadSpec {
  command(target: Endpoint, settings: LoadSettings): string[];
  parse(stdout: string, probes: ProbeReadings): ParseResult;
  holdUntilSampled?: boolean;
  /**
   * The command prints a line starting with `MEASURING` when its measured window opens and
   * one starting with `RESULT` when it closes; the harness reads the balancer's CPU time at
   * both (ProbeReadings.cpuSeconds).
   */
  measuresWindow?: boolean;
}

/**
 * One benchmark scenario, declared as data. Adding a scenario means adding one of these to
 * scenarios.ts; the balancers' configs are generated from `listener` and `upstream`.
 */
export interface Scenario {
  /** Stable id used by `--only` and in result file names, e.g. `tcp-keepalive`. */
  name: string;
  /** One line for the report. */
  title: string;
  upstream: UpstreamKind;
  listener: ListenerProtocol;
  load: LoadSpec;
  /** The metric that gets ratios and the chart. */
  primary: MetricSpec;
  /** Further columns (medians only). */
  secondary: MetricSpec[];
  /** False when a direct run means nothing (e.g. balancer memory). */
  includeDirect: boolean;
  /**
   * False: `--quick` leaves the direct runs out (default true). For the bulk scenarios, whose
   * loopback ceiling (over 2x every balancer) tells a quick check nothing, so that `--quick`
   * keeps its minute with some slack.
   */
  directInQuick?: boolean;
  /** Start a fresh balancer process for every run (memory baselines must not carry over). */
  freshBalancerPerRun?: boolean;
  /** Extra derived columns comparing each system to direct (e.g. added latency). */
  addedOverDirect?: MetricSpec[];
  /**
   * The system the `×` ratios divide by: HAProxy (default), or nginx for UDP, which HAProxy
   * (community edition) cannot proxy.
   */
  reference?: BalancerName;
  /** UDP session settings every balancer gets for this scenario. */
  udpSession?: UdpSessionSettings;
  /** False: `--quick` leaves the scenario out unless `--only` names it. Default true. */
  inQuick?: boolean;
}

/** The outcome of one run. */
export type RunOutcome = { ok: true; metrics: Metrics; warnings: string[] } | { ok: false; error: string };

/** Every run of one system in one scenario, in round order. */
export interface SystemRuns {
  system: SystemName;
  /** Set when the system could not take part at all (binary missing, failed to start...). */
  unavailable?: string;
  /** With `unavailable`: the system cannot do this at all (HAProxy and UDP): the report says n/a. */
  notApplicable?: boolean;
  runs: RunOutcome[];
}

export interface ScenarioResult {
  scenario: Scenario;
  systems: SystemRuns[];
  /** Sentences printed under the scenario's table (e.g. capped connection count). */
  notes: string[];
}
