import { validateConfig } from '../../src/config/load.ts';
import { Switchyard } from '../../src/server.ts';
import { captureLogger } from './log.ts';
import type { Logger } from '../../src/core/log.ts';

/**
 * Validates a config document (as an object, with duration strings etc.) and starts a real
 * Switchyard on it. Listeners should bind 127.0.0.1:0; read the port with `sy.address(name)`.
 * Logs are captured in memory at the config's own `log.level`, as the CLI would log them.
 */
export async function startBalancer(document: unknown, logger?: Logger): Promise<{ sy: Switchyard; lines: () => Array<Record<string, unknown>> }> {
  const config = validateConfig(document);
  const captured = captureLogger(config.log.level);
  const sy = await Switchyard.start(config, { logger: logger ?? captured.logger });
  return { sy, lines: captured.lines };
}
