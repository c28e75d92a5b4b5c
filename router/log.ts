/**
 * The process logger: pino writing JSON lines, or coloured human-readable
 * lines through pino-pretty when stdout is a terminal. pino-pretty is used as
 * an in-process stream (not a transport worker) so log lines are never lost
 * when the process exits right after writing them.
 */
import { pino, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  /** Force pretty (true) or JSON (false); default: pretty when stdout is a TTY. */
  pretty?: boolean;
  /** Where to write (a file descriptor or stream); default stdout. */
  destination?: number | NodeJS.WritableStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  const usePretty = opts.pretty ?? (opts.destination === undefined && process.stdout.isTTY === true);
  const base = { level, base: { name: 'xtr' } };
  if (usePretty) {
    const dest = typeof opts.destination === 'number' ? opts.destination : 1;
    return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name', destination: dest }));
  }
  if (opts.destination === undefined) return pino(base, pino.destination({ dest: 1, sync: true }));
  if (typeof opts.destination === 'number') return pino(base, pino.destination({ dest: opts.destination, sync: true }));
  return pino(base, opts.destination);
}

/** A logger that writes nothing (tests, benchmarks). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

/** Syslog severity (0 emerg .. 7 debug) to the pino method name used for it. */
export function syslogToPino(level: number): 'fatal' | 'error' | 'warn' | 'info' | 'debug' {
  if (level <= 1) return 'fatal';
  if (level <= 3) return 'error';
  if (level === 4) return 'warn';
  if (level <= 6) return 'info';
  return 'debug';
}
