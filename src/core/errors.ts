/**
 * One error type for everything Switchyard reports, in the spirit of undici's UND_ERR_* codes
 * and Pingora's error type/source: a stable `code` for machines and logs, which side caused
 * it, whether retrying elsewhere is safe, and the underlying cause.
 *
 * Expected data-path failures (a refused upstream, a malformed PROXY header from a client) are
 * still *values* at the API boundary (see PickResult, ConnectOutcome); SwitchyardError is the
 * shape they take when they have to travel as an Error, and the type thrown for invalid
 * configuration.
 */
export type ErrorSource = 'downstream' | 'upstream' | 'config' | 'internal';

export type ErrorCode =
  | 'SWY_CONFIG_INVALID'
  | 'SWY_CONFIG_READ'
  | 'SWY_BIND_FAILED'
  | 'SWY_RESOLVE_FAILED'
  | 'SWY_UPSTREAM_CONNECT_REFUSED'
  | 'SWY_UPSTREAM_CONNECT_TIMEOUT'
  | 'SWY_UPSTREAM_CONNECT_FAILED'
  | 'SWY_NO_SERVER_READY'
  | 'SWY_PROXY_HEADER_INVALID'
  | 'SWY_PROXY_HEADER_TIMEOUT'
  | 'SWY_PROXY_UNTRUSTED'
  | 'SWY_PROBE_FAILED';

export interface SwitchyardErrorOptions {
  source: ErrorSource;
  /** True when the same operation may succeed against another server (e.g. connect refused). */
  retryable?: boolean;
  cause?: unknown;
}

export class SwitchyardError extends Error {
  readonly code: ErrorCode;
  readonly source: ErrorSource;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: SwitchyardErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SwitchyardError';
    this.code = code;
    this.source = options.source;
    this.retryable = options.retryable ?? false;
  }
}

/**
 * Turns anything thrown (including non-Error values, which proxy-protocol-js throws) into a
 * short human string for a log line. Never throws.
 */
export function describeError(err: unknown): string {
  if (err instanceof SwitchyardError) return err.message;
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code && !err.message.includes(code) ? `${code} ${err.message}` : err.message;
  }
  if (err && typeof err === 'object' && 'message' in err) return String((err as { message: unknown }).message);
  return String(err);
}
