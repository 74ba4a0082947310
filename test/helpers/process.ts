import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Helpers for tests that drive Switchyard as a user would: the CLI as a real child process,
 * and external daemons (redis-server, nginx, haproxy) as real peers. Everything is bounded in
 * time, and every process started here is killed when the test process exits, even if a
 * test forgot its teardown.
 */

/** The repository root (where package.json lives). */
export const repoRoot: string = fileURLToPath(new URL('../../', import.meta.url));
/** The CLI entry point, run directly by Node 24's type stripping. */
export const cliPath: string = join(repoRoot, 'src', 'cli.ts');

/** Every child still running, with its stop signal; killed if the test process exits first. */
const live = new Map<ChildProcess, NodeJS.Signals>();
process.on('exit', () => {
  for (const [child, signal] of live) {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
  }
});

/**
 * The environment for children: the test's own, minus what the test runner injects for its
 * own children (coverage, loaders), so a child behaves as it would in a user's shell.
 */
export function childEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('TAP') || key.startsWith('_TAPJS') || key === 'NODE_OPTIONS' || key === 'NODE_V8_COVERAGE') continue;
    env[key] = value;
  }
  return { ...env, ...extra };
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * A child process whose stdout and stderr are collected as they arrive.
 *
 * `logs()` parses stdout as pino JSON lines (non-JSON lines are skipped). `waitForLog` and
 * `waitForText` resolve as soon as the output matches and reject on timeout or on exit
 * before a match, with the output so far in the message. `stop()` is safe to call any
 * number of times: its stopSignal (default SIGKILL) if still running, resolves once it has
 * exited.
 */
export class RunningProcess {
  readonly child: ChildProcess;
  readonly command: string;
  readonly startedAt = Date.now();
  stdout = '';
  stderr = '';
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  private readonly waiters = new Set<() => void>();
  private readonly parsedLogs: Array<Record<string, unknown>> = [];
  /** Where in `stdout` the next unparsed line starts. */
  private parsedUpTo = 0;

  /** How stop() ends it: SIGKILL unless the program needs a chance to stop its own children. */
  readonly stopSignal: NodeJS.Signals;

