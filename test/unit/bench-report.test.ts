import t from 'tap';
import { median, summarize, pairedRatio, pairedDifference, metricByRound } from '../../native-bench/stats.ts';
import {
  parseWrk,
  parseWrkDuration,
  parseIperf3,
  parseHold,
  parseVmRss,
  parseUdpClient,
  parseStatCpuTicks,
  parseStatUserSystemTicks,
  udpBound,
} from '../../native-bench/parse.ts';
import { scenarioRows, scenarioTable, renderMarkdown, renderRatioSvg, formatNumber } from '../../native-bench/report.ts';
import {
  haproxyConfig,
  nginxStreamConfig,
  switchyardConfig,
  connectionCapacity,
  balancerSupports,
  planBalancer,
  type BalancerSetup,
} from '../../native-bench/systems.ts';
import { parseBenchArgs, selectScenarios, systemsForScenario, FULL_DEFAULTS, QUICK_DEFAULTS } from '../../native-bench/cli-args.ts';
import { planUpstream } from '../../native-bench/upstreams.ts';
import { summarizeCpuProfile, renderProfileSummary } from '../../native-bench/profile.ts';
import { LatencyHistogram } from '../../native-bench/udp-protocol.ts';
import { SCENARIOS, findScenario } from '../../native-bench/scenarios.ts';
import { parseConfigText, validateConfig } from '../../src/config/load.ts';
import type { RunOutcome, ScenarioResult } from '../../native-bench/types.ts';

// Captured from `wrk -t1 -c50 -d1s --latency` against nginx on this project's bench machine.
const WRK_KEEPALIVE = `Running 1s test @ http://127.0.0.1:18080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   364.93us  307.00us   8.00ms   98.42%
    Req/Sec    76.95k     2.31k   80.54k    81.82%
  Latency Distribution
     50%  332.00us
     75%  363.00us
     90%  411.00us
     99%  700.00us
  84036 requests in 1.10s, 12.02MB read
Requests/sec:  76232.05
Transfer/sec:     10.91MB
`;

// The same shape with socket errors and bad statuses, as wrk prints them.
const WRK_WITH_ERRORS = `Running 1s test @ http://127.0.0.1:18081/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.36ms    1.88ms  14.16ms   73.52%
    Req/Sec     7.38k   812.64     8.44k    70.00%
  Latency Distribution
     50%    4.09ms
     75%    5.32ms
     90%    6.73ms
     99%    1.02s
  7446 requests in 1.02s, 1.03MB read
  Socket errors: connect 3, read 40, write 0, timeout 2
  Non-2xx or 3xx responses: 55
Requests/sec:   7305.95
Transfer/sec:      1.01MB
`;

// Trimmed `iperf3 -c ... -J` output (3.12); the parser reads end.sum_received only.
const IPERF3_JSON = JSON.stringify({
  start: { version: 'iperf 3.12', test_start: { protocol: 'TCP', num_streams: 4, duration: 1 } },
  intervals: [],
  end: {
    sum_sent: { start: 0, end: 1.0, seconds: 1.0, bytes: 1137696768, bits_per_second: 9100820606.145447, retransmits: 0, sender: true },
    sum_received: { start: 0, end: 1.001221, seconds: 1.001221, bytes: 1123748981, bits_per_second: 8979028454.25735, sender: true },
  },
});

t.test('median, summary', async (t) => {
  t.equal(median([]), undefined);
  t.equal(median([5]), 5);
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 3, 2]), 2.5, 'even count: mean of the middle two');
  const input = [3, 1, 2];
  median(input);
  t.same(input, [3, 1, 2], 'input not mutated');
  t.same(summarize([10, 30, 20]), { median: 20, min: 10, max: 30, count: 3 });
  t.equal(summarize([]), undefined);
});

t.test('ratios and differences pair runs by round', async (t) => {
  // Round 2 of the subject failed; round 3 of the reference was 0 (unusable as divisor).
  t.equal(pairedRatio([10, undefined, 30, 40], [5, 5, 0, 20]), 2, 'rounds 1 and 4: 2 and 2');
  t.equal(pairedRatio([1, 2, 3], [2, 2, 2]), 1, 'median of 0.5, 1, 1.5');
  t.equal(pairedRatio([undefined], [1]), undefined, 'no pair');
  t.equal(pairedRatio([6, 9, 12], [3, 3]), 2.5, 'extra rounds of one side are ignored (median of 2 and 3)');
  t.equal(pairedDifference([1.5, 2, 4], [1, 1, 1]), 1, 'median of 0.5, 1, 3');
  t.equal(pairedDifference([], []), undefined);

  // Drift cancels: the machine got twice as slow in round 2 for both systems.
  t.equal(pairedRatio([100, 50, 100], [200, 100, 200]), 0.5);

  const runs: RunOutcome[] = [{ ok: true, metrics: { rps: 5 }, warnings: [] }, { ok: false, error: 'boom' }, { ok: true, metrics: {}, warnings: [] }];
  t.same(metricByRound(runs, 'rps'), [5, undefined, undefined]);
});

