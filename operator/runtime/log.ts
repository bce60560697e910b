// The root logger and the child loggers the runtime hands out. JSON lines on stdout; errors go
// in as `err` objects (pino's serializer keeps type, message, stack and cause), never as strings.
import { pino, type DestinationStream, type Logger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LoggerOptions {
  level?: LogLevel;
  /** Defaults to stdout; tests pass a stream to read lines back. */
  destination?: DestinationStream;
  /** Fields on every line, such as the pod name. */
  base?: Record<string, unknown>;
}

export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? 'info';
  if (!LOG_LEVELS.includes(level)) throw new Error(`invalid log level ${JSON.stringify(level)}: expected one of ${LOG_LEVELS.join(', ')}`);
  return pino(
    {
      level,
      base: options.base ?? null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { err: pino.stdSerializers.errWithCause },
    },
    options.destination,
  );
}

export interface ReconcileLogFields {
  controller?: string;
  namespace?: string;
  name?: string;
  key?: string;
  reconcileID?: string;
}

/** A child logger for one reconcile, carrying the fields every line about it needs. */
export function reconcileLogger(parent: Logger, fields: ReconcileLogFields): Logger {
  return parent.child(Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)));
}

/** A logger that drops everything, for unit tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
