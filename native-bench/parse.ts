/**
 * Parsers for the load generators' output. Pure: text in, metrics or a reason out. Each is
 * tested against captured sample output in test/unit/bench-report.test.ts.
 */
import type { ParseResult, ProbeReadings } from './types.ts';

const TIME_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** wrk prints durations as `332.00us`, `1.21ms`, `2.00s`; returns milliseconds or undefined. */
export function parseWrkDuration(text: string): number | undefined {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!match) return undefined;
  // Dividing (rather than multiplying by 0.001) keeps 700us exactly 0.7 ms.
  return match[2] === 'us' ? Number(match[1]) / 1000 : Number(match[1]) * TIME_UNIT_MS[match[2]];
}

/**
 * Reads wrk's report (run with `--latency`).
 * Metrics: `rps` (Requests/sec), `p50Ms`, `p99Ms`, `requests`, `errors` (socket errors plus
 * non-2xx/3xx responses). An error when there is no Requests/sec line or no request completed;
 * a warning when more than 1% of requests erred (the rate then measures failures too).
 */
export function parseWrk(stdout: string): ParseResult {
  const rps = /^Requests\/sec:\s+([\d.]+)/m.exec(stdout);
  if (!rps) return { error: `wrk printed no "Requests/sec" line: ${firstLine(stdout)}` };
  const total = /^\s*(\d+) requests in /m.exec(stdout);
  const requests = total ? Number(total[1]) : 0;
  if (requests === 0) return { error: 'wrk completed no request' };

  const metrics: Record<string, number> = { rps: Number(rps[1]), requests };
  for (const [percentile, key] of [['50', 'p50Ms'], ['99', 'p99Ms']] as const) {
    const line = new RegExp(`^\\s+${percentile}%\\s+(\\S+)`, 'm').exec(stdout);
    const ms = line ? parseWrkDuration(line[1]) : undefined;
    if (ms !== undefined) metrics[key] = ms;
  }

  let errors = 0;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  if (socket) errors += Number(socket[1]) + Number(socket[2]) + Number(socket[3]) + Number(socket[4]);
  const status = /Non-2xx or 3xx responses: (\d+)/.exec(stdout);
  if (status) errors += Number(status[1]);
  metrics.errors = errors;

  const warnings = errors > requests * 0.01 ? [`wrk: ${errors} errors in ${requests} requests`] : [];
  return { metrics, warnings };
}

/**
 * Reads `iperf3 -c ... -J` output. Metric: `gbps`, what the receiver got (end.sum_received),
 * in Gbit/s. An error for unparsable JSON, an iperf3 `error` field, or zero bytes received.
 */
export function parseIperf3(stdout: string): ParseResult {
  let report: unknown;
  try {
    report = JSON.parse(stdout);
  } catch {
    return { error: `iperf3 output is not JSON: ${firstLine(stdout)}` };
  }
  const root = report as { error?: unknown; end?: { sum_received?: { bits_per_second?: unknown; bytes?: unknown } } };
  if (typeof root.error === 'string') return { error: `iperf3: ${root.error}` };
  const received = root.end?.sum_received;
  const bps = received?.bits_per_second;
  if (typeof bps !== 'number' || typeof received?.bytes !== 'number' || received.bytes <= 0) {
    return { error: 'iperf3 reported no received bytes (end.sum_received)' };
  }
  return { metrics: { gbps: bps / 1e9 } };
}

/** What conn-client.ts prints on its READY line. */
export interface HoldReport {
  requested: number;
  opened: number;
  failed: number;
  openMs: number;
}

/**
 * Reads conn-client.ts output plus the RSS readings the harness took around it.
 * Metrics: `kibPerConn` ((held − before) / opened, KiB), `opened`, `rssBeforeMiB`, `rssHeldMiB`,
 * `openMs`. An error when there is no READY line, nothing opened, or a reading is missing;
 * a warning when fewer than 99% of the requested connections opened.
 */
export function parseHold(stdout: string, probes: ProbeReadings): ParseResult {
  const line = /^READY (\{.*\})\s*$/m.exec(stdout);
  if (!line) return { error: `conn-client printed no READY line: ${firstLine(stdout)}` };
  let report: HoldReport;
  try {
    report = JSON.parse(line[1]) as HoldReport;
  } catch {
    return { error: `conn-client READY line is not JSON: ${line[1]}` };
  }
  if (!(report.opened > 0)) return { error: `no connection opened (${report.failed} failed)` };
  if (probes.rssBeforeBytes === undefined || probes.rssHeldBytes === undefined) {
    return { error: 'the balancer RSS could not be read' };
  }
  const warnings =
    report.opened < report.requested * 0.99 ? [`only ${report.opened} of ${report.requested} connections opened (${report.failed} failed)`] : [];
  return {
    metrics: {
      kibPerConn: (probes.rssHeldBytes - probes.rssBeforeBytes) / report.opened / 1024,
      opened: report.opened,
      rssBeforeMiB: probes.rssBeforeBytes / 1024 / 1024,
      rssHeldMiB: probes.rssHeldBytes / 1024 / 1024,
      openMs: report.openMs,
    },
    warnings,
  };
}

