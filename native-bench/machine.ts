/**
 * What the harness needs from the machine (binaries, fd limit, CPUs) and what it records about
 * it in the report. Runs once at start-up, so synchronous child processes are fine here.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';

/** The Debian packages that provide everything the harness may need. */
export const APT_PACKAGES = ['haproxy', 'nginx', 'libnginx-mod-stream', 'wrk', 'iperf3'];
export const APT_COMMAND = `apt-get install -y ${APT_PACKAGES.join(' ')}`;

/** Where Debian's libnginx-mod-stream puts the module. */
const DEBIAN_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

/** True when `binary` is on PATH. */
export function hasBinary(binary: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1" >/dev/null', 'sh', binary]).status === 0;
}

/**
 * How this nginx gets its stream module: `{ builtIn: true }` when compiled in (`--with-stream`),
 * `{ module: path }` when the dynamic module file exists, `{ missing: reason }` otherwise.
 */
export function nginxStream(): { builtIn: true } | { module: string } | { missing: string } {
  const configure = spawnSync('nginx', ['-V'], { encoding: 'utf8' });
  const flags = `${configure.stdout ?? ''}${configure.stderr ?? ''}`;
  if (/--with-stream(\s|$)/.test(flags)) return { builtIn: true };
  if (existsSync(DEBIAN_STREAM_MODULE)) return { module: DEBIAN_STREAM_MODULE };
  return { missing: `nginx has no stream module (expected ${DEBIAN_STREAM_MODULE}, package libnginx-mod-stream)` };
}

/**
 * Makes sure `binaries` (and nginx's stream module when `needStream`) are present. As root,
 * installs what is missing with apt-get; otherwise, or when that fails, returns a message naming
 * what is missing and the command to run. Returns true when everything is there.
 */
export function ensureTools(binaries: readonly string[], needStream: boolean): true | string {
  const missing = () => {
    const list = binaries.filter((binary) => !hasBinary(binary));
    if (needStream && hasBinary('nginx') && 'missing' in nginxStream()) list.push('nginx stream module (libnginx-mod-stream)');
    return list;
  };
  let absent = missing();
  if (absent.length === 0) return true;
  if (process.getuid?.() === 0 && hasBinary('apt-get')) {
    console.error(`native-bench: missing ${absent.join(', ')}; running: ${APT_COMMAND}`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let install = spawnSync('apt-get', ['install', '-y', ...APT_PACKAGES], { stdio: ['ignore', 'inherit', 'inherit'], env });
    if (install.status !== 0) {
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'inherit', 'inherit'], env });
      install = spawnSync('apt-get', ['install', '-y', ...APT_PACKAGES], { stdio: ['ignore', 'inherit', 'inherit'], env });
    }
    absent = missing();
    if (absent.length === 0) return true;
    return `native-bench: still missing after apt-get: ${absent.join(', ')}`;
  }
  return `native-bench: missing ${absent.join(', ')}. Install them (as root) with:\n  sudo ${APT_COMMAND}`;
}

/**
 * The hard open-files limit (what children may raise their soft limit to), capped by the
 * kernel's fs.nr_open when the hard limit is `unlimited`.
 */
export function hardNofileLimit(): number {
  const text = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();
  if (/^\d+$/.test(text)) return Number(text);
  try {
    return Number(readFileSync('/proc/sys/fs/nr_open', 'utf8').trim()) || 1_048_576;
  } catch {
    return 1_048_576;
  }
}

/** First line a command prints (stdout or stderr), trimmed; `?` when it cannot run. */
function versionLine(binary: string, args: string[], pattern?: RegExp): string {
  try {
    const result = spawnSync(binary, args, { encoding: 'utf8', timeout: 5_000 });
    const text = `${result.stdout ?? ''}\n${result.stderr ?? ''}`.trim();
    const line = text.split('\n').find((l) => l.trim().length > 0) ?? '?';
    const match = pattern?.exec(line);
    return (match ? match[1] : line).trim();
  } catch {
    return '?';
  }
}

function cpuModel(): string {
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (match) return match[1].trim();
  } catch {
    // Not Linux; fall through.
  }
  return 'unknown';
}

/** The facts recorded at the top of every report, as label → value. */
export function describeMachine(nodeVersion: string): [string, string][] {
  let git = '?';
  try {
    git = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    // Benchmarks of uncommitted code say so.
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', 'src'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    if (dirty.length > 0) git += ' + uncommitted changes in src/';
  } catch {
    // Not a git checkout.
  }
  return [
    ['CPU', `${cpuModel()} × ${availableParallelism()} cores`],
    ['memory', `${Math.round(totalmem() / 1024 ** 3)} GiB`],
    ['kernel', `Linux ${release()}`],
    ['Node', nodeVersion],
    ['HAProxy', versionLine('haproxy', ['-v'], /^HAProxy version (\S+)/)],
    ['nginx', versionLine('nginx', ['-v'], /nginx\/(\S+)/)],
    ['wrk', versionLine('wrk', ['-v'], /^wrk (\S+)/)],
    ['iperf3', versionLine('iperf3', ['--version'], /^iperf (\S+)/)],
    ['Switchyard commit', git],
  ];
}
