/**
 * `npm run bench [-- --quick ...]`: measures Switchyard against HAProxy and nginx on this
 * machine, same upstreams, same load, interleaved round by round, and writes a report with
 * ratios (see README.md). Progress goes to stderr; the markdown report to stdout and
 * native-bench/results/.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createServer, connect, type AddressInfo } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HELP, parseBenchArgs, selectScenarios, systemsForScenario, type BenchOptions } from './cli-args.ts';
import { describeMachine, ensureTools, hardNofileLimit, hasBinary, nginxStream } from './machine.ts';
import {
  findLeftovers,
  killLeftovers,
  outputTail,
  pinTree,
  ProcessRegistry,
  sleep,
  treeCpuSeconds,
  treeRssBytes,
  treeUserSystemSeconds,
  waitForPort,
  waitForUdpBound,
  type Launched,
} from './processes.ts';
import { renderProfileSummary, summarizeCpuProfile } from './profile.ts';
import { renderMarkdown, renderRatioSvg, scenarioRows, formatNumber, formatRatio, ratioLabel } from './report.ts';
import { SCENARIOS } from './scenarios.ts';
import { balancerSupports, connectionCapacity, planBalancer, type BalancerEnvironment, type BalancerSetup } from './systems.ts';
import { planUpstream, type HelperScripts } from './upstreams.ts';
import type { BalancerName, Endpoint, LoadSettings, ProbeReadings, RunOutcome, Scenario, ScenarioResult, SystemName, SystemRuns, UpstreamKind } from './types.ts';

const benchDir = dirname(fileURLToPath(import.meta.url));
const repoRoot = dirname(benchDir);
const workRoot = join(benchDir, '.work');
const resultsDir = join(benchDir, 'results');
const lockFile = join(workRoot, 'lock');
/** Where `--profile` makes Switchyard write its .cpuprofile files (kept after the run). */
const profileDir = join(workRoot, 'prof');
const helpers: HelperScripts = { nodePath: process.execPath, benchDir };
// Every Node child (Switchyard, the UDP loads and sink, conn-client) inherits this: Node then
// keeps the type-stripped, compiled modules on disk, which cuts ~0.1 s from every start of a
// UDP load (and from Switchyard's boot). Start-up only: nothing measured runs differently.
process.env.NODE_COMPILE_CACHE = join(workRoot, 'compile-cache');
const LOOPBACK = '127.0.0.1';

/** CPU placement on a machine with at least two cores: balancer alone on one, load side on the other. */
const BALANCER_CPU = '1';
const LOAD_CPU = '0';
/**
 * Pause between runs so sockets in TIME_WAIT and CPU frequency settle a little. Quick mode
 * skips it: 70 runs × 10 ms would be a second of its 60 s budget.
 */
const BETWEEN_RUNS_MS = 10;
/** After a balancer accepts connections, before it is measured. */
const STARTUP_SETTLE_MS = 100;
/**
 * Full runs give every balancer one unrecorded run of this many seconds before round 1, so
 * that round 1 does not measure start-up effects (Node's JIT needs a second or so of traffic
 * before Switchyard's hot paths are optimised; nginx and HAProxy warm their caches).
 */
const WARM_UP_RUN_SEC = 1;
/** After the concurrency load holds its connections, before RSS is read. */
const HOLD_SETTLE_MS = 100;

/** Stops and exits still under way in the background; awaited at the end of each scenario. */
const backgroundWork: Promise<void>[] = [];

