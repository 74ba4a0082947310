/**
 * Command-line flags of `npm run bench -- ...`. Pure: argv in, options or an error sentence out.
 */
import { ALL_SYSTEMS, type SystemName } from './types.ts';

export interface BenchOptions {
  quick: boolean;
  rounds: number;
  durationSec: number;
  /** Seconds measured per UDP run (udp-client.ts takes fractions; `--duration` sets it too). */
  udpSeconds: number;
  /** Warm-up of each UDP request/reply run before its window, ms. */
  udpWarmupMs: number;
  /** Connections the concurrency scenario aims for (capped later by the fd limit). */
  connections: number;
  /** Scenario names to run; empty means all. */
  only: string[];
  systems: SystemName[];
  /** Pin the balancer and the load side to separate CPUs with taskset. */
  pin: boolean;
  /** Run Switchyard with `--cpu-prof` and summarise its profiles in the report. */
  profile: boolean;
  help: boolean;
}

/** Defaults: a full run takes about 16 minutes (UDP ~6 of them); `--quick` just under a minute. */
export const FULL_DEFAULTS = { rounds: 5, durationSec: 5, udpSeconds: 5, udpWarmupMs: 200, connections: 10_000 };
// Quick mode's 1,000 connections keep the concurrency scenario to ~1 s per run; wrk and iperf3
// take whole seconds only, so 4 timed scenarios × 4 systems × 3 rounds already cost 48 s.
// The UDP load takes fractions: quick mode runs udp-rr only (see Scenario.inQuick), 0.2 s
// windows after 50 ms of warm-up, about 3.5 s for its 9 runs.
export const QUICK_DEFAULTS = { rounds: 3, durationSec: 1, udpSeconds: 0.2, udpWarmupMs: 50, connections: 1_000 };

export const HELP = `Usage: npm run bench -- [options]

Runs the same load against the upstream directly, Switchyard, HAProxy and nginx (one worker or
thread each), interleaved round by round, and reports medians, spreads and ratios.

Options:
  --quick                 3 rounds, 1 s per run (UDP 0.2 s), 1,000 concurrency connections,
                          of the UDP scenarios udp-rr only, no direct runs of the bulk
                          scenarios (< 60 s in all)
  --rounds N              rounds (each runs every system once); at least 3 (default 5)
  --duration S            seconds per wrk/iperf3/UDP run, whole seconds (default 5)
  --connections N         connections the concurrency scenario holds (default 10000)
  --only a,b              scenarios to run (default all): tcp-keepalive, tcp-connect,
                          bulk-1, bulk-4, concurrency, udp-rr, udp-dns, udp-throughput,
                          udp-new-sessions
  --systems a,b           systems to run (default all): direct, switchyard, haproxy, nginx
  --no-pin                do not pin processes to CPUs with taskset
  --profile               run Switchyard with --cpu-prof (profiles in native-bench/.work/prof)
                          and add its top self-time functions to the report; its numbers
                          then include the profiler's cost
  --help                  this text

Results: native-bench/results/<date>-<scenario|all>.md and <date>-ratios.svg, copied to
latest.md / latest.svg.`;

/**
 * Parses `argv` (without node and script). `scenarioNames` are the valid `--only` values.
 * Returns the options, or a sentence naming the bad flag.
 */
export function parseBenchArgs(argv: readonly string[], scenarioNames: readonly string[]): BenchOptions | string {
  const quick = argv.includes('--quick');
  const defaults = quick ? QUICK_DEFAULTS : FULL_DEFAULTS;
  const options: BenchOptions = {
    quick,
    rounds: defaults.rounds,
    durationSec: defaults.durationSec,
    udpSeconds: defaults.udpSeconds,
    udpWarmupMs: defaults.udpWarmupMs,
    connections: defaults.connections,
    only: [],
    systems: [...ALL_SYSTEMS],
    pin: true,
    profile: false,
    help: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const [name, inlineValue] = flag.includes('=') ? [flag.slice(0, flag.indexOf('=')), flag.slice(flag.indexOf('=') + 1)] : [flag, undefined];
    const value = (): string | undefined => inlineValue ?? argv[++i];
    switch (name) {
      case '--quick':
        break;
      case '--help':
      case '-h':
        options.help = true;
        break;
      case '--no-pin':
        options.pin = false;
        break;
      case '--profile':
        options.profile = true;
        break;
      case '--rounds': {
        const rounds = Number(value());
        if (!Number.isInteger(rounds) || rounds < 3 || rounds > 100) return '--rounds needs a whole number from 3 to 100 (interleaving needs at least 3)';
        options.rounds = rounds;
        break;
      }
      case '--duration': {
        const seconds = Number(value());
        if (!Number.isInteger(seconds) || seconds < 1 || seconds > 300) return '--duration needs whole seconds from 1 to 300 (wrk and iperf3 take whole seconds)';
        options.durationSec = seconds;
        options.udpSeconds = seconds;
        break;
      }
      case '--connections': {
        const connections = Number(value());
        if (!Number.isInteger(connections) || connections < 1 || connections > 100_000) return '--connections needs a whole number from 1 to 100000';
        options.connections = connections;
        break;
      }
      case '--only': {
        const names = splitList(value());
        const unknown = names.filter((n) => !scenarioNames.includes(n));
        if (names.length === 0 || unknown.length > 0) return `--only: unknown scenario ${unknown.join(', ') || '(none given)'}; known: ${scenarioNames.join(', ')}`;
        options.only = names;
        break;
      }
      case '--systems': {
        const names = splitList(value());
        const unknown = names.filter((n) => !(ALL_SYSTEMS as readonly string[]).includes(n));
        if (names.length === 0 || unknown.length > 0) return `--systems: unknown system ${unknown.join(', ') || '(none given)'}; known: ${ALL_SYSTEMS.join(', ')}`;
        // Keep the canonical order so tables always read direct, switchyard, haproxy, nginx.
        options.systems = ALL_SYSTEMS.filter((system) => names.includes(system));
        break;
      }
      default:
        return `unknown option ${flag} (see --help)`;
    }
  }
  return options;
}

/**
 * The scenarios an invocation runs, in declaration order: those `--only` names, else all of
 * them, less (in quick mode) the ones marked `inQuick: false`.
 */
export function selectScenarios<S extends { name: string; inQuick?: boolean }>(all: readonly S[], options: Pick<BenchOptions, 'only' | 'quick'>): S[] {
  if (options.only.length > 0) return all.filter((scenario) => options.only.includes(scenario.name));
  return all.filter((scenario) => !options.quick || scenario.inQuick !== false);
}

function splitList(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0);
}

/**
 * The systems a scenario runs, in the invocation's order: the balancers always; `direct`
 * only when the scenario has a direct run, and in quick mode not where it is marked
 * `directInQuick: false`.
 */
export function systemsForScenario<T extends string>(
  systems: readonly T[],
  scenario: { includeDirect: boolean; directInQuick?: boolean },
  options: Pick<BenchOptions, 'quick'>,
): T[] {
  const withDirect = scenario.includeDirect && !(options.quick && scenario.directInQuick === false);
  return systems.filter((system) => system !== 'direct' || withDirect);
}
