import t from 'tap';
import { median, summarize, pairedRatio, pairedDifference, metricByRound } from '../../native-bench/stats.ts';
import { parseWrk, parseWrkDuration, parseIperf3, parseHold, parseVmRss } from '../../native-bench/parse.ts';
import { scenarioRows, scenarioTable, renderMarkdown, renderRatioSvg, formatNumber } from '../../native-bench/report.ts';
import { haproxyConfig, nginxStreamConfig, switchyardConfig, connectionCapacity, type BalancerSetup } from '../../native-bench/systems.ts';
import { parseBenchArgs, QUICK_DEFAULTS } from '../../native-bench/cli-args.ts';
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
  t.equal(direct.vsHaproxy, 2.5);
  t.equal(direct.vsDirect, 1);
  t.equal(switchyard.unavailable, 'src/cli.ts missing');
  t.equal(haproxy.vsHaproxy, 1);
  t.equal(haproxy.vsDirect, 0.4);
  t.same(haproxy.primary, { median: 40, min: 20, max: 40, count: 3 });
  t.same(haproxy.addedOverDirect, [0.5, 2], 'per-round difference to direct, median');
  t.equal(nginx.vsHaproxy, 1, 'median of 1.5 and 0.5 over the two rounds both completed');
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
  t.match(markdown, /\| tcp-keepalive \| requests\/s ↑ \| 2\.50× \| n\/a \| 1\.00× \| 1\.00× \|/);
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
  const settings = { durationSec: 3, connections: 500, workDir: '/w', benchDir: '/b', nodePath: '/node' };
  const target = { host: '127.0.0.1', port: 9 };
  t.same(findScenario('tcp-keepalive')!.load.command(target, settings), ['wrk', '-t1', '-c50', '-d3s', '--latency', 'http://127.0.0.1:9/']);
  t.same(findScenario('tcp-connect')!.load.command(target, settings).slice(-3), ['-H', 'Connection: close', 'http://127.0.0.1:9/']);
  t.same(findScenario('bulk-4')!.load.command(target, settings), ['iperf3', '-c', '127.0.0.1', '-p', '9', '-t', '3', '-P', '4', '-J']);
  const hold = findScenario('concurrency')!.load.command(target, settings);
  t.equal(hold[0], '/node');
  t.match(hold.join(' '), /\/b\/conn-client\.ts --host 127\.0\.0\.1 --port 9 --connections 500 --tag \/w/);
  t.same(new Set(SCENARIOS.map((s) => s.name)).size, SCENARIOS.length, 'scenario names are unique');
});

t.test('command-line flags', async (t) => {
  const names = SCENARIOS.map((s) => s.name);
  const quick = parseBenchArgs(['--quick'], names);
  if (typeof quick === 'string') throw new Error(quick);
  t.equal(quick.rounds, QUICK_DEFAULTS.rounds);
  t.equal(quick.durationSec, QUICK_DEFAULTS.durationSec);
  t.same(quick.systems, ['direct', 'switchyard', 'haproxy', 'nginx']);

  const custom = parseBenchArgs(['--rounds', '4', '--duration=2', '--only', 'bulk-1,tcp-connect', '--systems', 'nginx,direct', '--no-pin'], names);
  if (typeof custom === 'string') throw new Error(custom);
  t.equal(custom.rounds, 4);
  t.equal(custom.durationSec, 2);
  t.same(custom.only, ['bulk-1', 'tcp-connect']);
  t.same(custom.systems, ['direct', 'nginx'], 'canonical order');
  t.equal(custom.pin, false);

  t.match(parseBenchArgs(['--rounds', '2'], names), /at least 3/);
  t.match(parseBenchArgs(['--duration', '0.5'], names), /whole seconds/);
  t.match(parseBenchArgs(['--only', 'udp-echo'], names), /unknown scenario udp-echo/);
  t.match(parseBenchArgs(['--systems', 'envoy'], names), /unknown system envoy/);
  t.match(parseBenchArgs(['--fast'], names), /unknown option --fast/);
});