function log(message: string): void {
  process.stderr.write(`${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Start-up: options, lock, leftovers, tools.

const parsed = parseBenchArgs(process.argv.slice(2), SCENARIOS.map((scenario) => scenario.name));
if (typeof parsed === 'string') {
  log(`native-bench: ${parsed}`);
  process.exit(2);
}
const options: BenchOptions = parsed;
if (options.help) {
  console.log(HELP);
  process.exit(0);
}

const scenarios = selectScenarios(SCENARIOS, options);
const balancers = options.systems.filter((system): system is BalancerName => system !== 'direct');

mkdirSync(workRoot, { recursive: true });
takeLock();
const globalNotes: string[] = [];
const leftovers = findLeftovers(workRoot);
if (leftovers.length > 0) {
  killLeftovers(leftovers);
  globalNotes.push(`Killed ${leftovers.length} leftover process(es) of an earlier, interrupted run before starting.`);
  log(`native-bench: killed ${leftovers.length} leftover process(es) of an earlier run`);
}
for (const entry of readdirSync(workRoot)) if (entry.startsWith('run-')) rmSync(join(workRoot, entry), { recursive: true, force: true });
const workDir = join(workRoot, `run-${Date.now()}`);
mkdirSync(workDir, { recursive: true });

const neededBinaries = new Set<string>();
for (const scenario of scenarios) {
  const upstreamBinary = planUpstream(scenario.upstream, { host: LOOPBACK, port: 1 }, 1024, workDir, helpers).binary;
  if (!upstreamBinary.startsWith('/')) neededBinaries.add(upstreamBinary);
  // Only the program name matters here; the settings are placeholders.
  const placeholder = { host: LOOPBACK, port: 1 };
  const settings = { durationSec: 1, udpSeconds: 1, udpWarmupMs: 0, upstream: placeholder, connections: 1, workDir, benchDir, nodePath: process.execPath };
  const program = scenario.load.command(placeholder, settings)[0];
  if (!program.startsWith('/')) neededBinaries.add(program);
}
for (const balancer of balancers) if (balancer !== 'switchyard') neededBinaries.add(balancer);
const tools = ensureTools([...neededBinaries], balancers.includes('nginx'));
if (tools !== true) {
  log(tools);
  releaseLock();
  process.exit(2);
}

const nofile = hardNofileLimit();
const cores = availableParallelism();
const pin = options.pin && cores >= 2 && hasBinary('taskset');
const registry = new ProcessRegistry({ nofile, canPin: pin });
const stream = balancers.includes('nginx') ? nginxStream() : { builtIn: true as const };
const environment: BalancerEnvironment = {
  repoRoot,
  nodePath: process.execPath,
  switchyardUnavailable: existsSync(join(repoRoot, 'src', 'cli.ts')) ? undefined : 'src/cli.ts missing',
};

// The concurrency target, capped so that a balancer's two descriptors per connection fit.
const connectionCap = Math.max(100, Math.floor((connectionCapacity(nofile) - 50) / 100) * 100);
const connections = Math.min(options.connections, connectionCap);

// ---------------------------------------------------------------------------------------------
// Cleanup on every way out.

let stopping = false;
async function shutdown(code: number, reason: string): Promise<never> {
  if (!stopping) {
    stopping = true;
    log(`native-bench: ${reason}; stopping ${registry.livePids().length} process(es)`);
    await registry.stopAll();
  }
  releaseLock();
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(130, 'interrupted (SIGINT)'));
process.on('SIGTERM', () => void shutdown(143, 'terminated (SIGTERM)'));
process.on('uncaughtException', (err) => {
  log(`native-bench: ${err.stack ?? err.message}`);
  void shutdown(1, 'crashed');
});
process.on('unhandledRejection', (err) => {
  log(`native-bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  void shutdown(1, 'crashed');
});
// Nothing asynchronous runs in 'exit': SIGKILL whatever is still tracked.
process.on('exit', () => {
  registry.killAllNow();
  releaseLock();
});

// ---------------------------------------------------------------------------------------------
// Main.

const results: ScenarioResult[] = [];
// Other busy processes make runs noisy; the report says how busy the machine was.
const loadAtStart = loadavg()[0];
await main();

