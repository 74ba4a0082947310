/**
 * Every process the harness starts goes through here, so that every one of them is stopped:
 * after each use, at the end, on Ctrl-C / SIGTERM, on a crash, and (for leftovers of a harness
 * that was SIGKILLed) at the start of the next run.
 *
 * Each child is spawned `detached`, i.e. as the leader of its own process group, and is
 * stopped by signalling the whole group (`kill(-pgid)`), which also reaches nginx's worker
 * and anything else a child forks. Children start through a tiny `sh` wrapper that raises the
 * soft open-files limit to the hard limit and applies the CPU placement (`taskset -c`), then
 * `exec`s the real program, so the pid we hold is the program's own pid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { basename } from 'node:path';
import { parseStatCpuTicks, parseStatUserSystemTicks, parseVmRss, udpBound } from './parse.ts';
import type { Endpoint } from './types.ts';

export interface LaunchSpec {
  /** Short name for messages, e.g. `haproxy`. */
  name: string;
  argv: readonly string[];
  cwd: string;
  /** CPU list for `taskset -c` (e.g. `1`); undefined leaves placement to the scheduler. */
  cpus?: string;
  /** Append stdout and stderr here (servers); otherwise they are captured in memory. */
  logFile?: string;
  /** Keep stdin open as a pipe (for loads that wait for it to close). */
  stdinPipe?: boolean;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A started process. `stdout`/`stderr` grow as output arrives (when not logging to a file). */
export interface Launched {
  name: string;
  pid: number;
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exited: Promise<Exit>;
  /** Set once the process has exited. */
  exit?: Exit;
}

/** Settings fixed for the whole invocation. */
export interface LaunchPolicy {
  /** Soft RLIMIT_NOFILE children get (the hard limit). */
  nofile: number;
  /** Whether `taskset` exists; without it placement is skipped. */
  canPin: boolean;
}

/** How long a stopped group gets to exit on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 2_000;
/** Cap on captured output per stream, so a chatty child cannot grow the harness unbounded. */
const CAPTURE_LIMIT = 4 * 1024 * 1024;

export class ProcessRegistry {
  readonly policy: LaunchPolicy;
  private readonly live = new Set<Launched>();

  constructor(policy: LaunchPolicy) {
    this.policy = policy;
  }

  /**
   * Starts `spec` in its own process group and tracks it until it exits. Never throws for a
   * missing program: the spawn error shows up as an exit with code 127 and a stderr line.
   */
  launch(spec: LaunchSpec): Launched {
    const placement = spec.cpus !== undefined && this.policy.canPin ? ['taskset', '-c', spec.cpus] : [];
    // $1 is the limit; `shift` leaves the real command in "$@". A failing ulimit is not fatal:
    // the child then runs with the inherited limit, and the concurrency scenario reports how
    // many connections actually opened.
    const argv = ['-c', 'ulimit -S -n "$1" 2>/dev/null; shift; exec "$@"', 'sh', String(this.policy.nofile), ...placement, ...spec.argv];
    const logFd = spec.logFile === undefined ? undefined : openSync(spec.logFile, 'a');
    const output = logFd === undefined ? 'pipe' : logFd;
    const child = spawn('/bin/sh', argv, {
      cwd: spec.cwd,
      detached: true,
      stdio: [spec.stdinPipe ? 'pipe' : 'ignore', output, output],
    });
    if (logFd !== undefined) closeSync(logFd);

    const launched: Launched = {
      name: spec.name,
      pid: child.pid ?? -1,
      child,
      stdout: '',
      stderr: '',
      exited: Promise.resolve({ code: null, signal: null }),
    };
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      if (launched.stdout.length < CAPTURE_LIMIT) launched.stdout += chunk;
    });
    child.stderr?.on('data', (chunk: string) => {
      if (launched.stderr.length < CAPTURE_LIMIT) launched.stderr += chunk;
    });
    // A load that exits before we close its stdin makes writes fail with EPIPE; that is not an error here.
    child.stdin?.on('error', () => {});
    launched.exited = new Promise<Exit>((resolve) => {
      child.once('error', (err) => {
        launched.stderr += `\n${spec.name}: ${err.message}`;
        launched.exit = { code: 127, signal: null };
        this.live.delete(launched);
        resolve(launched.exit);
      });
      child.once('close', (code, signal) => {
        launched.exit = { code, signal };
        this.live.delete(launched);
        resolve(launched.exit);
      });
    });
    this.live.add(launched);
    return launched;
  }

  /**
   * Stops `launched`'s whole process group: SIGTERM, then SIGKILL after the grace period (or at
   * once when the leader has already gone, to catch group members it left behind).
   * Resolves when the leader has exited. Safe to call more than once.
   */
  async stop(launched: Launched): Promise<void> {
    if (launched.exit === undefined) {
      signalGroup(launched.pid, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(launched.pid, 'SIGKILL'), STOP_GRACE_MS);
      await launched.exited;
      clearTimeout(timer);
    }
    signalGroup(launched.pid, 'SIGKILL');
  }

  /** Stops every tracked process (in parallel). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.live].map((launched) => this.stop(launched)));
  }

  /**
   * Last resort for `process.on('exit')`, where nothing asynchronous runs: SIGKILL to every
   * tracked group, synchronously.
   */
  killAllNow(): void {
    for (const launched of this.live) signalGroup(launched.pid, 'SIGKILL');
  }

  /** Pids of tracked processes that are still running. */
  livePids(): number[] {
    return [...this.live].map((launched) => launched.pid);
  }
}