t.test('wrk durations and output', async (t) => {
  t.equal(parseWrkDuration('332.00us'), 0.332);
  t.equal(parseWrkDuration('1.21ms'), 1.21);
  t.equal(parseWrkDuration('2.00s'), 2000);
  t.equal(parseWrkDuration('1.00m'), 60_000);
  t.equal(parseWrkDuration('fast'), undefined);

  const ok = parseWrk(WRK_KEEPALIVE);
  if (!('metrics' in ok)) throw new Error(ok.error);
  t.equal(ok.metrics.rps, 76232.05);
  t.equal(ok.metrics.requests, 84036);
  t.equal(ok.metrics.p50Ms, 0.332);
  t.equal(ok.metrics.p99Ms, 0.7);
  t.equal(ok.metrics.errors, 0);
  t.same(ok.warnings, []);

  const erred = parseWrk(WRK_WITH_ERRORS);
  if (!('metrics' in erred)) throw new Error(erred.error);
  t.equal(erred.metrics.errors, 3 + 40 + 2 + 55, 'socket errors plus non-2xx responses');
  t.equal(erred.metrics.p99Ms, 1020);
  t.match(erred.warnings?.[0], /100 errors in 7446 requests/);

  t.match(parseWrk('unable to connect to 127.0.0.1:1 Connection refused'), { error: /no "Requests\/sec" line: unable to connect/ });
  t.match(parseWrk(WRK_KEEPALIVE.replace('84036 requests', '0 requests')), { error: /no request/ });
});

t.test('iperf3 JSON', async (t) => {
  const ok = parseIperf3(IPERF3_JSON);
  if (!('metrics' in ok)) throw new Error(ok.error);
  t.ok(Math.abs(ok.metrics.gbps - 8.979028454) < 1e-6, 'receiver side, Gbit/s');
  t.same(parseIperf3(JSON.stringify({ start: {}, intervals: [], end: {}, error: 'the server is busy running a test. try again later' })), {
    error: 'iperf3: the server is busy running a test. try again later',
  });
  t.match(parseIperf3('iperf3: error - unable to connect to server'), { error: /not JSON: iperf3: error/ });
  t.match(parseIperf3(JSON.stringify({ end: { sum_received: { bytes: 0, bits_per_second: 0 } } })), { error: /no received bytes/ });
});

t.test('concurrency hold output and RSS', async (t) => {
  const stdout = 'READY {"requested":1000,"opened":1000,"failed":0,"openMs":250}\nDONE {"lostWhileHeld":0}\n';
  const mib = 1024 * 1024;
  const ok = parseHold(stdout, { rssBeforeBytes: 10 * mib, rssHeldBytes: 10 * mib + 1000 * 4096 });
  if (!('metrics' in ok)) throw new Error(ok.error);
  t.equal(ok.metrics.kibPerConn, 4);
  t.equal(ok.metrics.opened, 1000);
  t.equal(ok.metrics.rssBeforeMiB, 10);
  t.same(ok.warnings, []);

  const partial = parseHold('READY {"requested":1000,"opened":900,"failed":100,"openMs":250}\n', { rssBeforeBytes: 0, rssHeldBytes: 900 * 1024 });
  if (!('metrics' in partial)) throw new Error(partial.error);
  t.equal(partial.metrics.kibPerConn, 1, 'divides by connections actually opened');
  t.match(partial.warnings?.[0], /only 900 of 1000/);

  t.match(parseHold(stdout, {}), { error: /RSS could not be read/ });
  t.match(parseHold('READY {"requested":5,"opened":0,"failed":5,"openMs":1}\n', { rssBeforeBytes: 1, rssHeldBytes: 2 }), { error: /no connection opened/ });
  t.match(parseHold('', { rssBeforeBytes: 1, rssHeldBytes: 2 }), { error: /no READY line/ });

  t.equal(parseVmRss('Name:\thaproxy\nVmPeak:\t  30000 kB\nVmRSS:\t   15460 kB\nRssAnon:\t 9000 kB\n'), 15460 * 1024);
  t.equal(parseVmRss('Name:\tzombie\nState:\tZ (zombie)\n'), undefined);
});

function result(runs: Record<string, RunOutcome[] | string>): ScenarioResult {
  const scenario = findScenario('tcp-keepalive')!;
  return {
    scenario,
    notes: ['a note'],
    systems: Object.entries(runs).map(([system, value]) =>
      typeof value === 'string' ? { system: system as 'switchyard', unavailable: value, runs: [] } : { system: system as 'direct', runs: value },
    ),
  };
}

const ok = (rps: number, p50Ms = 1, p99Ms = 2): RunOutcome => ({ ok: true, metrics: { rps, p50Ms, p99Ms }, warnings: [] });