async function main(): Promise<void> {
  const placement = pin
    ? `balancers on CPU ${BALANCER_CPU}; load generators and upstreams on CPU ${LOAD_CPU} (taskset). Each balancer has a core to itself; the direct row is what the load side alone reaches on its core, the ceiling.`
    : `no pinning (${options.pin ? (cores < 2 ? 'fewer than 2 cores' : 'taskset not found') : '--no-pin'}): the scheduler places balancer, load and upstream.`;
  const holds = scenarios.some((scenario) => scenario.load.holdUntilSampled);
  const udp = scenarios.some((scenario) => scenario.listener === 'udp');
  const mode =
    `${options.quick ? 'quick' : 'full'}: ${options.rounds} rounds, ${options.durationSec} s per wrk/iperf3 run` +
    `${udp ? `, ${options.udpSeconds} s measured per UDP run after ${options.udpWarmupMs} ms of warm-up` : ''}` +
    `${holds ? `, ${formatNumber(connections, 0)} held connections` : ''}; systems ${options.systems.join(', ')}` +
    `${options.profile ? '; Switchyard under --cpu-prof (its numbers include the profiler)' : ''}`;
  if (options.profile) {
    rmSync(profileDir, { recursive: true, force: true });
    mkdirSync(profileDir, { recursive: true });
  }
  log(`native-bench: ${mode}`);
  log(`native-bench: ${placement}`);
  log(`native-bench: work dir ${workDir}`);

  const upstreams = new Map<UpstreamKind, RunningUpstream | string>();
  const kinds = [...new Set(scenarios.map((scenario) => scenario.upstream))];
  await Promise.all(kinds.map(async (kind) => upstreams.set(kind, await startUpstream(kind))));

  // Every balancer process of the invocation starts here, in parallel, before anything is
  // measured: start-ups never fall inside the measured sequence, and they overlap. Scenarios
  // with the same listener protocol and upstream share one set (their configs would be
  // identical); a scenario that needs a fresh process per run gets one set per round. Idle
  // balancers waiting for their turn use no CPU.
  const plans = new Map<Scenario, Map<BalancerName, BalancerSlot>[]>();
  const sharedSets = new Map<string, Map<BalancerName, BalancerSlot>>();
  for (const scenario of scenarios) {
    const upstream = upstreams.get(scenario.upstream);
    if (typeof upstream !== 'object') continue;
    if (scenario.freshBalancerPerRun) {
      const sets: Map<BalancerName, BalancerSlot>[] = [];
      for (let round = 1; round <= options.rounds; round++) {
        sets.push(await createSlots(`${scenario.name}-r${round}`, scenario, upstream));
      }
      plans.set(scenario, sets);
    } else {
      const key = balancerSetKey(scenario);
      if (!sharedSets.has(key)) sharedSets.set(key, await createSlots(key.replace(/[^a-z0-9]+/g, '-').replace(/-+$/, ''), scenario, upstream));
      plans.set(scenario, [sharedSets.get(key)!]);
    }
  }
  const allSets = [...new Set([...plans.values()].flat())];
  await Promise.all(allSets.map((set) => startPending(set, [...plans.values()].some((sets) => sets[0] === set) ? 1 : 2)));
  const startedCount = allSets.reduce((sum, set) => sum + [...set.values()].filter((slot) => slot.running).length, 0);
  log(`native-bench: ${startedCount} balancer process(es) started; measuring from ${(performance.now() / 1000).toFixed(1)} s`);

  for (const [index, scenario] of scenarios.entries()) {
    if (stopping) return;
    const sets = plans.get(scenario) ?? [];
    const upstream = upstreams.get(scenario.upstream) ?? 'no upstream';
    results.push(await runScenario(scenario, typeof upstream === 'string' ? upstream : upstream.endpoint, sets));
    // Stop the sets no later scenario uses.
    const later = new Set(scenarios.slice(index + 1).flatMap((next) => plans.get(next) ?? []));
    await Promise.all(sets.filter((set) => !later.has(set)).flatMap((set) => [...set.values()].map((slot) => stopBalancer(slot))));
  }

  if (stopping) return;
  await registry.stopAll();
  await sleep(100);
  const stray = findLeftovers(workRoot);
  if (stray.length > 0) {
    killLeftovers(stray);
    globalNotes.push(`After the run ${stray.length} process(es) were still alive and were killed: pids ${stray.join(', ')}.`);
  } else {
    globalNotes.push('No stray processes after the run (checked /proc for anything started under the work dir).');
  }

  const profiles = options.profile ? summarizeProfiles() : [];

  globalNotes.push(
    `1-minute load average ${loadAtStart.toFixed(2)} at the start, ${loadavg()[0].toFixed(2)} at the end (the harness itself keeps about 1–2 busy while it runs; more means other processes competed).`,
  );
  // performance.now() counts from the start of this process.
  const elapsedSec = performance.now() / 1000;
  const date = localDate();
  const input = {
    date,
    mode,
    placement,
    machine: describeMachine(process.version),
    results,
    notes: globalNotes,
    elapsedSec,
  };
  const markdown = renderMarkdown(input) + (profiles.length > 0 ? `\n## Switchyard CPU profile (--profile)\n\n${profiles.join('\n')}` : '');
  const svg = renderRatioSvg(input);
  mkdirSync(resultsDir, { recursive: true });
  // <date>-all.md and <date>-ratios.svg for a run of every scenario; a partial run (--only)
  // names its scenarios in both, and a quick run adds -quick, so neither overwrites a full run.
  const scope = options.only.length === 0 ? 'all' : options.only.join('+');
  const suffix = options.quick ? '-quick' : '';
  const mdFile = join(resultsDir, `${date}-${scope}${suffix}.md`);
  const svgFile = join(resultsDir, `${date}-${scope === 'all' ? '' : `${scope}-`}ratios${suffix}.svg`);
  for (const [file, text] of [
    [mdFile, markdown],
    [svgFile, svg],
    [join(resultsDir, 'latest.md'), markdown],
    [join(resultsDir, 'latest.svg'), svg],
  ] as const) {
    writeFileSync(file, text);
  }
  process.stdout.write(markdown);
  log(`native-bench: wrote ${mdFile} and ${svgFile} (also latest.md, latest.svg) in ${elapsedSec.toFixed(1)} s`);
  rmSync(workDir, { recursive: true, force: true });
  releaseLock();
  process.exit(0);
}