/** What udp-client.ts prints on its RESULT line (one mode's fields; see udp-client.ts). */
interface UdpClientReport {
  requests?: number;
  sessions?: number;
  received?: number;
  sent?: number;
  seconds?: number;
  lost?: number;
  [field: string]: number | null | undefined;
}

/**
 * Reads udp-client.ts output (any mode) plus the balancer CPU time the harness read over the
 * measured window. Metrics: every number on the RESULT line (`rps`, `sps`, `pps`, `mbps`,
 * `p50Ms`, `p99Ms`, `lost`, `loss`...), plus, when `probes.cpuSeconds` is there,
 * `cpuPct` (balancer CPU over the window, % of one core) and `cpuUsPerOp` (balancer CPU µs per
 * completed request, session or delivered datagram), with `userSeconds`/`systemSeconds` also
 * `userUsPerOp` and `systemUsPerOp` (the same split into user space and kernel), and
 * `lossPct`: for request/reply modes
 * lost ÷ (completed + lost), for blast the share of sent datagrams that never arrived, in %.
 * An error when there is no RESULT line or nothing completed; a warning when more than 1%
 * of requests were lost (in blast mode loss is the result, not a warning).
 */
export function parseUdpClient(stdout: string, probes: ProbeReadings = {}): ParseResult {
  const line = /^RESULT (\{.*\})\s*$/m.exec(stdout);
  if (!line) return { error: `udp-client printed no RESULT line: ${firstLine(stdout)}` };
  let report: UdpClientReport;
  try {
    report = JSON.parse(line[1]) as UdpClientReport;
  } catch {
    return { error: `udp-client RESULT line is not JSON: ${line[1].slice(0, 200)}` };
  }
  const metrics: Record<string, number> = {};
  for (const [key, value] of Object.entries(report)) if (typeof value === 'number' && Number.isFinite(value)) metrics[key] = value;
  const completed = report.requests ?? report.sessions ?? report.received ?? 0;
  const seconds = report.seconds ?? 0;
  if (!(completed > 0) || !(seconds > 0)) {
    const what = report.received !== undefined ? `no datagram reached the upstream (${report.sent ?? 0} sent)` : `no reply received (${report.lost ?? 0} lost)`;
    return { error: what };
  }
  const warnings: string[] = [];
  if (report.received !== undefined) {
    if (typeof report.loss === 'number') metrics.lossPct = report.loss * 100;
  } else {
    const lost = report.lost ?? 0;
    metrics.lossPct = (lost / (completed + lost)) * 100;
    if (lost > completed * 0.01) warnings.push(`udp-client: ${lost} of ${completed + lost} requests lost (no reply within the timeout)`);
  }
  if (probes.cpuSeconds !== undefined) {
    metrics.cpuPct = (probes.cpuSeconds / seconds) * 100;
    metrics.cpuUsPerOp = (probes.cpuSeconds * 1e6) / completed;
  }
  if (probes.userSeconds !== undefined && probes.systemSeconds !== undefined) {
    metrics.userUsPerOp = (probes.userSeconds * 1e6) / completed;
    metrics.systemUsPerOp = (probes.systemSeconds * 1e6) / completed;
  }
  return { metrics, warnings };
}

/**
 * The CPU time of one process from the text of /proc/<pid>/stat: utime + stime (fields 14
 * and 15, counted after the parenthesised command name, which may contain spaces), in clock
 * ticks. Undefined for text that does not parse.
 */
export function parseStatCpuTicks(stat: string): number | undefined {
  const split = parseStatUserSystemTicks(stat);
  return split === undefined ? undefined : split.user + split.system;
}

/** utime and stime (fields 14 and 15) of a /proc/<pid>/stat text, in clock ticks; undefined when it does not parse. */
export function parseStatUserSystemTicks(stat: string): { user: number; system: number } | undefined {
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const user = Number(fields[11]);
  const system = Number(fields[12]);
  return Number.isFinite(user) && Number.isFinite(system) && fields.length > 12 ? { user, system } : undefined;
}

/**
 * Whether the text of /proc/net/udp (or udp6) lists a socket bound to `host`:`port`, IPv4.
 * The kernel prints the local address as little-endian hex, `0100007F:1F90` for 127.0.0.1:8080.
 */
export function udpBound(procNetUdp: string, host: string, port: number): boolean {
  const octets = host.split('.').map(Number);
  const address = octets
    .reverse()
    .map((octet) => octet.toString(16).padStart(2, '0'))
    .join('')
    .toUpperCase();
  const local = `${address}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return procNetUdp.split('\n').some((row) => row.trim().split(/\s+/)[1] === local);
}

/** VmRSS from the text of /proc/<pid>/status, in bytes; undefined when absent (e.g. a zombie). */
export function parseVmRss(status: string): number | undefined {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return match ? Number(match[1]) * 1024 : undefined;
}

function firstLine(text: string): string {
  const line = text.trim().split('\n')[0] ?? '';
  return line.length > 0 ? line.slice(0, 200) : '(no output)';
}