/** Sends `signal` to the process group led by `pid`; a group that is gone already is fine. */
function signalGroup(pid: number, signal: NodeJS.Signals): void {
  if (pid <= 0) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the whole group has exited.
  }
}

/**
 * Resolves once a TCP connect to `endpoint` succeeds, or with a reason once `timeoutMs` passes
 * or `launched` exits first (the reason then carries the tail of its output or log).
 */
export async function waitForPort(endpoint: Endpoint, timeoutMs: number, launched: Launched, logFile?: string): Promise<true | string> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (launched.exit !== undefined) {
      return `${launched.name} exited (${launched.exit.signal ?? `code ${launched.exit.code}`}) before listening: ${outputTail(launched, logFile)}`;
    }
    if (await canConnect(endpoint)) return true;
    await sleep(25);
  }
  return `${launched.name} did not accept connections on ${endpoint.host}:${endpoint.port} within ${timeoutMs} ms: ${outputTail(launched, logFile)}`;
}

/**
 * Resolves once a UDP socket is bound to `endpoint` (as /proc/net/udp lists it), or with a
 * reason once `timeoutMs` passes or `launched` exits first. Readiness without sending a
 * datagram: nothing is created in the balancer (no session) and nothing needs to answer.
 */
export async function waitForUdpBound(endpoint: Endpoint, timeoutMs: number, launched: Launched, logFile?: string): Promise<true | string> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    if (launched.exit !== undefined) {
      return `${launched.name} exited (${launched.exit.signal ?? `code ${launched.exit.code}`}) before binding: ${outputTail(launched, logFile)}`;
    }
    try {
      if (udpBound(readFileSync('/proc/net/udp', 'utf8'), endpoint.host, endpoint.port)) return true;
    } catch {
      return 'cannot read /proc/net/udp to see whether it is bound';
    }
    await sleep(25);
  }
  return `${launched.name} did not bind udp ${endpoint.host}:${endpoint.port} within ${timeoutMs} ms: ${outputTail(launched, logFile)}`;
}

/** Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`; 100 on Linux). */
let clockTicks: number | undefined;
function ticksPerSecond(): number {
  if (clockTicks === undefined) {
    const text = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim() ?? '';
    clockTicks = /^\d+$/.test(text) ? Number(text) : 100;
  }
  return clockTicks;
}

/**
 * CPU time used so far by `pid` and all its descendants, in seconds: the sum over their
 * threads of /proc/<pid>/task/<tid>/schedstat (nanoseconds on the CPU), or where that is
 * missing, utime + stime from /proc/<pid>/stat (10 ms ticks). Undefined when `pid` is gone.
 */
export function treeCpuSeconds(pid: number): number | undefined {
  let seconds = 0;
  for (const member of processTree(pid)) {
    const own = processCpuSeconds(member);
    if (own === undefined && member === pid) return undefined;
    seconds += own ?? 0;
  }
  return seconds;
}

/**
 * User-space and kernel CPU time used so far by `pid` and its descendants, in seconds
 * (utime and stime of /proc/<pid>/stat, 10 ms ticks). Undefined when `pid` is gone.
 */
export function treeUserSystemSeconds(pid: number): { user: number; system: number } | undefined {
  let user = 0;
  let system = 0;
  for (const member of processTree(pid)) {
    let split: { user: number; system: number } | undefined;
    try {
      split = parseStatUserSystemTicks(readFileSync(`/proc/${member}/stat`, 'utf8'));
    } catch {
      split = undefined;
    }
    if (split === undefined && member === pid) return undefined;
    user += split?.user ?? 0;
    system += split?.system ?? 0;
  }
  return { user: user / ticksPerSecond(), system: system / ticksPerSecond() };
}

