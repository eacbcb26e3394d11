export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

/**
 * JSON lines on stderr. Callers pass structured fields and never message
 * bodies or tokens: nothing secret reaches the log.
 */
export function createLogger(level: LogLevel, write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const min = RANK[level];
  const at =
    (lvl: Exclude<LogLevel, 'silent'>) =>
    (msg: string, fields?: Record<string, unknown>): void => {
      if (RANK[lvl] < min) return;
      write(`${JSON.stringify({ time: new Date().toISOString(), level: lvl, msg, ...fields })}\n`);
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

export const silentLogger: Logger = createLogger('silent');

/**
 * A pino logger (or one with pino's calling convention: fields first,
 * `info(fields, msg)`), as the `logger` option takes it. Recognised by its
 * `levels.values` and `bindings()`, which every pino logger and child has.
 */
export interface PinoLike {
  debug(fields: object, msg?: string): void;
  info(fields: object, msg?: string): void;
  warn(fields: object, msg?: string): void;
  error(fields: object, msg?: string): void;
  levels: { values: Record<string, number> };
  bindings(): object;
}

/** Whether `logger` calls with fields first (pino), rather than the gateway's `info(msg, fields)`. */
export function isPinoLike(logger: unknown): logger is PinoLike {
  if (typeof logger !== 'object' || logger === null) return false;
  const candidate = logger as Partial<PinoLike>;
  return typeof candidate.levels?.values === 'object' && typeof candidate.bindings === 'function';
}

/**
 * The `logger` option as the gateway calls it: a pino logger adapted
 * (`info(msg, fields)` becomes `info(fields, msg)`, so that pino keeps the
 * fields as properties and its own level, bindings and destination), any
 * other logger as it is.
 */
export function adaptLogger(logger: Logger | PinoLike): Logger {
  if (!isPinoLike(logger)) return logger;
  const at =
    (lvl: Exclude<LogLevel, 'silent'>) =>
    (msg: string, fields?: Record<string, unknown>): void =>
      logger[lvl](fields ?? {}, msg);
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}
