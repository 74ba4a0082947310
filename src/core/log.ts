import { pino, type Logger, type LevelWithSilent, type DestinationStream } from 'pino';

export type { Logger };
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/**
 * Switchyard logs pino JSON lines. Each line has `level` as a word and an ISO `time`.
 *
 * Modules receive a logger from whoever builds them (the Server passes children of the root
 * logger; tests pass one writing to memory) and take `logger.child({ module })` once at
 * construction, never per connection. Hot paths test `logger.isLevelEnabled('info')` before
 * building a log object, so `log.level: warn` costs nothing per connection.
 */
export function createLogger(dest: DestinationStream, level: LogLevel | LevelWithSilent = 'info'): Logger {
  return pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
}

/**
 * stdout, written asynchronously (sonic-boom) so a burst of connection logs never blocks the
 * event loop on a slow pipe. `flushLogs` is called before exit so the last lines are kept.
 */
const stdoutDestination = pino.destination({ dest: 1, sync: false });

export const rootLogger: Logger = createLogger(stdoutDestination);

/**
 * Waits until every stdout log line written so far has reached the file descriptor (bounded
 * by `timeoutMs`), so lines are neither lost nor reordered when the process exits right after.
 */
export function flushLogs(timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    try {
      stdoutDestination.flush(() => {
        clearTimeout(timer);
        resolve();
      });
    } catch {
      // flush throws when the destination never opened, i.e. nothing was written.
      clearTimeout(timer);
      resolve();
    }
  });
}
