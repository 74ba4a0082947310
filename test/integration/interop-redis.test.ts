import t from 'tap';
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { findBinary, freePort, runToExit, startCli, startDaemon, tempDir, type RunningProcess } from '../helpers/process.ts';

/**
 * Switchyard in front of real redis-server instances, driven by real redis tools
 * (redis-benchmark) and by a tiny RESP client written here: load, data integrity through
 * ip-hash, and failover when a server dies.
 */

const redisServer = findBinary('redis-server');
const redisBenchmark = findBinary('redis-benchmark');
const needServer = redisServer === undefined ? 'redis-server not found' : false;
const needBenchmark = needServer || (redisBenchmark === undefined ? 'redis-benchmark not found' : false);

const dir = tempDir('switchyard-redis-');
t.teardown(() => dir.remove());

// ---- a tiny RESP2 client ---------------------------------------------------------------------

class RespError {
  readonly message: string;
  constructor(message: string) {
    this.message = message;
  }
}

type RespValue = string | number | Buffer | null | RespError | RespValue[];

/** Parses one RESP2 value at `offset`; undefined when the buffer does not hold all of it yet. */
function parseResp(buffer: Buffer, offset: number): { value: RespValue; next: number } | undefined {
  if (offset >= buffer.length) return undefined;
  const lineEnd = buffer.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buffer[offset]!);
  const line = buffer.toString('latin1', offset + 1, lineEnd);
  const afterLine = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, next: afterLine };
    case '-':
      return { value: new RespError(line), next: afterLine };
    case ':':
      return { value: Number(line), next: afterLine };
    case '$': {
      const length = Number(line);
      if (length < 0) return { value: null, next: afterLine };
      if (buffer.length < afterLine + length + 2) return undefined;
      return { value: Buffer.from(buffer.subarray(afterLine, afterLine + length)), next: afterLine + length + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, next: afterLine };
      const items: RespValue[] = [];
      let next = afterLine;
      for (let i = 0; i < count; i++) {
        const item = parseResp(buffer, next);
        if (item === undefined) return undefined;
        items.push(item.value);
        next = item.next;
      }
      return { value: items, next };
    }
    default:
      throw new Error(`not RESP: type byte ${JSON.stringify(type)}`);
  }
}