  constructor(command: string, args: readonly string[], options: SpawnOptions & { stopSignal?: NodeJS.Signals } = {}) {
    this.command = [command, ...args].join(' ');
    const { stopSignal, ...spawnOptions } = options;
    this.stopSignal = stopSignal ?? 'SIGKILL';
    // stdio defaults to pipes; a caller may hand over file descriptors instead (then that
    // stream is not collected).
    this.child = spawn(command, args, { env: childEnv(), ...spawnOptions, stdio: spawnOptions.stdio ?? ['pipe', 'pipe', 'pipe'] });
    live.set(this.child, this.stopSignal);
    this.child.stdout?.setEncoding('utf8');
    this.child.stderr?.setEncoding('utf8');
    this.child.stdout?.on('data', (text: string) => {
      this.stdout += text;
      this.notify();
    });
    this.child.stderr?.on('data', (text: string) => {
      this.stderr += text;
      this.notify();
    });
    this.child.stdin?.on('error', () => {});
    this.exited = new Promise<Exit>((resolve) => {
      const done = (exit: Exit) => {
        if (this.exit !== undefined) return;
        this.exit = exit;
        live.delete(this.child);
        this.notify();
        resolve(exit);
      };
      // 'close' waits for stdout/stderr to end, so the output is complete when it fires.
      this.child.on('close', (code, signal) => done({ code, signal }));
      this.child.on('error', (err) => {
        this.stderr += `\n[spawn error] ${err.message}\n`;
        done({ code: null, signal: null });
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Complete stdout lines that parse as JSON objects (Switchyard's pino log lines), in order.
   * Parsed incrementally, so polling it on every chunk stays cheap. Returns a copy.
   */
  logs(): Array<Record<string, unknown>> {
    let end: number;
    while ((end = this.stdout.indexOf('\n', this.parsedUpTo)) >= 0) {
      const line = this.stdout.slice(this.parsedUpTo, end);
      this.parsedUpTo = end + 1;
      if (!line.startsWith('{')) continue;
      try {
        this.parsedLogs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // Not JSON after all (e.g. a stray console line): not a log line.
      }
    }
    return this.parsedLogs.slice();
  }

  /** Resolves with the first log line matching `predicate`. */
  async waitForLog(predicate: (line: Record<string, unknown>) => boolean, timeoutMs = 10_000, what = 'a log line'): Promise<Record<string, unknown>> {
    let found: Record<string, unknown> | undefined;
    await this.waitUntil(() => (found = this.logs().find(predicate)) !== undefined, timeoutMs, what);
    return found!;
  }

  /** Resolves once `count` log lines match `predicate`; returns them. */
  async waitForLogs(predicate: (line: Record<string, unknown>) => boolean, count: number, timeoutMs = 10_000, what = 'log lines'): Promise<Array<Record<string, unknown>>> {
    let found: Array<Record<string, unknown>> = [];
    await this.waitUntil(() => (found = this.logs().filter(predicate)).length >= count, timeoutMs, `${count} × ${what}`);
    return found;
  }

  /** Resolves once stdout+stderr matches `pattern`. */
  async waitForText(pattern: RegExp, timeoutMs = 10_000): Promise<void> {
    await this.waitUntil(() => pattern.test(this.stdout) || pattern.test(this.stderr), timeoutMs, `output matching ${pattern}`);
  }

  /** Resolves with the exit status; SIGKILLs and rejects if it has not exited within `timeoutMs`. */
  async waitForExit(timeoutMs = 10_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`${this.command} did not exit within ${timeoutMs}ms\n${this.describeOutput()}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.exit === undefined) this.child.kill(signal);
  }

  /**
   * Ends the process with `signal` (default: its stopSignal) and waits for it, SIGKILLing it
   * after `timeoutMs`; never rejects.
   */
  async stop(signal: NodeJS.Signals = this.stopSignal, timeoutMs = 5_000): Promise<void> {
    if (this.exit !== undefined) return;
    this.child.kill(signal);
    await this.waitForExit(timeoutMs).catch(() => undefined);
  }

  /** The last few KB of stdout and stderr, for failure messages. */
  describeOutput(): string {
    const tail = (text: string) => (text.length > 4000 ? `...${text.slice(-4000)}` : text);
    return `--- stdout ---\n${tail(this.stdout)}\n--- stderr ---\n${tail(this.stderr)}`;
  }

  private waitUntil(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (condition()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const check = () => {
        if (condition()) {
          finish();
          resolve();
        } else if (this.exit !== undefined) {
          finish();
          reject(new Error(`${this.command} exited (${JSON.stringify(this.exit)}) before ${what}\n${this.describeOutput()}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out after ${timeoutMs}ms waiting for ${what} from ${this.command}\n${this.describeOutput()}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** Starts `command args` with output collected. The caller stops it (t.teardown(() => p.stop())). */
export function spawnProcess(command: string, args: readonly string[], options: SpawnOptions & { stopSignal?: NodeJS.Signals } = {}): RunningProcess {
  return new RunningProcess(command, args, options);
}

/** Runs Node 24 (this process's own binary) on `args` without the test runner's hooks. */
export function spawnNode(args: readonly string[], options: SpawnOptions = {}): RunningProcess {
  return new RunningProcess(process.execPath, args, { cwd: repoRoot, ...options });
}

/** `switchyard ARGS` as a child: `node src/cli.ts ARGS`. */
export function spawnCli(args: readonly string[], options: SpawnOptions = {}): RunningProcess {
  return spawnNode([cliPath, ...args], options);
}

export interface CompletedRun extends Exit {
  stdout: string;
  stderr: string;
  durationMs: number;
}

/** Runs a command to completion (SIGKILL and reject after `timeoutMs`). */
export async function runToExit(command: string, args: readonly string[], options: SpawnOptions & { timeoutMs?: number } = {}): Promise<CompletedRun> {
  const { timeoutMs = 15_000, ...spawnOptions } = options;
  const running = new RunningProcess(command, args, spawnOptions);
  running.child.stdin?.end();
  const exit = await running.waitForExit(timeoutMs);
  return { ...exit, stdout: running.stdout, stderr: running.stderr, durationMs: Date.now() - running.startedAt };
}

/** `switchyard ARGS` run to completion, e.g. `--help` or `--check`. */
export function runCli(args: readonly string[], timeoutMs = 15_000): Promise<CompletedRun> {
  return runToExit(process.execPath, [cliPath, ...args], { cwd: repoRoot, timeoutMs });
}

/** A bound listener as Switchyard's start line reports it. */
export interface BoundListener {
  name: string;
  host: string;
  port: number;
  /** The whole log line. */
  line: Record<string, unknown>;
}

/** Whether a log line is a listener's start line (`listener X (tcp) bound to A → pool P`). */
export function isBoundLine(line: Record<string, unknown>): boolean {
  return typeof line.msg === 'string' && line.msg.includes(' bound to ') && typeof line.listener === 'string';
}

/** Splits `127.0.0.1:80` / `[::1]:80` into host and port. */
export function splitAddress(address: string): { host: string; port: number } {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(address);
  if (!match) throw new Error(`not an address: ${address}`);
  return { host: match[1]!, port: Number(match[2]) };
}

/**
 * Waits until `proc` has logged the start line of `listeners` listeners (default 1) and
 * returns them by name. Rejects (with the output) if it exits first or after `timeoutMs`.
 */
export async function waitForListeners(proc: RunningProcess, listeners = 1, timeoutMs = 15_000): Promise<Map<string, BoundListener>> {
  const lines = await proc.waitForLogs(isBoundLine, listeners, timeoutMs, 'listener "bound to" lines');
  const bound = new Map<string, BoundListener>();
  for (const line of lines) {
    const { host, port } = splitAddress(String(line.address));
    bound.set(String(line.listener), { name: String(line.listener), host, port, line });
  }
  return bound;
}

/**
 * Starts the CLI on `configFile` and waits until every listener is bound.
 * @param listeners how many "bound to" lines to wait for (the config's listener count)
 */
export async function startCli(
  configFile: string,
  options: { listeners?: number; extraArgs?: string[]; timeoutMs?: number } = {},
): Promise<{ proc: RunningProcess; bound: Map<string, BoundListener> }> {
  const proc = spawnCli(['--config', configFile, ...(options.extraArgs ?? [])]);
  try {
    const bound = await waitForListeners(proc, options.listeners ?? 1, options.timeoutMs ?? 15_000);
    return { proc, bound };
  } catch (err) {
    await proc.stop();
    throw err;
  }
}

/**
 * The absolute path of an executable named `name` on PATH (plus the sbin directories, where
 * distributions put nginx and haproxy), or undefined when there is none. `skipDir` leaves
 * PATH entries out (e.g. node_modules/.bin, which npx puts first).
 */
export function findBinary(name: string, options: { skipDir?: (dir: string) => boolean } = {}): string | undefined {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '' && !(options.skipDir?.(dir) ?? false));
  for (const extra of ['/usr/local/sbin', '/usr/sbin', '/sbin']) if (!dirs.includes(extra)) dirs.push(extra);
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/**
 * A TCP port free on `host` right now (bound to port 0, then released). For configs of
 * external daemons, which need a port number up front; there is a small window in which
 * another process could take it, acceptable on a test machine.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Whether a TCP port can be bound on `host` right now. */
export function portIsFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/** Resolves when a TCP connect to host:port succeeds; rejects after `timeoutMs`. */
export async function waitForPort(port: number, host = '127.0.0.1', timeoutMs = 10_000, stillRunning: () => boolean = () => true): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect({ port, host });
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (!stillRunning()) throw new Error(`process exited before ${host}:${port} accepted connections`);
    if (Date.now() > deadline) throw new Error(`nothing accepted connections on ${host}:${port} within ${timeoutMs}ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Starts an external daemon in the foreground and waits (bounded) until it accepts TCP
 * connections on host:port. On failure the daemon is killed and the error carries its output.
 * `stopSignal`: how to stop it (default SIGKILL; nginx needs SIGTERM so its master ends its
 * workers).
 */
export async function startDaemon(
  command: string,
  args: readonly string[],
  options: { port: number; host?: string; timeoutMs?: number; cwd?: string; stopSignal?: NodeJS.Signals },
): Promise<RunningProcess> {
  const proc = spawnProcess(command, args, { cwd: options.cwd, stopSignal: options.stopSignal });
  try {
    await waitForPort(options.port, options.host ?? '127.0.0.1', options.timeoutMs ?? 10_000, () => proc.exit === undefined);
  } catch (err) {
    await proc.stop();
    throw new Error(`${proc.command}: ${(err as Error).message}\n${proc.describeOutput()}`);
  }
  return proc;
}

/**
 * A fresh directory under os.tmpdir(); `remove()` deletes it. `write(name, text)` creates a
 * file in it and returns its path.
 */
export function tempDir(prefix = 'switchyard-test-'): { path: string; write(name: string, content: string | Buffer): string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return {
    path,
    write(name, content) {
      const file = join(path, name);
      writeFileSync(file, content);
      return file;
    },
    remove() {
      rmSync(path, { recursive: true, force: true });
    },
  };
}
