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
  let switchyard: Switchyard;
  try {
    switchyard = await Switchyard.start(config, { logger: rootLogger });
  } catch (err) {
    const code = err instanceof SwitchyardError ? err.code : 'SWY_START_FAILED';
    rootLogger.error({ module: 'server', code, err: describeError(err) }, 'start failed');
    flushLogs();
    process.stderr.write(`switchyard: ${describeError(err)}\n`);
    return 1;
  }
  installSignalHandlers(switchyard);
  return new Promise<number>(() => {
    // Runs until a signal; the handlers exit the process.
  });
}

function installSignalHandlers(switchyard: Switchyard): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      rootLogger.warn({ module: 'server', signal }, `${signal} again: closing everything now`);
      for (const listener of switchyard.listeners) listener.close();
      flushLogs();
      process.exit(0);
    }
    stopping = true;
    rootLogger.info({ module: 'server', signal }, `${signal}: shutting down`);
    switchyard.shutdown().then(
      () => {
        flushLogs();
        process.exit(0);
      },
      (err: unknown) => {
        rootLogger.error({ module: 'server', err: describeError(err) }, 'shutdown failed');
        flushLogs();
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
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
  runCli(process.argv.slice(2)).then((code) => {
    flushLogs();
    process.exit(code);
  });
}