function processCpuSeconds(pid: number): number | undefined {
  try {
    let nanoseconds = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      nanoseconds += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]) || 0;
    }
    return nanoseconds / 1e9;
  } catch {
    // No schedstat (kernel without CONFIG_SCHED_INFO), or the process is exiting.
  }
  try {
    const ticks = parseStatCpuTicks(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return ticks === undefined ? undefined : ticks / ticksPerSecond();
  } catch {
    return undefined;
  }
}

function canConnect(endpoint: Endpoint): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: endpoint.host, port: endpoint.port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The last few lines a process printed (captured or in its log file), on one line. */
export function outputTail(launched: Launched, logFile?: string): string {
  let text = `${launched.stdout}\n${launched.stderr}`;
  if (logFile !== undefined) {
    try {
      text = readFileSync(logFile, 'utf8');
    } catch {
      // No log yet.
    }
  }
  const lines = text.trim().split('\n').filter((line) => line.trim().length > 0);
  return lines.length === 0 ? '(no output)' : lines.slice(-4).join(' | ').slice(0, 600);
}

/** Resolves after `ms`. With `unref`, the pending timer does not keep the process alive. */
export function sleep(ms: number, options: { unref?: boolean } = {}): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (options.unref) timer.unref();
  });
}

/**
 * Resident set size of `pid` plus all its descendants, in bytes (so nginx's master + worker
 * count as one system). Undefined when `pid` is gone.
 */
export function treeRssBytes(pid: number): number | undefined {
  const own = rssOf(pid);
  if (own === undefined) return undefined;
  let total = own;
  for (const child of childrenOf(pid)) total += treeRssBytes(child) ?? 0;
  return total;
}

function rssOf(pid: number): number | undefined {
  try {
    return parseVmRss(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}

/** `pid` and all its descendants. */
export function processTree(pid: number): number[] {
  return [pid, ...childrenOf(pid).flatMap((child) => processTree(child))];
}

/**
 * Moves every thread of `pid` and of its descendants to `cpus` (`taskset -a -p -c`). Used to
 * let a balancer boot on all cores and then confine it to its own. Returns false when any
 * process could not be moved.
 */
export function pinTree(pid: number, cpus: string): boolean {
  let ok = true;
  for (const member of processTree(pid)) {
    const result = spawnSync('taskset', ['-a', '-p', '-c', cpus, String(member)], { stdio: 'ignore' });
    if (result.status !== 0) ok = false;
  }
  return ok;
}

function childrenOf(pid: number): number[] {
  const children: number[] = [];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return children;
  }
  for (const task of tasks) {
    try {
      for (const id of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/)) {
        if (id) children.push(Number(id));
      }
    } catch {
      // The thread ended meanwhile.
    }
  }
  return children;
}

/** Programs the harness starts; a leftover must be one of them (never, say, an editor). */
const OUR_PROGRAMS = new Set(['haproxy', 'nginx', 'iperf3', 'wrk', 'node']);

/**
 * Pids of processes that belong to a harness run under `workRoot`: one of the programs the
 * harness starts whose command line mentions `workRoot` (every config, pidfile and `--tag` the
 * harness passes lives there) or whose working directory is inside it (nginx workers rename
 * their command line). Excludes this process.
 */
export function findLeftovers(workRoot: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    try {
      // The executable, not `comm`: Node 24 renames its main thread to "MainThread".
      if (!OUR_PROGRAMS.has(basename(readlinkSync(`/proc/${pid}/exe`)))) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.length === 0) continue; // zombie
      let cwd = '';
      try {
        cwd = readlinkSync(`/proc/${pid}/cwd`);
      } catch {
        // Not ours to inspect.
      }
      if (cmdline.includes(workRoot) || cwd.startsWith(workRoot)) found.push(pid);
    } catch {
      // Exited while we looked.
    }
  }
  return found;
}

/**
 * SIGKILLs each pid, and its process group when the group's leader is itself a leftover (the
 * harness starts every child as a group leader; a group led by anything else, such as a
 * shell, is never signalled).
 */
export function killLeftovers(pids: readonly number[]): void {
  const set = new Set(pids);
  for (const pid of pids) {
    try {
      // Field 5 of /proc/<pid>/stat is the process group; the comm field may contain spaces, so
      // count from the closing parenthesis.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const pgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      if (set.has(pgid)) signalGroup(pgid, 'SIGKILL');
    } catch {
      // Gone.
    }
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone.
    }
  }
}