/** A started upstream: the address direct runs use, and the addresses balancers take turns on. */
interface RunningUpstream {
  endpoint: Endpoint;
  hosts: string[];
  nextHost: number;
}

/**
 * Starts the shared upstream of `kind` on CPU LOAD_CPU; returns it or why it failed. An
 * upstream the load hosts (udp-echo) only gets its port reserved.
 */
async function startUpstream(kind: UpstreamKind): Promise<RunningUpstream | string> {
  const probe = planUpstream(kind, { host: LOOPBACK, port: 1 }, nofile, workDir, helpers);
  const port = probe.transports.includes('udp') ? await freeUdpPort(probe.transports.includes('tcp')) : await freePortOn(probe.aliases);
  const endpoint = { host: LOOPBACK, port };
  const plan = planUpstream(kind, endpoint, nofile, workDir, helpers);
  if (plan.hostedByLoad) {
    log(`native-bench: upstream ${kind} on ${endpoint.host}:${endpoint.port} (hosted by each load process)`);
    return { endpoint, hosts: [endpoint.host], nextHost: 0 };
  }
  if (plan.configFile !== undefined && plan.configText !== undefined) writeFileSync(plan.configFile, plan.configText);
  const launched = registry.launch({ name: `upstream ${kind}`, argv: plan.argv, cwd: plan.cwd, cpus: LOAD_CPU, logFile: plan.logFile });
  // Every upstream that runs as a process accepts TCP once ready (udp-sink: its counters).
  const ready = await waitForPort(endpoint, 5_000, launched, plan.logFile);
  if (ready !== true) {
    log(`native-bench: upstream ${kind} failed: ${ready}`);
    return `upstream ${kind} failed to start: ${ready}`;
  }
  log(`native-bench: upstream ${kind} on ${endpoint.host}:${endpoint.port} (pid ${launched.pid})`);
  return { endpoint, hosts: plan.aliases.length > 0 ? plan.aliases : [endpoint.host], nextHost: 0 };
}

/** The upstream address for the next balancer set: the aliases in turn. */
function upstreamForBalancers(upstream: RunningUpstream): Endpoint {
  const host = upstream.hosts[upstream.nextHost++ % upstream.hosts.length];
  return { host, port: upstream.endpoint.port };
}

interface RunningBalancer {
  launched: Launched;
  listen: Endpoint;
  logFile: string;
}

/** Per-balancer state within a scenario: how to start it, and the running instance if any. */
interface BalancerSlot {
  name: BalancerName;
  setup: BalancerSetup;
  unavailable?: string;
  /** With `unavailable`: the balancer cannot do this at all (HAProxy and UDP). */
  notApplicable?: boolean;
  /** Why this round's start failed (fresh-per-run scenarios, rounds after the first). */
  startError?: string;
  running?: RunningBalancer;
}

/**
 * Runs every round of `scenario`. `roundSets` are its balancers, started in main: one set for
 * all rounds, or one per round when every run needs a fresh process.
 */
