/**
 * The process logger: pino writing JSON lines, or coloured human-readable
 * lines through pino-pretty when stdout is a terminal. pino-pretty is used as
 * an in-process stream (not a transport worker) so log lines are never lost
 * when the process exits right after writing them.
 */
import { pino, type Logger, type LoggerOptions as PinoOptions } from 'pino';
import pretty from 'pino-pretty';
import type { SyslogConfig } from './config.js';
import { SyslogSink } from './syslog.js';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  /** Force pretty (true) or JSON (false); default: pretty when stdout is a TTY. */
  pretty?: boolean;
  /** Where to write (a file descriptor or stream); default stdout. */
  destination?: number | NodeJS.WritableStream;
  /** JSON lines' time (config `log.time`): ISO 8601 (default) or pino's epoch milliseconds. */
  time?: 'iso' | 'epoch';
  /** JSON lines' level (config `log.levels`): its name (default) or pino's number. */
  levels?: 'label' | 'number';
  /** A copy of every line at or above its level to syslog (router/syslog.ts); needs JSON lines. */
  syslog?: SyslogConfig | null;
}

/** The syslog sinks of loggers made by createLogger, so the process can close them at exit. */
export const syslogSinks = new Set<SyslogSink>();

export function createLogger(opts: LoggerOptions = {}): Logger {
  const level = opts.level ?? 'info';
  const usePretty = opts.pretty ?? (opts.destination === undefined && process.stdout.isTTY === true);
  const base: PinoOptions = { level, base: { name: 'xtr' } };
  if (usePretty && !opts.syslog) {
    const dest = typeof opts.destination === 'number' ? opts.destination : 1;
    return pino(base, pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name', destination: dest }));
  }
  // Issue 13: log stacks (Loki, Elasticsearch, journald readers) want a readable time and level name.
  if ((opts.time ?? 'iso') === 'iso') base.timestamp = pino.stdTimeFunctions.isoTime;
  if ((opts.levels ?? 'label') === 'label') base.formatters = { level: (label) => ({ level: label }) };
  const primary: { write(line: string): unknown } =
    opts.destination === undefined || typeof opts.destination === 'number'
      ? pino.destination({ dest: opts.destination ?? 1, sync: true })
      : opts.destination;
  if (!opts.syslog) return pino(base, primary);
  // The sink reports its own trouble on the primary stream only (never into itself).
  const sink = new SyslogSink(opts.syslog, (msg) =>
    primary.write(`${JSON.stringify({ level: (opts.levels ?? 'label') === 'label' ? 'warn' : 40, time: (opts.time ?? 'iso') === 'iso' ? new Date().toISOString() : Date.now(), name: 'xtr', msg })}\n`),
  );
  syslogSinks.add(sink);
  return pino(base, {
    write(line: string) {
      primary.write(line);
      sink.write(line);
    },
  });
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
