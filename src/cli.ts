import { realpathSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig } from './config/load.ts';
import { SwitchyardError, describeError } from './core/errors.ts';
import { flushLogs, rootLogger } from './core/log.ts';
import { Switchyard } from './server.ts';

export const HELP = `Usage: switchyard --config FILE [--check] [--log-level LEVEL]

A TCP/UDP load balancer. The config file is YAML, or JSON when its name ends in .json.

Options:
  -c, --config FILE      config file to run (required)
      --check            validate the config and exit: 0 when valid, 1 listing every
                         problem with its key path; binds nothing
  -l, --log-level LEVEL  override log.level: trace | debug | info | warn | error
  -h, --help             show this help
  -v, --version          print the version

Signals:
  SIGTERM, SIGINT        stop accepting, let open connections finish for up to
                         shutdown.drainTimeout (default 10s), close the rest, exit 0;
                         a second signal closes everything at once
  SIGHUP                 logged and ignored (config reload is not implemented yet)

Exit codes: 0 ok, 1 invalid config or start failure (e.g. a port in use), 2 bad usage.
Docs: README.md (every config key), config/ (examples).`;

const LEVELS = new Set(['trace', 'debug', 'info', 'warn', 'error']);

/**
 * Runs the command line. Resolves with the exit code for --help/--check/errors; when the
 * balancer starts it runs until a signal and then exits the process itself.
 */
export async function runCli(argv: string[]): Promise<number> {
  let values: { config?: string; check?: boolean; 'log-level'?: string; help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        config: { type: 'string', short: 'c' },
        check: { type: 'boolean' },
        'log-level': { type: 'string', short: 'l' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`switchyard: ${describeError(err)}\n\n${HELP}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (values.version) {
    const { default: pkg } = await import('../package.json', { with: { type: 'json' } });
    process.stdout.write(`switchyard ${pkg.version} (node ${process.version})\n`);
    return 0;
  }
  if (values.config === undefined) {
    process.stderr.write(`switchyard: --config FILE is required\n\n${HELP}\n`);
    return 2;
  }
  const level = values['log-level'];
  if (level !== undefined && !LEVELS.has(level)) {
    process.stderr.write(`switchyard: --log-level must be one of trace, debug, info, warn, error (got "${level}")\n`);
    return 2;
  }

  let config;
  try {
    config = await loadConfig(values.config);
  } catch (err) {
    process.stderr.write(`switchyard: ${err instanceof ConfigError ? err.message : describeError(err)}\n`);
    return 1;
  }
  if (values.check) {
    const pools = Object.keys(config.pools).length;
    process.stdout.write(`${values.config}: valid (${config.listeners.length} listener${config.listeners.length === 1 ? '' : 's'}, ${pools} pool${pools === 1 ? '' : 's'})\n`);
    return 0;
  }

  rootLogger.level = level ?? config.log.level;
  // Signals are handled from before start, so one arriving while listeners bind still means
  // "stop gracefully", not death by signal.
  const lifecycle = new Lifecycle();
  let switchyard: Switchyard;
  try {
    switchyard = await Switchyard.start(config, { logger: rootLogger });
  } catch (err) {
    const code = err instanceof SwitchyardError ? err.code : 'SWY_START_FAILED';
    rootLogger.error({ module: 'server', code, err: describeError(err) }, 'start failed');
    await flushLogs();
    process.stderr.write(`switchyard: ${describeError(err)}\n`);
    return 1;
  }
  lifecycle.started(switchyard);
  return new Promise<number>(() => {
    // Runs until a signal; Lifecycle exits the process.
  });
}

/**
 * SIGTERM/SIGINT: graceful shutdown (drain), then exit 0; a second one closes everything at
 * once. SIGHUP is logged and ignored: config reload is not implemented yet, and a balancer
 * must not die because someone expected a reload (nginx and HAProxy reload on SIGHUP).
 */
class Lifecycle {
  private switchyard: Switchyard | undefined;
  private stopSignal: NodeJS.Signals | undefined;

  constructor() {
    process.on('SIGTERM', this.onStop);
    process.on('SIGINT', this.onStop);
    process.on('SIGHUP', () => rootLogger.warn({ module: 'server', signal: 'SIGHUP' }, 'SIGHUP ignored: config reload is not supported yet (restart to apply a new config)'));
  }

  started(switchyard: Switchyard): void {
    this.switchyard = switchyard;
    if (this.stopSignal !== undefined) this.shutdown(this.stopSignal);
  }

  private readonly onStop = (signal: NodeJS.Signals): void => {
    if (this.stopSignal !== undefined) {
      rootLogger.warn({ module: 'server', signal }, `${signal} again: closing everything now`);
      for (const listener of this.switchyard?.listeners ?? []) listener.close();
      void exitAfterFlush(0);
      return;
    }
    this.stopSignal = signal;
    rootLogger.info({ module: 'server', signal }, `${signal}: shutting down`);
    if (this.switchyard !== undefined) this.shutdown(signal);
  };

  private shutdown(signal: NodeJS.Signals): void {
    this.switchyard!.shutdown().then(
      () => exitAfterFlush(0),
      (err: unknown) => {
        rootLogger.error({ module: 'server', signal, err: describeError(err) }, 'shutdown failed');
        return exitAfterFlush(1);
      },
    );
  }
}

async function exitAfterFlush(code: number): Promise<never> {
  await flushLogs();
  process.exit(code);
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === import.meta.filename;
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  runCli(process.argv.slice(2)).then(exitAfterFlush);
}