async function runScenario(scenario: Scenario, upstream: Endpoint | string, roundSets: Map<BalancerName, BalancerSlot>[]): Promise<ScenarioResult> {
  const systems = systemsForScenario(options.systems, scenario, options);
  const notes: string[] = [];
  const runs = new Map<SystemName, SystemRuns>(systems.map((system) => [system, { system, runs: [] }]));
  log(`\n== ${scenario.name}: ${scenario.title}`);

  if (typeof upstream === 'string') {
    for (const entry of runs.values()) entry.unavailable = upstream;
    return { scenario, systems: [...runs.values()], notes };
  }
  if (scenario.load.holdUntilSampled) {
    notes.push(
      connections < options.connections
        ? `${formatNumber(connections, 0)} connections instead of ${formatNumber(options.connections, 0)}: the hard open-files limit (ulimit -Hn) is ${formatNumber(nofile, 0)} and a balancer needs two descriptors per proxied connection.`
        : options.quick
          ? `Quick mode holds ${formatNumber(connections, 0)} connections (a full run holds ${formatNumber(10_000, 0)}, or what the fd limit allows).`
          : `${formatNumber(connections, 0)} connections held.`,
    );
  }

  // A balancer that could not start for the first round is not available for the scenario.
  for (const slot of roundSets[0]?.values() ?? []) {
    if (slot.unavailable === undefined) continue;
    const entry = runs.get(slot.name);
    if (entry) {
      entry.unavailable = slot.unavailable;
      entry.notApplicable = slot.notApplicable;
    }
    log(`   ${slot.name}: ${slot.notApplicable ? 'n/a' : 'not available'} (${slot.unavailable})`);
  }

  if (!options.quick && !scenario.freshBalancerPerRun) {
    for (const slot of roundSets[0]?.values() ?? []) {
      const running = slot.running;
      if (stopping || slot.unavailable !== undefined || running === undefined || !systems.includes(slot.name)) continue;
      const started = performance.now();
      const warm = await runLoad(scenario, running.listen, running.launched.pid, upstream, scenario.upstream, WARM_UP_RUN_SEC);
      const took = ((performance.now() - started) / 1000).toFixed(2);
      log(`   warm-up     ${slot.name.padEnd(10)} ${describeOutcome(scenario, warm)} (not recorded)  [${took} s]`);
    }
  }

  for (let round = 1; round <= options.rounds && !stopping; round++) {
    const slots = roundSets[Math.min(round, roundSets.length) - 1] ?? new Map<BalancerName, BalancerSlot>();
    for (const system of systems) {
      if (stopping) break;
      const entry = runs.get(system)!;
      if (entry.unavailable !== undefined) continue;
      const slot = system === 'direct' ? undefined : slots.get(system);
      const runStarted = performance.now();
      const outcome = await runOnce(scenario, system, slot, upstream);
      entry.runs.push(outcome);
      // A used fresh balancer stops in the background: the next run measures memory, not CPU.
      if (slot?.running && scenario.freshBalancerPerRun) backgroundWork.push(stopBalancer(slot));
      const took = ((performance.now() - runStarted) / 1000).toFixed(2);
      log(`   round ${round}/${options.rounds} ${system.padEnd(10)} ${describeOutcome(scenario, outcome)}  [${took} s]`);
      if (!options.quick) await sleep(BETWEEN_RUNS_MS);
    }
  }

  await Promise.all(backgroundWork.splice(0));
  const result = { scenario, systems: [...runs.values()], notes };
  for (const row of scenarioRows(result)) {
    if (row.unavailable === undefined) {
      log(
        `   ${row.system.padEnd(10)} median ${formatNumber(row.primary?.median, scenario.primary.digits)} ${scenario.primary.label}, ${ratioLabel(scenario)} ${formatRatio(row.vsReference)}, ×direct ${formatRatio(row.vsDirect)}`,
      );
    }
  }
  return result;
}

/** Scenarios with equal keys share one set of balancer processes (their configs are identical). */
function balancerSetKey(scenario: Scenario): string {
  const udp = scenario.udpSession;
  const settings = udp === undefined ? '' : ` timeout ${udp.sessionTimeoutMs ?? 'default'} responses ${udp.responses ?? 'unlimited'}`;
  return `${scenario.listener} to ${scenario.upstream}${settings}`;
}

/**
 * One slot per balancer in --systems, each with its own free port and its own upstream address
 * (see HTTP_UPSTREAM_ALIASES); nothing started yet. A balancer that cannot proxy the
 * scenario's protocol at all is marked n/a.
 */