function encodeCommand(args: ReadonlyArray<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const arg of args) {
    const bytes = typeof arg === 'string' ? Buffer.from(arg) : arg;
    parts.push(Buffer.from(`$${bytes.length}\r\n`), bytes, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/** One connection speaking RESP: commands are pipelined, replies matched in order. */
class RespClient {
  readonly socket: Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private readonly waiting: Array<{ resolve: (value: RespValue) => void; reject: (err: Error) => void }> = [];
  private failure: Error | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      let offset = 0;
      for (;;) {
        const parsed = parseResp(this.buffer, offset);
        if (parsed === undefined) break;
        offset = parsed.next;
        const waiter = this.waiting.shift();
        if (waiter === undefined) {
          this.fail(new Error('reply without a command'));
          return;
        }
        waiter.resolve(parsed.value);
      }
      this.buffer = this.buffer.subarray(offset);
    });
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => this.fail(new Error('connection closed')));
  }

  static connect(port: number, localAddress?: string, timeoutMs = 5_000): Promise<RespClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, localAddress, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error('connect timeout'));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        resolve(new RespClient(socket));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  command(...args: Array<string | Buffer>): Promise<RespValue> {
    return this.pipeline([args]).then((replies) => replies[0]!);
  }

  /** Sends every command in one write; resolves with the replies in order (bounded wait). */
  pipeline(commands: ReadonlyArray<ReadonlyArray<string | Buffer>>, timeoutMs = 10_000): Promise<RespValue[]> {
    if (this.failure) return Promise.reject(this.failure);
    const replies = commands.map(
      () =>
        new Promise<RespValue>((resolve, reject) => {
          this.waiting.push({ resolve, reject });
        }),
    );
    this.socket.write(Buffer.concat(commands.map(encodeCommand)));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no reply within ${timeoutMs}ms`)), timeoutMs);
    });
    return Promise.race([Promise.all(replies), timeout]).finally(() => clearTimeout(timer));
  }

  close(): void {
    this.socket.end();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const waiter of this.waiting.splice(0)) waiter.reject(err);
  }
}

/** One command on a fresh connection to 127.0.0.1:port. */
async function once(port: number, ...args: string[]): Promise<RespValue> {
  const client = await RespClient.connect(port);
  try {
    return await client.command(...args);
  } finally {
    client.close();
  }
}

/** A number from `INFO stats`, read directly from a redis server. */
async function infoStat(port: number, field: string): Promise<number> {
  const reply = await once(port, 'INFO', 'stats');
  const match = new RegExp(`^${field}:(\\d+)`, 'm').exec(String(reply));
  if (!match) throw new Error(`INFO stats has no ${field}`);
  return Number(match[1]);
}

// ---- fixtures ----------------------------------------------------------------------------------

interface Redis {
  port: number;
  proc: RunningProcess;
}

async function startRedis(t: { teardown(fn: () => unknown): void }, port?: number): Promise<Redis> {
  const chosen = port ?? (await freePort());
  const proc = await startDaemon(
    redisServer!,
    ['--port', String(chosen), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir.path, '--loglevel', 'warning'],
    { port: chosen, timeoutMs: 10_000 },
  );
  t.teardown(() => proc.stop());
  return { port: chosen, proc };
}

async function startSwitchyard(
  t: { teardown(fn: () => unknown): void },
  name: string,
  pool: Record<string, unknown>,
  extraArgs: string[] = [],
): Promise<{ proc: RunningProcess; port: number }> {
  const file = dir.write(
    `${name}.json`,
    JSON.stringify({
      shutdown: { drainTimeout: '1s' },
      listeners: [{ name: 'redis', protocol: 'tcp', bind: '127.0.0.1:0', pool: 'redis', timeouts: { connect: '1s' } }],
      pools: { redis: pool },
    }),
  );
  const { proc, bound } = await startCli(file, { extraArgs });
  t.teardown(() => proc.stop());
  return { proc, port: bound.get('redis')!.port };
}

function connectionLines(proc: RunningProcess): Array<Record<string, unknown>> {
  return proc.logs().filter((line) => line.msg === 'connection closed');
}

// ---- tests -------------------------------------------------------------------------------------

t.test('redis-benchmark through least-connections: succeeds and both servers work', { skip: needBenchmark }, async (t) => {
  const a = await startRedis(t);
  const b = await startRedis(t);
  const before = [await infoStat(a.port, 'total_commands_processed'), await infoStat(b.port, 'total_commands_processed')];
  const { proc, port } = await startSwitchyard(t, 'benchmark', {
    algorithm: 'least-connections',
    servers: [{ address: `127.0.0.1:${a.port}` }, { address: `127.0.0.1:${b.port}` }],
  });

  const startedAt = Date.now();
  const run = await runToExit(redisBenchmark!, ['-h', '127.0.0.1', '-p', String(port), '-n', '20000', '-c', '20', '-t', 'set,get,incr', '-q'], { timeoutMs: 90_000 });
  t.comment(`redis-benchmark took ${Date.now() - startedAt}ms:\n${run.stdout.replace(/.*\r/g, '').trim()}`);
  t.equal(run.code, 0, `redis-benchmark exits 0 (stderr: ${run.stderr.trim()})`);
  for (const test of ['SET', 'GET', 'INCR']) {
    t.match(run.stdout, new RegExp(`${test}: [\\d.]+ requests per second`), `reports ${test} requests per second`);
  }
  t.notMatch(run.stdout + run.stderr, /error|reset|refused/i, 'no errors reported');

  const after = [await infoStat(a.port, 'total_commands_processed'), await infoStat(b.port, 'total_commands_processed')];
  const processed = after.map((count, index) => count - before[index]!);
  t.comment(`commands processed: a=${processed[0]} b=${processed[1]}`);
  t.ok(processed[0]! + processed[1]! >= 60_000, 'all 60,000 requests reached a server');
  for (const [index, count] of processed.entries()) {
    t.ok(count >= 10_000, `server ${index === 0 ? 'a' : 'b'} took a real share (${count} of ${processed[0]! + processed[1]!})`);
  }
  // 20 connections per test, plus the one redis-benchmark uses to read the server's config.
  const lines = await proc.waitForLogs((line) => line.msg === 'connection closed', 60, 5_000, 'connection lines');
  t.ok(lines.length >= 60, `one log line per benchmark connection (${lines.length})`);
  t.notOk(lines.some((line) => line.end !== 'closed'), 'every connection ended cleanly');
});

t.test('data integrity: 1,000 keys SET and GET through ip-hash land on one server, intact', { skip: needServer }, async (t) => {
  const a = await startRedis(t);
  const b = await startRedis(t);
  // The health check speaks redis too: PING must answer +PONG.
  const { proc, port } = await startSwitchyard(
    t,
    'integrity',
    {
      algorithm: 'ip-hash',
      servers: [{ address: `127.0.0.1:${a.port}` }, { address: `127.0.0.1:${b.port}` }],
      healthCheck: { interval: '300ms', timeout: '200ms', rise: 1, fall: 1, send: 'PING\\r\\n', expect: '+PONG' },
    },
    ['--log-level', 'debug'],
  );

  // Binary-safe values: random bytes (CR, LF and NUL included), one large enough to need
  // backpressure on the way in and out.
  const values = new Map<string, Buffer>();
  for (let i = 0; i < 1_000; i++) {
    const value = i === 500 ? randomBytes(512 * 1024) : Buffer.concat([Buffer.from(`v${i}\r\n\0`), randomBytes(1 + (i % 97) * 13)]);
    values.set(`key:${i}`, value);
  }
  const keys = [...values.keys()];

  // SET over 4 connections, GET over 4 other connections: ip-hash sends every connection
  // from 127.0.0.1 to the same server, so the reads find the writes.
  const writers = await Promise.all([0, 1, 2, 3].map(() => RespClient.connect(port)));
  const setReplies = await Promise.all(writers.map((client, w) => client.pipeline(keys.filter((_key, i) => i % 4 === w).map((key) => ['SET', key, values.get(key)!]))));
  for (const client of writers) client.close();
  t.ok(setReplies.flat().every((reply) => reply === 'OK'), 'every SET answered OK');
  t.equal(setReplies.flat().length, 1_000);

  const readers = await Promise.all([0, 1, 2, 3].map(() => RespClient.connect(port)));
  const getReplies = await Promise.all(readers.map((client, r) => client.pipeline(keys.filter((_key, i) => i % 4 === (r + 1) % 4).map((key) => ['GET', key]))));
  for (const client of readers) client.close();
  let intact = 0;
  readers.forEach((_client, r) => {
    const readKeys = keys.filter((_key, i) => i % 4 === (r + 1) % 4);
    readKeys.forEach((key, index) => {
      const reply = getReplies[r]![index];
      if (Buffer.isBuffer(reply) && reply.equals(values.get(key)!)) intact++;
      else t.fail(`${key}: got ${Buffer.isBuffer(reply) ? `${reply.length} different bytes` : JSON.stringify(reply)}`);
    });
  });
  t.equal(intact, 1_000, 'all 1,000 values read back byte for byte');

  const sizes = [await once(a.port, 'DBSIZE'), await once(b.port, 'DBSIZE')];
  t.same([...sizes].sort(), [0, 1_000], `one server holds all 1,000 keys, the other none (${sizes.join(', ')})`);

  // Stickiness per client address, and different addresses spread over both servers.
  const sources = Array.from({ length: 20 }, (_value, i) => `127.0.0.${i + 2}`);
  for (const source of sources) {
    const writer = await RespClient.connect(port, source);
    t.equal(await writer.command('SET', `from:${source}`, source), 'OK');
    writer.close();
    const reader = await RespClient.connect(port, source);
    const got = await reader.command('GET', `from:${source}`);
    reader.close();
    if (String(got) !== source) t.fail(`${source}: a second connection did not find its key (got ${JSON.stringify(got)})`);
  }
  const perServer = [Number(await once(a.port, 'DBSIZE')) - Number(sizes[0]), Number(await once(b.port, 'DBSIZE')) - Number(sizes[1])];
  t.equal(perServer[0]! + perServer[1]!, 20, 'each of 20 client addresses wrote its key once');
  t.ok(perServer[0]! > 0 && perServer[1]! > 0, `20 client addresses spread over both servers (${perServer.join(' / ')})`);

  for (const server of [a, b]) {
    const label = `127.0.0.1:${server.port}`;
    const isProbe = (line: Record<string, unknown>) => line.module === 'health' && line.server === label && typeof line.pass === 'boolean';
    await proc.waitForLogs(isProbe, 3, 3_000, `probes of ${label}`).catch(() => undefined);
    const mine = proc.logs().filter(isProbe);
    t.ok(mine.length >= 3, `PING/+PONG probes ran against ${label} (${mine.length})`);
    t.same(mine.filter((line) => line.pass !== true).map((line) => line.detail), [], 'and all passed');
  }
});

t.test('failover: a killed redis-server is skipped by retries, and used again once restarted', { skip: needServer }, async (t) => {
  const a = await startRedis(t);
  let b = await startRedis(t);
  const bLabel = `127.0.0.1:${b.port}`;
  const { proc, port } = await startSwitchyard(t, 'failover', {
    algorithm: 'round-robin',
    retries: 2,
    passiveCheck: { failures: 1, cooldown: '1s' },
    servers: [{ address: `127.0.0.1:${a.port}` }, { address: bLabel }],
  });

  for (let i = 0; i < 4; i++) t.equal(await once(port, 'SET', `before:${i}`, 'x'), 'OK');
  t.equal(await once(b.port, 'DBSIZE'), 2, 'both servers take traffic while up');

  b.proc.kill('SIGKILL');
  await b.proc.waitForExit(5_000);

  const failures: string[] = [];
  for (let i = 0; i < 20; i++) {
    try {
      const client = await RespClient.connect(port);
      const [pong, set] = await client.pipeline([['PING'], ['SET', `during:${i}`, 'x']], 5_000);
      client.close();
      if (pong !== 'PONG' || set !== 'OK') failures.push(`#${i}: ${JSON.stringify([pong, set])}`);
    } catch (err) {
      failures.push(`#${i}: ${(err as Error).message}`);
    }
  }
  t.same(failures, [], 'all 20 new connections succeeded while a server was dead');
  t.equal(await once(a.port, 'EXISTS', ...Array.from({ length: 20 }, (_value, i) => `during:${i}`)), 20, 'the live server took them all');
  await proc.waitForLog((line) => line.server === bLabel && line.to === 'down', 3_000, `${bLabel} marked down`);
  await proc.waitForLogs((line) => line.msg === 'connection closed', 24, 3_000, 'connection lines');
  const retried = connectionLines(proc).filter((line) => Number(line.attempts) >= 2);
  t.ok(retried.length >= 1, `at least one connection was retried on the other server (${retried.length})`);
  t.ok(retried.every((line) => line.server === `127.0.0.1:${a.port}` && line.end === 'closed'), 'retried connections ended on the live server, cleanly');

  // Restart b on the same port; after the passive cooldown it gets traffic again.
  b = await startRedis(t, b.port);
  const deadline = Date.now() + 10_000;
  let i = 0;
  while (Number(await once(b.port, 'DBSIZE')) === 0 && Date.now() < deadline) {
    t.equal(await once(port, 'SET', `after:${i++}`, 'x'), 'OK');
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.ok(Number(await once(b.port, 'DBSIZE')) > 0, `the restarted server takes new connections again (after ${i} tries)`);
  t.ok(proc.logs().some((line) => line.server === bLabel && line.to === 'up'), 'its return is logged');
});