t.test('report rows, table, markdown and svg', async (t) => {
  const input = result({
    direct: [ok(100, 0.5, 1), ok(50, 0.5, 1), ok(100, 0.5, 1)],
    switchyard: 'src/cli.ts missing',
    haproxy: [ok(40, 1, 3), ok(20, 1, 3), ok(40, 1.5, 3)],
    nginx: [ok(60, 2, 4), { ok: false, error: 'wrk completed no request' }, ok(20, 2, 4)],
  });
  const rows = scenarioRows(input);
  t.same(
    rows.map((row) => row.system),
    ['direct', 'switchyard', 'haproxy', 'nginx'],
  );
  const [direct, switchyard, haproxy, nginx] = rows;
  t.equal(direct.vsReference, 2.5);
  t.equal(direct.vsDirect, 1);
  t.equal(switchyard.unavailable, 'src/cli.ts missing');
  t.equal(haproxy.vsReference, 1);
  t.equal(haproxy.vsDirect, 0.4);
  t.same(haproxy.primary, { median: 40, min: 20, max: 40, count: 3 });
  t.same(haproxy.addedOverDirect, [0.5, 2], 'per-round difference to direct, median');
  t.equal(nginx.vsReference, 1, 'median of 1.5 and 0.5 over the two rounds both completed');
  t.equal(nginx.runsOk, 2);
  t.same(nginx.problems, ['wrk completed no request']);

  const table = scenarioTable(input);
  t.match(table, /\| switchyard \| not available \(src\/cli\.ts missing\) \|/);
  t.match(table, /\| haproxy \| 40 \| 20–40 \| 1\.00× \| 0\.40× \|/);
  t.match(table, /\| nginx \| 40 \| 20–60 \| 1\.00× \|.*\| 2\/3 \|/);
  const columns = (line: string) => line.split(' | ').length;
  const lines = table.split('\n');
  t.ok(
    lines.every((line) => line.startsWith('|') && line.endsWith('|')),
    'every line is a table row',
  );
  t.equal(columns(lines[2]), columns(lines[0]), 'data rows have as many cells as the header');

  const report = { date: '2026-01-02', mode: 'quick', placement: 'pinned', machine: [['CPU', 'test × 2 cores']] as [string, string][], results: [input], notes: ['done'], elapsedSec: 12.3 };
  const markdown = renderMarkdown(report);
  t.match(markdown, /^# Switchyard native benchmark — 2026-01-02/);
  t.match(markdown, /\| tcp-keepalive \| requests\/s ↑ \| × HAProxy \| 2\.50× \| n\/a \| 1\.00× \| 1\.00× \|/);
  t.match(table, /\| system \| requests\/s ↑ \(median\) \| min–max \| × HAProxy \| × direct \|/);
  t.match(markdown, /- nginx: wrk completed no request/);
  t.match(markdown, /- a note/);

  const svg = renderRatioSvg(report);
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.match(svg, /2\.50×<\/text>/);
  t.match(svg, /not available/);
  t.notMatch(svg, />haproxy</, 'HAProxy is the dashed line, not a bar');
  t.equal((svg.match(/<rect /g) ?? []).length, 1 + 2, 'background plus direct and nginx bars');

  t.equal(formatNumber(12345.678, 0), '12,346');
  t.equal(formatNumber(undefined, 2), '–');
});

const setup: BalancerSetup = {
  tag: 'tcp-keepalive',
  protocol: 'tcp',
  listen: { host: '127.0.0.1', port: 40001 },
  upstream: { host: '127.0.0.1', port: 40002 },
  nofile: 20_000,
  workDir: '/tmp/bench-work',
  nginxStreamModule: '/usr/lib/nginx/modules/ngx_stream_module.so',
};

t.test('UDP balancer configs follow the scenario session settings', async (t) => {
  const udp: BalancerSetup = { ...setup, protocol: 'udp' };
  const plain = validateConfig(parseConfigText(switchyardConfig(udp), 'bench.yaml'));
  const plainListener = plain.listeners[0];
  if (plainListener.protocol !== 'udp') throw new Error('expected a udp listener');
  t.same(plainListener.udp, { sessionTimeout: 30_000, maxSessions: 100_000 }, 'no udp block: the defaults');
  t.notMatch(switchyardConfig(udp), /udp:/);

  const dns = validateConfig(parseConfigText(switchyardConfig({ ...udp, udp: { responses: 1 } }), 'bench.yaml')).listeners[0];
  if (dns.protocol !== 'udp') throw new Error('expected a udp listener');
  t.equal(dns.udp.responses, 1);
  t.equal(dns.udp.sessionTimeout, 30_000);
  const short = validateConfig(parseConfigText(switchyardConfig({ ...udp, udp: { sessionTimeoutMs: 500 } }), 'bench.yaml')).listeners[0];
  if (short.protocol !== 'udp') throw new Error('expected a udp listener');
  t.equal(short.udp.sessionTimeout, 500);
  t.equal(short.udp.responses, undefined);

  const nginx = nginxStreamConfig(udp);
  t.match(nginx, /listen 127\.0\.0\.1:40001 udp;/);
  t.match(nginx, /proxy_timeout 30000ms;/, 'the same idle timeout as Switchyard by default');
  t.notMatch(nginx, /proxy_responses/, 'unlimited replies, like Switchyard without responses');
  t.notMatch(nginx, /proxy_connect_timeout/);
  t.match(nginx, new RegExp(`worker_connections ${2 * (20_000 - 100)};`), 'one descriptor but two connection slots per session');
  const nginxDns = nginxStreamConfig({ ...udp, udp: { responses: 1, sessionTimeoutMs: 500 } });
  t.match(nginxDns, /proxy_responses 1;/);
  t.match(nginxDns, /proxy_timeout 500ms;/);

  t.equal(balancerSupports('haproxy', 'udp'), 'HAProxy (community edition) has no UDP proxying');
  t.equal(balancerSupports('haproxy', 'tcp'), true);
  t.equal(balancerSupports('nginx', 'udp'), true);
  const environment = { repoRoot: '/repo', nodePath: '/node' };
  t.match(planBalancer('haproxy', udp, environment), { unavailable: /no UDP/, notApplicable: true });
  const profiled = planBalancer('switchyard', { ...udp, nodeFlags: ['--cpu-prof', '--cpu-prof-dir', '/p'] }, environment);
  if ('unavailable' in profiled) throw new Error(profiled.unavailable);
  t.same(profiled.argv.slice(0, 6), ['/node', '--experimental-strip-types', '--no-warnings=ExperimentalWarning', '--cpu-prof', '--cpu-prof-dir', '/p']);
  t.same(profiled.argv.slice(-3), ['src/cli.ts', '--config', profiled.configFile]);
});

t.test('balancer configs come from one setup', async (t) => {
  const switchyard = validateConfig(parseConfigText(switchyardConfig(setup), 'bench.yaml'));
  t.equal(switchyard.log.level, 'warn');
  t.equal(switchyard.listeners[0].protocol, 'tcp');
  t.same(switchyard.listeners[0].bind, { host: '127.0.0.1', port: 40001, family: 4 });
  t.same(switchyard.pools.upstream.servers[0].address, { host: '127.0.0.1', port: 40002, family: 4 });
  t.doesNotThrow(() => validateConfig(parseConfigText(switchyardConfig({ ...setup, protocol: 'udp' }), 'bench.yaml')), 'udp listener too');

  const haproxy = haproxyConfig(setup);
  t.type(haproxy, 'string');
  t.match(haproxy, /nbthread 1/);
  t.match(haproxy, /mode tcp/);
  t.match(haproxy, /bind 127\.0\.0\.1:40001/);
  t.match(haproxy, /server s1 127\.0\.0\.1:40002/);
  t.match(haproxy, new RegExp(`maxconn ${connectionCapacity(20_000)}`));
  t.match(haproxyConfig({ ...setup, protocol: 'udp' }), { unsupported: /no UDP/ });

  const nginx = nginxStreamConfig(setup);
  t.match(nginx, /^load_module \/usr\/lib\/nginx\/modules\/ngx_stream_module\.so;/);
  t.match(nginx, /worker_processes 1;/);
  t.match(nginx, /listen 127\.0\.0\.1:40001;/);
  t.match(nginx, /server 127\.0\.0\.1:40002;/);
  t.notMatch(nginxStreamConfig({ ...setup, nginxStreamModule: undefined }), /load_module/, 'built-in stream module');
  t.match(nginxStreamConfig({ ...setup, protocol: 'udp' }), /listen 127\.0\.0\.1:40001 udp;/);
  t.equal(connectionCapacity(20_000), 9950);
});

t.test('scenario load commands', async (t) => {
  const settings = {
    durationSec: 3,
    udpSeconds: 0.5,
    udpWarmupMs: 50,
    upstream: { host: '127.0.0.1', port: 7 },
    connections: 500,
    workDir: '/w',
    benchDir: '/b',
    nodePath: '/node',
  };
  const target = { host: '127.0.0.1', port: 9 };
  t.same(findScenario('tcp-keepalive')!.load.command(target, settings), ['wrk', '-t1', '-c50', '-d3s', '--latency', 'http://127.0.0.1:9/']);
  t.same(findScenario('tcp-connect')!.load.command(target, settings).slice(-3), ['-H', 'Connection: close', 'http://127.0.0.1:9/']);
  t.same(findScenario('bulk-4')!.load.command(target, settings), ['iperf3', '-c', '127.0.0.1', '-p', '9', '-t', '3', '-P', '4', '-J']);
  const hold = findScenario('concurrency')!.load.command(target, settings);
  t.equal(hold[0], '/node');
  t.match(hold.join(' '), /\/b\/conn-client\.ts --host 127\.0\.0\.1 --port 9 --connections 500 --tag \/w/);
  t.same(new Set(SCENARIOS.map((s) => s.name)).size, SCENARIOS.length, 'scenario names are unique');

  const rr = findScenario('udp-rr')!.load.command(target, settings);
  t.same(rr.slice(0, 2), ['/node', '/b/udp-client.ts']);
  t.match(rr.join(' '), /--mode rr --host 127\.0\.0\.1 --port 9 --seconds 0\.5 --warmup-ms 50 --clients 64 --size 64 --echo 127\.0\.0\.1:7 --tag \/w/);
  t.match(findScenario('udp-dns')!.load.command(target, settings).join(' '), /--mode rr .* --echo 127\.0\.0\.1:7/);
  const blast = findScenario('udp-throughput')!.load.command(target, settings).join(' ');
  t.match(blast, /--mode blast .*--warmup-ms 0 --clients 4 --size 1200 --counters 127\.0\.0\.1:7/);
  t.notMatch(blast, /--echo/, 'the sink is its own process');
  t.match(findScenario('udp-new-sessions')!.load.command(target, settings).join(' '), /--mode new .*--clients 32 --size 64 --echo 127\.0\.0\.1:7/);
  for (const name of ['udp-rr', 'udp-dns', 'udp-throughput', 'udp-new-sessions']) {
    const scenario = findScenario(name)!;
    t.equal(scenario.listener, 'udp', `${name} is a UDP scenario`);
    t.equal(scenario.reference, 'nginx', `${name} compares to nginx`);
    t.ok(scenario.load.measuresWindow, `${name} marks its window for the CPU reading`);
    t.ok(scenario.secondary.some((metric) => metric.key === 'cpuUsPerOp' && metric.compare), `${name} compares CPU per operation`);
  }
  t.same(findScenario('udp-dns')!.udpSession, { responses: 1 });
  t.same(findScenario('udp-new-sessions')!.udpSession, { sessionTimeoutMs: 500 });
  t.equal(findScenario('udp-rr')!.udpSession, undefined, 'udp-rr keeps the default session settings');

  const quickNames = selectScenarios(SCENARIOS, { only: [], quick: true }).map((s) => s.name);
  t.same(quickNames, ['tcp-keepalive', 'tcp-connect', 'bulk-1', 'bulk-4', 'concurrency', 'udp-rr'], 'quick mode: udp-rr is the only UDP scenario');
  t.equal(selectScenarios(SCENARIOS, { only: [], quick: false }).length, SCENARIOS.length);
  const all = ['direct', 'switchyard', 'haproxy', 'nginx'] as const;
  t.same(systemsForScenario(all, findScenario('bulk-4')!, { quick: true }), ['switchyard', 'haproxy', 'nginx'], 'quick mode: no direct bulk runs');
  t.same(systemsForScenario(all, findScenario('bulk-4')!, { quick: false }), all, 'full runs keep the bulk ceiling');
  t.same(systemsForScenario(all, findScenario('tcp-keepalive')!, { quick: true }), all, 'quick mode keeps the other direct runs');
  t.same(systemsForScenario(all, findScenario('concurrency')!, { quick: false }), ['switchyard', 'haproxy', 'nginx'], 'no direct run where it means nothing');
  t.same(
    selectScenarios(SCENARIOS, { only: ['udp-dns', 'tcp-connect'], quick: true }).map((s) => s.name),
    ['tcp-connect', 'udp-dns'],
    '--only wins over quick, declaration order',
  );
});

t.test('upstream plans for UDP', async (t) => {
  const helpers = { nodePath: '/node', benchDir: '/b' };
  const echo = planUpstream('udp-echo', { host: '127.0.0.1', port: 5000 }, 20_000, '/w', helpers);
  t.equal(echo.hostedByLoad, true, 'the echo lives in the load process');
  t.same(echo.transports, ['udp']);
  const sink = planUpstream('udp-sink', { host: '127.0.0.1', port: 5001 }, 20_000, '/w', helpers);
  t.same(sink.argv, ['/node', '/b/udp-upstream.ts', '--mode', 'sink', '--host', '127.0.0.1', '--port', '5001', '--tag', '/w']);
  t.same(sink.transports, ['udp', 'tcp'], 'datagrams and counters on one port');
  t.same(sink.aliases, []);
  t.same(planUpstream('http', { host: '127.0.0.1', port: 5002 }, 20_000, '/w', helpers).transports, ['tcp']);
});

// Captured from udp-client.ts runs on this project's bench machine.
const UDP_RR = 'MEASURING\nRESULT {"requests":53376,"seconds":1,"rps":53376,"p50Ms":1.178,"p99Ms":1.56,"lost":0,"late":0,"socketErrors":0,"clients":64}\n';
const UDP_NEW = 'MEASURING\nRESULT {"sessions":23691,"seconds":0.9999999999999999,"sps":23691.000000000004,"p50Ms":1.249,"p99Ms":2.23,"lost":0,"socketErrors":0,"clients":32}\n';
const UDP_BLAST =
  'MEASURING\nRESULT {"sent":209920,"received":188928,"seconds":1.0020706050000001,"pps":188537.6,"mbps":1809.96,"loss":0.1,"socketErrors":0,"clients":4}\n';

t.test('udp-client output, CPU readings and /proc parsers', async (t) => {
  const rr = parseUdpClient(UDP_RR, { cpuSeconds: 0.5, userSeconds: 0.2, systemSeconds: 0.3 });
  if (!('metrics' in rr)) throw new Error(rr.error);
  t.equal(rr.metrics.rps, 53376);
  t.equal(rr.metrics.p50Ms, 1.178);
  t.equal(rr.metrics.p99Ms, 1.56);
  t.equal(rr.metrics.lossPct, 0);
  t.equal(rr.metrics.cpuPct, 50, 'CPU seconds over the window, % of one core');
  t.ok(Math.abs(rr.metrics.cpuUsPerOp - 0.5e6 / 53376) < 1e-9, 'CPU µs per completed request');
  t.ok(Math.abs(rr.metrics.userUsPerOp - 0.2e6 / 53376) < 1e-9, 'user-space part');
  t.ok(Math.abs(rr.metrics.systemUsPerOp - 0.3e6 / 53376) < 1e-9, 'kernel part');
  t.same(rr.warnings, []);
  const direct = parseUdpClient(UDP_RR);
  t.ok('metrics' in direct && direct.metrics.cpuPct === undefined && direct.metrics.cpuUsPerOp === undefined, 'direct: no balancer, no CPU reading');

  const fresh = parseUdpClient(UDP_NEW, { cpuSeconds: 0.25 });
  if (!('metrics' in fresh)) throw new Error(fresh.error);
  t.equal(fresh.metrics.sps, 23691.000000000004);
  t.ok(Math.abs(fresh.metrics.cpuUsPerOp - 0.25e6 / 23691) < 1e-9, 'per session');

  const blast = parseUdpClient(UDP_BLAST, { cpuSeconds: 1 });
  if (!('metrics' in blast)) throw new Error(blast.error);
  t.equal(blast.metrics.pps, 188537.6);
  t.equal(blast.metrics.mbps, 1809.96);
  t.equal(blast.metrics.lossPct, 10, 'blast loss is the result, in %');
  t.ok(Math.abs(blast.metrics.cpuUsPerOp - 1e6 / 188928) < 1e-9, 'per datagram delivered');
  t.same(blast.warnings, [], 'loss in a blast is no warning');

  const lossy = parseUdpClient('RESULT {"requests":900,"seconds":1,"rps":900,"p50Ms":1,"p99Ms":200,"lost":100,"late":3,"clients":64}\n');
  if (!('metrics' in lossy)) throw new Error(lossy.error);
  t.equal(lossy.metrics.lossPct, 10);
  t.match(lossy.warnings?.[0], /100 of 1000 requests lost/);
  t.match(parseUdpClient('RESULT {"requests":0,"seconds":1,"rps":0,"p50Ms":null,"p99Ms":null,"lost":320,"late":0,"clients":64}\n'), {
    error: 'no reply received (320 lost)',
  });
  t.match(parseUdpClient('RESULT {"requests":0,"seconds":1,"p50Ms":null}\n'), { error: 'no reply received (0 lost)' }, 'null percentiles are tolerated');
  t.match(parseUdpClient('RESULT {"sent":100,"received":0,"seconds":1,"pps":0,"mbps":0,"loss":1}\n'), { error: /no datagram reached the upstream \(100 sent\)/ });
  t.match(parseUdpClient('udp-client: connect ECONNREFUSED 127.0.0.1:5001\n'), { error: /no RESULT line: udp-client: connect ECONNREFUSED/ });
  t.match(parseUdpClient('RESULT {oops}\n'), { error: /not JSON/ });

  // /proc/<pid>/stat: utime and stime are fields 14 and 15; the command may contain spaces and parentheses.
  t.equal(parseStatCpuTicks('29565 (cat) R 29563 29563 18371 0 -1 4194304 100 0 0 0 7 3 0 0 20 0 1 0 601610 3133440 386'), 10);
  t.equal(parseStatCpuTicks('77 (node (Main) Thread) S 1 77 77 0 -1 4194560 5000 0 0 0 250 40 0 0 20 0 11 0 1 1 1'), 290);
  t.equal(parseStatCpuTicks('garbage'), undefined);
  t.same(parseStatUserSystemTicks('77 (node (Main) Thread) S 1 77 77 0 -1 4194560 5000 0 0 0 250 40 0 0 20 0 11 0 1 1 1'), { user: 250, system: 40 });

  const procNetUdp = [
    '   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops',
    ' 9662: 0100007F:1F90 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 11421003 2 000000007863ae23 0',
    ' 9663: 0200007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 11421004 2 000000007863ae24 0',
  ].join('\n');
  t.ok(udpBound(procNetUdp, '127.0.0.1', 8080));
  t.ok(udpBound(procNetUdp, '127.0.0.2', 53));
  t.notOk(udpBound(procNetUdp, '127.0.0.1', 53), 'address and port must both match');
  t.notOk(udpBound(procNetUdp, '127.0.0.1', 0x1f9));
});

t.test('udp-protocol: latency histogram', async (t) => {
  const histogram = new LatencyHistogram(10);
  t.equal(histogram.percentile(0.5), undefined, 'empty');
  for (let i = 1; i <= 100; i++) histogram.record(i / 100); // 0.01 .. 1.00 ms
  histogram.record(50); // beyond the limit: the last bucket
  t.equal(histogram.count, 101);
  t.equal(histogram.percentile(0.5), 0.51);
  t.equal(histogram.percentile(0.99), 1);
  t.equal(histogram.percentile(1), 10, 'values past the limit are counted at the limit');
});

function udpResult(runs: Record<string, RunOutcome[] | string>): ScenarioResult {
  const scenario = findScenario('udp-rr')!;
  return {
    scenario,
    notes: [],
    systems: Object.entries(runs).map(([system, value]) =>
      typeof value === 'string'
        ? { system: system as 'haproxy', unavailable: value, notApplicable: true, runs: [] }
        : { system: system as 'direct', runs: value },
    ),
  };
}
const udpOk = (rps: number, cpuUsPerOp?: number): RunOutcome => ({
  ok: true,
  metrics: cpuUsPerOp === undefined ? { rps, p50Ms: 1, p99Ms: 2, lossPct: 0 } : { rps, p50Ms: 1, p99Ms: 2, lossPct: 0, cpuPct: 90, cpuUsPerOp },
  warnings: [],
});

t.test('UDP report: ratios to nginx, HAProxy n/a, CPU per request compared', async (t) => {
  const input = udpResult({
    direct: [udpOk(50), udpOk(50), udpOk(50)],
    switchyard: [udpOk(30, 30), udpOk(40, 24), udpOk(20, 45)],
    haproxy: 'HAProxy (community edition) has no UDP proxying',
    nginx: [udpOk(40, 20), udpOk(40, 20), udpOk(40, 15)],
  });
  const [direct, switchyard, haproxy, nginx] = scenarioRows(input);
  t.equal(direct.vsReference, 1.25, '× nginx');
  t.equal(switchyard.vsReference, 0.75, 'median of 0.75, 1, 0.5');
  t.equal(nginx.vsReference, 1);
  t.equal(haproxy.notApplicable, true);
  const cpuIndex = input.scenario.secondary.findIndex((metric) => metric.key === 'cpuUsPerOp');
  t.equal(switchyard.secondaryVsReference[cpuIndex], 1.5, 'median of 1.5, 1.2, 3');
  t.equal(direct.secondaryVsReference[cpuIndex], undefined, 'direct has no CPU reading');

  const table = scenarioTable(input);
  t.match(table, /\| system \| requests\/s ↑ \(median\) \| min–max \| × nginx \| × direct \|/);
  t.match(table, /\| CPU µs\/request ↓ \| CPU µs\/request × nginx \|/);
  t.match(table, /\| haproxy \| n\/a: HAProxy \(community edition\) has no UDP proxying \|/);
  t.match(table, /\| switchyard \| 30 \| 20–40 \| 0\.75× \| 0\.60× \|.*\| 30\.0 \| 1\.50× \| – \| – \| 3\/3 \|/, 'no user/kernel split in these runs');
  const cellCount = (line: string) => line.replace(/\\\|/g, '').split('|').length;
  const lines = table.split('\n');
  t.ok(
    lines.every((line) => cellCount(line) === cellCount(lines[0])),
    'every row, the n/a one too, has as many cells as the header',
  );

  const report = { date: '2026-01-02', mode: 'full', placement: 'pinned', machine: [] as [string, string][], results: [input], notes: [], elapsedSec: 1 };
  const markdown = renderMarkdown(report);
  t.match(markdown, /\| scenario \| metric \| ratio \| direct \| switchyard \| haproxy \| nginx \|/);
  t.match(markdown, /\| udp-rr \| requests\/s ↑ \| × nginx \| 1\.25× \| 0\.75× \| n\/a \| 1\.00× \|/);
  t.match(markdown, /\| udp-rr \| CPU µs\/request ↓ \| × nginx \| – \| 1\.50× \| n\/a \| 1\.00× \|/);

  const svg = renderRatioSvg(report);
  t.match(svg, /udp-rr: requests\/s ↑, × nginx/);
  t.notMatch(svg, />nginx</, 'nginx is the dashed line here');
  t.match(svg, />haproxy<\/text>\n<text [^>]*>n\/a</);
});

t.test('CPU profile summary', async (t) => {
  const root = 'file:///repo';
  const profile = {
    startTime: 0,
    endTime: 1_000_000, // 1 s in µs
    nodes: [
      { id: 1, callFrame: { functionName: '(root)', url: '', lineNumber: -1 }, hitCount: 0 },
      { id: 2, callFrame: { functionName: '(idle)', url: '', lineNumber: -1 } },
      { id: 3, callFrame: { functionName: 'doSend', url: 'node:dgram', lineNumber: 833 } },
      { id: 4, callFrame: { functionName: 'onDatagram', url: `${root}/src/l4/udp-listener.ts`, lineNumber: 171 } },
      { id: 5, callFrame: { functionName: '(program)', url: '', lineNumber: -1 } },
      { id: 6, callFrame: { functionName: '', url: `${root}/src/l4/udp-listener.ts`, lineNumber: 9 } },
    ],
    samples: [2, 2, 2, 2, 2, 3, 3, 3, 4, 5],
  };
  const summary = summarizeCpuProfile(profile, 10, root);
  if (typeof summary === 'string') throw new Error(summary);
  t.equal(summary.busySamples, 5);
  t.equal(summary.idleShare, 0.5);
  t.equal(summary.busyMs, 500, '5 of 10 samples over 1 s');
  t.same(
    summary.functions.map((entry) => [entry.name, entry.share]),
    [
      ['doSend node:dgram:834', 0.6],
      ['(program)', 0.2],
      ['onDatagram src/l4/udp-listener.ts:172', 0.2],
    ],
  );
  t.same(
    summary.files.map((entry) => [entry.name, entry.share]),
    [
      ['node:dgram', 0.6],
      ['(program)', 0.2],
      ['src/l4/udp-listener.ts', 0.2],
    ],
  );
  t.equal(summarizeCpuProfile({ ...profile, samples: undefined }, 10, root), 'the profile holds no busy sample', 'no samples and no hit counts');
  const byHits = summarizeCpuProfile({ ...profile, samples: undefined, nodes: profile.nodes.map((node) => ({ ...node, hitCount: node.id === 3 ? 4 : 0 })) }, 1);
  if (typeof byHits === 'string') throw new Error(byHits);
  t.same(byHits.functions, [{ name: 'doSend node:dgram:834', share: 1, ms: 1000 }], 'falls back to hitCount');
  t.equal(summarizeCpuProfile({ nope: 1 }, 10), 'not a CPU profile (no nodes)');
  const markdown = renderProfileSummary('udp-rr', summary);
  t.match(markdown, /^### udp-rr\n\nBusy 0\.50 s \(5 samples\); idle 50\.0% of the profile\./);
  t.match(markdown, /\| doSend node:dgram:834 \| 60\.0% \| 300 \|/);
});

t.test('command-line flags', async (t) => {
  const names = SCENARIOS.map((s) => s.name);
  const quick = parseBenchArgs(['--quick'], names);
  if (typeof quick === 'string') throw new Error(quick);
  t.equal(quick.rounds, QUICK_DEFAULTS.rounds);
  t.equal(quick.durationSec, QUICK_DEFAULTS.durationSec);
  t.equal(quick.udpSeconds, QUICK_DEFAULTS.udpSeconds);
  t.ok(quick.udpSeconds < 1, 'quick UDP runs are shorter than a second');
  t.same(quick.systems, ['direct', 'switchyard', 'haproxy', 'nginx']);
  t.equal(quick.profile, false);

  const custom = parseBenchArgs(['--rounds', '4', '--duration=2', '--only', 'bulk-1,tcp-connect', '--systems', 'nginx,direct', '--no-pin'], names);
  if (typeof custom === 'string') throw new Error(custom);
  t.equal(custom.rounds, 4);
  t.equal(custom.durationSec, 2);
  t.same(custom.only, ['bulk-1', 'tcp-connect']);
  t.same(custom.systems, ['direct', 'nginx'], 'canonical order');
  t.equal(custom.pin, false);
  t.equal(custom.udpSeconds, 2, '--duration sets the UDP window too');

  const full = parseBenchArgs(['--profile'], names);
  if (typeof full === 'string') throw new Error(full);
  t.equal(full.profile, true);
  t.equal(full.udpSeconds, FULL_DEFAULTS.udpSeconds);
  t.equal(full.udpWarmupMs, FULL_DEFAULTS.udpWarmupMs);

  t.match(parseBenchArgs(['--rounds', '2'], names), /at least 3/);
  t.match(parseBenchArgs(['--duration', '0.5'], names), /whole seconds/);
  t.match(parseBenchArgs(['--only', 'udp-echo'], names), /unknown scenario udp-echo/);
  t.match(parseBenchArgs(['--systems', 'envoy'], names), /unknown system envoy/);
  t.match(parseBenchArgs(['--fast'], names), /unknown option --fast/);
});