async function createSlots(tag: string, scenario: Scenario, upstream: RunningUpstream): Promise<Map<BalancerName, BalancerSlot>> {
  const slots = new Map<BalancerName, BalancerSlot>();
  const protocol = scenario.listener;
  for (const name of balancers) {
    const setup: BalancerSetup = {
      tag,
      protocol,
      listen: { host: LOOPBACK, port: protocol === 'udp' ? await freeUdpPort(false) : await freePort() },
      upstream: upstreamForBalancers(upstream),
      nofile,
      workDir,
      nginxStreamModule: 'module' in stream ? stream.module : undefined,
      udp: scenario.udpSession,
      nodeFlags: options.profile && name === 'switchyard' ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${tag}.cpuprofile`] : undefined,
    };
    const supported = balancerSupports(name, protocol);
    if (supported !== true) slots.set(name, { name, setup, unavailable: supported, notApplicable: true });
    else slots.set(name, { name, setup, unavailable: name === 'nginx' && 'missing' in stream ? stream.missing : undefined });
  }
  return slots;
}

/**
 * Starts, in parallel, every slot of `slots` that is available but not running. A set meant for
 * round 1 records a failure as `unavailable` (the system then sits the scenario out); a set for
 * a later round keeps it in `startError`, which fails that run only.
 */
async function startPending(slots: Map<BalancerName, BalancerSlot>, round: number): Promise<void> {
  await Promise.all(
    [...slots.values()]
      .filter((slot) => slot.unavailable === undefined && slot.running === undefined)
      .map(async (slot) => {
        const started = await startBalancer(slot);
        slot.startError = undefined;
        if (typeof started !== 'string') slot.running = started;
        else if (round === 1) slot.unavailable = started;
        else slot.startError = started;
      }),
  );
}

/**
 * One run of `scenario` against `system`, retried once when it fails (e.g. iperf3 "server
 * busy", a balancer that died). Before the retry the balancer is restarted if it needs to be
 * fresh or is no longer running.
 */
async function runOnce(scenario: Scenario, system: SystemName, slot: BalancerSlot | undefined, upstream: Endpoint): Promise<RunOutcome> {
  const first = await attempt(scenario, system, slot, upstream);
  if (first.ok || stopping) return first;
  await sleep(500);
  if (slot && (scenario.freshBalancerPerRun || slot.running === undefined || slot.running.launched.exit !== undefined)) {
    await stopBalancer(slot);
    const started = await startBalancer(slot);
    if (typeof started === 'string') return { ok: false, error: `${first.error}; restart failed: ${started}` };
    slot.running = started;
    slot.startError = undefined;
  }
  const second = await attempt(scenario, system, slot, upstream);
  return second.ok ? { ...second, warnings: [...second.warnings, `retried once after: ${first.error}`] } : second;
}

async function attempt(scenario: Scenario, system: SystemName, slot: BalancerSlot | undefined, upstream: Endpoint): Promise<RunOutcome> {
  if (system === 'direct') return runLoad(scenario, upstream, undefined, upstream, scenario.upstream);
  if (slot === undefined) return { ok: false, error: `${system} has no balancer slot` };
  if (slot.startError !== undefined) return { ok: false, error: slot.startError };
  const balancer = slot.running;
  if (balancer === undefined) return { ok: false, error: `${system} is not running` };
  if (balancer.launched.exit !== undefined) {
    return { ok: false, error: `${system} exited: ${outputTail(balancer.launched, balancer.logFile)}` };
  }
  return runLoad(scenario, balancer.listen, balancer.launched.pid, upstream, scenario.upstream);
}

async function stopBalancer(slot: BalancerSlot): Promise<void> {
  const running = slot.running;
  slot.running = undefined;
  if (running) await registry.stop(running.launched);
}

/** Starts the balancer of `slot` on BALANCER_CPU and waits until its listener accepts. */
async function startBalancer(slot: BalancerSlot): Promise<RunningBalancer | string> {
  const plan = planBalancer(slot.name, slot.setup, environment);
  if ('unavailable' in plan) return plan.unavailable;
  writeFileSync(plan.configFile, plan.configText);
  // Boots on any core (nothing is measured yet, and Node's start-up is the slowest part of the
  // whole preparation), then moves, threads and child processes alike, to its own core.
  const launched = registry.launch({ name: slot.name, argv: plan.argv, cwd: plan.cwd, logFile: plan.logFile });
  const wait = slot.setup.protocol === 'udp' ? waitForUdpBound : waitForPort;
  const ready = await wait(slot.setup.listen, slot.name === 'switchyard' ? 15_000 : 5_000, launched, plan.logFile);
  if (ready !== true) {
    await registry.stop(launched);
    return `failed to start: ${ready}`;
  }
  if (pin && !pinTree(launched.pid, BALANCER_CPU)) {
    await registry.stop(launched);
    return `could not pin it to CPU ${BALANCER_CPU} with taskset`;
  }
  await sleep(STARTUP_SETTLE_MS);
  return { launched, listen: slot.setup.listen, logFile: plan.logFile };
}

/**
 * Runs the scenario's load command against `target` on LOAD_CPU and parses its output. For a
 * load that holds steady state, reads the balancer's RSS before it starts and while it holds;
 * for one that marks its window, the balancer's CPU time over it.
 */
async function runLoad(
  scenario: Scenario,
  target: Endpoint,
  balancerPid: number | undefined,
  upstream: Endpoint,
  upstreamKind: UpstreamKind,
  /** Seconds for this run instead of --duration (the warm-up run). */
  seconds?: number,
): Promise<RunOutcome> {
  const settings = loadSettings(upstream);
  if (seconds !== undefined) {
    settings.durationSec = seconds;
    settings.udpSeconds = seconds;
  }
  const argv = scenario.load.command(target, settings);
  const probes: ProbeReadings = {};
  const hold = scenario.load.holdUntilSampled === true;
  const load = registry.launch({ name: argv[0], argv, cwd: workDir, cpus: LOAD_CPU, stdinPipe: hold });
  if (scenario.load.measuresWindow && balancerPid !== undefined) sampleCpuOverWindow(load, balancerPid, probes);
  const timeoutMs = hold ? 120_000 : Math.max(options.durationSec, options.udpSeconds + options.udpWarmupMs / 1000) * 1000 + 20_000;
  const timer = setTimeout(() => void registry.stop(load), timeoutMs);
  let exitInBackground = false;
  try {
    if (hold) {
      // The load boots meanwhile and waits for "go".
      if (balancerPid !== undefined) {
        await warmUp(target, upstreamKind);
        probes.rssBeforeBytes = treeRssBytes(balancerPid);
      }
      load.child.stdin?.write('go\n');
      while (load.exit === undefined && !/^READY /m.test(load.stdout) && !stopping) await sleep(10);
      if (load.exit === undefined && balancerPid !== undefined) {
        await sleep(HOLD_SETTLE_MS);
        probes.rssHeldBytes = treeRssBytes(balancerPid);
      }
      load.child.stdin?.end();
      // Everything the parser reads is there (READY and the readings): let the load close its
      // connections and exit while the next run starts (that run measures memory, not CPU).
      exitInBackground = load.exit === undefined && /^READY /m.test(load.stdout);
    }
    const exit = exitInBackground ? { code: 0, signal: null } : await load.exited;
    if (stopping) return { ok: false, error: 'interrupted' };
    const parsedOutput = scenario.load.parse(load.stdout, probes);
    if ('error' in parsedOutput) {
      const status = exit.code === 0 ? '' : ` (exit ${exit.signal ?? exit.code}: ${outputTail(load)})`;
      return { ok: false, error: `${parsedOutput.error}${status}` };
    }
    return { ok: true, metrics: parsedOutput.metrics, warnings: parsedOutput.warnings ?? [] };
  } finally {
    clearTimeout(timer);
    if (exitInBackground) {
      // Bounded: a load that has not exited 10 s after its stdin closed is stopped.
      backgroundWork.push(
        Promise.race([load.exited, sleep(10_000, { unref: true })]).then(() => registry.stop(load)),
      );
    } else {
      await registry.stop(load);
    }
  }
}

/**
 * A few connections through the balancer before its baseline RSS is read, so one-time costs
 * (lazy code paths, first buffers) are not charged to the held connections.
 */
async function warmUp(target: Endpoint, upstreamKind: UpstreamKind): Promise<void> {
  const request = upstreamKind === 'http' ? 'GET / HTTP/1.1\r\nHost: bench\r\n\r\n' : '';
  await Promise.all(
    Array.from(
      { length: 20 },
      () =>
        new Promise<void>((resolve) => {
          const socket = connect({ host: target.host, port: target.port });
          const done = () => {
            socket.destroy();
            resolve();
          };
          socket.setTimeout(2_000, done);
          socket.once('connect', () => (request ? socket.write(request) : done()));
          socket.once('data', done);
          socket.once('error', done);
          socket.once('close', done);
        }),
    ),
  );
  await sleep(20);
}

function describeOutcome(scenario: Scenario, outcome: RunOutcome): string {
  if (!outcome.ok) return `FAILED: ${outcome.error}`;
  const value = formatNumber(outcome.metrics[scenario.primary.key], scenario.primary.digits);
  const warnings = outcome.warnings.length > 0 ? `  (${outcome.warnings.join('; ')})` : '';
  return `${value} ${scenario.primary.label}${warnings}`;
}

/**
 * Reads the balancer's CPU time when the load prints `MEASURING` and again at `RESULT`, as
 * the lines arrive (no polling), into `probes` (total, and split into user and kernel).
 */
function sampleCpuOverWindow(load: Launched, balancerPid: number, probes: ProbeReadings): void {
  let seen = '';
  let start: number | undefined;
  let startSplit: { user: number; system: number } | undefined;
  const onData = (chunk: string) => {
    seen += chunk;
    if (start === undefined && /^MEASURING/m.test(seen)) {
      start = treeCpuSeconds(balancerPid);
      startSplit = treeUserSystemSeconds(balancerPid);
    }
    if (start !== undefined && /^RESULT /m.test(seen)) {
      const end = treeCpuSeconds(balancerPid);
      const endSplit = treeUserSystemSeconds(balancerPid);
      if (end !== undefined) probes.cpuSeconds = end - start;
      if (startSplit !== undefined && endSplit !== undefined) {
        probes.userSeconds = endSplit.user - startSplit.user;
        probes.systemSeconds = endSplit.system - startSplit.system;
      }
      load.child.stdout?.off('data', onData);
    }
  };
  load.child.stdout?.on('data', onData);
}

function loadSettings(upstream: Endpoint): LoadSettings {
  return {
    durationSec: options.durationSec,
    udpSeconds: options.udpSeconds,
    udpWarmupMs: options.udpWarmupMs,
    upstream,
    connections,
    workDir,
    benchDir,
    nodePath: process.execPath,
  };
}

/**
 * The top self-time functions of every profile Switchyard wrote under --profile, as markdown
 * sections (also printed to stderr). A profile that cannot be read is named with the reason.
 */
function summarizeProfiles(): string[] {
  const sections: string[] = [];
  let files: string[] = [];
  try {
    files = readdirSync(profileDir).filter((file) => file.endsWith('.cpuprofile')).sort();
  } catch {
    // No directory: nothing was profiled.
  }
  if (files.length === 0) sections.push('No profile was written (did Switchyard run and exit normally?).\n');
  for (const file of files) {
    const path = join(profileDir, file);
    let summary: ReturnType<typeof summarizeCpuProfile>;
    try {
      summary = summarizeCpuProfile(JSON.parse(readFileSync(path, 'utf8')), 25, `file://${repoRoot}`);
    } catch (err) {
      summary = `cannot read: ${(err as Error).message}`;
    }
    const title = `${file.replace(/\.cpuprofile$/, '')} (${path})`;
    const section = typeof summary === 'string' ? `### ${title}\n\n${summary}\n` : renderProfileSummary(title, summary);
    sections.push(section);
    log(`\n${section}`);
  }
  return sections;
}

/** A port that was free on 127.0.0.1 a moment ago (the kernel picks it). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * A UDP port that was free on 127.0.0.1 a moment ago (the kernel picks it), and, with
 * `alsoTcp`, free for TCP too (udp-sink serves its counters on the same port).
 */
async function freeUdpPort(alsoTcp: boolean): Promise<number> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await new Promise<number>((resolve, reject) => {
      const socket = createSocket('udp4');
      socket.once('error', reject);
      socket.bind(0, LOOPBACK, () => {
        const { port: bound } = socket.address();
        socket.close(() => resolve(bound));
      });
    });
    if (!alsoTcp || (await canBind(LOOPBACK, port))) return port;
  }
  throw new Error('no port free for both UDP and TCP on 127.0.0.1 after 10 tries');
}

/** Whether `port` can be bound on `host` right now. */
function canBind(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** A port free on 127.0.0.1 and on every one of `aliases` (for an upstream listening on all). */
async function freePortOn(aliases: readonly string[]): Promise<number> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freePort();
    const free = await Promise.all(aliases.map((host) => canBind(host, port)));
    if (free.every(Boolean)) return port;
  }
  return freePort();
}

function localDate(): string {
  const now = new Date();
  return `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, '0')}-${String(now.getDate()).padStart(2, '0')}`;
}

/**
 * One bench at a time: two would disturb each other's numbers, and each would take the other's
 * processes for leftovers. A lock whose pid is no longer a running bench is stale and taken over.
 */
function takeLock(): void {
  if (existsSync(lockFile)) {
    const pid = Number(readFileSync(lockFile, 'utf8').trim());
    let alive = false;
    try {
      alive = pid > 0 && pid !== process.pid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('native-bench/run.ts');
    } catch {
      alive = false;
    }
    if (alive) {
      log(`native-bench: another bench is running (pid ${pid}); wait for it or stop it first.`);
      process.exit(2);
    }
  }
  writeFileSync(lockFile, String(process.pid));
}

function releaseLock(): void {
  try {
    if (readFileSync(lockFile, 'utf8').trim() === String(process.pid)) unlinkSync(lockFile);
  } catch {
    // Already gone.
  }
}
