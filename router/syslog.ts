/**
 * The optional syslog copy of the log (config `log.syslog`, docs/config.md "Logging"): RFC 5424
 * messages over the syslog daemon's Unix datagram socket (/dev/log by default).
 *
 * Node has no Unix datagram sockets, and the native-addon packages that add them are not kept up
 * for current Node; /dev/log is a datagram socket (rsyslog's imuxsock, journald's dev-log), so a
 * stream connection is not an option either. The transport is therefore one long-lived child,
 * util-linux's `logger` (Debian's bsdutils, Essential: present in every Debian system and in the
 * image), fed one line per message on its standard input:
 *
 *   logger --rfc5424=notq --prio-prefix --socket-errors=on -u PATH -t TAG --id=PID --size 8192
 *
 * `--prio-prefix` takes each line's `<PRI>` (facility * 8 + severity), so every message keeps
 * its own severity; logger writes the RFC 5424 header
 *   <PRI>1 2026-12-06T18:43:43.916643+00:00 HOST TAG PID - - MSG
 * (VERSION 1, local time with microseconds and offset, MSGID and STRUCTURED-DATA nil) and sends
 * one datagram per line. PROCID is xtr's pid, not logger's.
 *
 * The message is pino's `msg` followed by the line's other fields as JSON (time, level, pid,
 * hostname and name are in the header already). Severities: pino fatal -> crit (2), error -> err
 * (3), warn -> warning (4), info -> info (6), debug/trace -> debug (7); a line that carries an
 * explicit syslog severity (`syslog`: the LOG/LOGMARK targets' --log-level) keeps it; audit lines
 * (`audit: true`, router/audit.ts) are notice (5).
 *
 * Never in the way of the router: a line is dropped (and counted) when the child's input holds more
 * than MAX_QUEUED_BYTES; if logger exits (the socket is gone, the daemon restarts) the loss is
 * reported once on the primary log and logger is started again after RESTART_MS.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Writable } from 'node:stream';
import { SYSLOG_FACILITIES, type SyslogConfig } from './config.js';

const MAX_QUEUED_BYTES = 1 << 20;
const RESTART_MS = 5000;
/** RFC 5424 says receivers should take 2048 octets; rsyslog takes 8 KiB by default. */
const MAX_MESSAGE = 8192;

/** pino level number -> syslog severity. */
export function pinoToSyslogSeverity(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

const LABELS: Readonly<Record<string, number>> = { fatal: 60, error: 50, warn: 40, info: 30, debug: 20, trace: 10 };
const HEADER_FIELDS = new Set(['time', 'level', 'pid', 'hostname', 'name', 'msg']);

/**
 * One pino JSON line as the `<PRI>MESSAGE` line logger reads, or null when it is below `minLevel`
 * (a pino level number) or not JSON.
 */
export function syslogLine(line: string, facility: number, minLevel: number): string | null {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return null;
  }
  const level = typeof o.level === 'number' ? o.level : (LABELS[String(o.level)] ?? 30);
  if (level < minLevel) return null;
  let severity = pinoToSyslogSeverity(level);
  if (typeof o.syslog === 'number' && Number.isInteger(o.syslog) && o.syslog >= 0 && o.syslog <= 7) severity = o.syslog;
  else if (o.audit === true) severity = 5;
  const rest: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(o)) if (!HEADER_FIELDS.has(k)) rest[k] = v;
  const fields = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : '';
  // One message per line: newlines inside would split it.
  const text = `${String(o.msg ?? '')}${fields}`.replace(/[\r\n]+/g, ' ');
  return `<${facility * 8 + severity}>${text.slice(0, MAX_MESSAGE - 16)}\n`;
}

export interface SyslogSinkLog {
  (msg: string): void;
}

/** The child and its bookkeeping; `write` takes pino's lines. */
export class SyslogSink {
  private child: ChildProcessByStdio<Writable, null, null> | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private reported = false;
  private readonly facility: number;
  private readonly minLevel: number;
  /** Lines not handed to logger (queue full or logger down) since start. */
  dropped = 0;

  constructor(
    readonly config: SyslogConfig,
    /** Where the sink reports its own trouble (the primary log stream, never syslog itself). */
    private readonly report: SyslogSinkLog,
    private readonly command = 'logger',
  ) {
    this.facility = SYSLOG_FACILITIES[config.facility] ?? 3;
    this.minLevel = LABELS[config.level] ?? (config.level === 'silent' ? Infinity : 30);
    this.start();
  }

  private start(): void {
    if (this.closed) return;
    const c = this.config;
    const child = spawn(
      this.command,
      ['--rfc5424=notq', '--prio-prefix', '--socket-errors=on', '-u', c.path, '-t', c.tag, `--id=${process.pid}`, '--size', String(MAX_MESSAGE)],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    this.child = child;
    child.stdin.on('error', () => undefined);
    child.on('error', (e) => this.lost(`cannot run ${this.command}: ${e.message}`));
    child.on('exit', (code, signal) => this.lost(`${this.command} exited (${signal ?? `status ${code}`}); is a syslog daemon listening on ${c.path}?`));
  }

  private lost(why: string): void {
    this.child = null;
    if (this.closed) return;
    if (!this.reported) {
      this.reported = true;
      this.report(`syslog: ${why}; lines are dropped until it is back (retried every ${RESTART_MS / 1000} s)`);
    }
    if (!this.restartTimer) {
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        this.start();
      }, RESTART_MS);
      this.restartTimer.unref();
    }
  }

  /** pino's destination interface: one JSON line. */
  write(line: string): void {
    const out = syslogLine(line, this.facility, this.minLevel);
    if (out === null) return;
    const child = this.child;
    if (!child || child.stdin.writableLength > MAX_QUEUED_BYTES) {
      this.dropped++;
      return;
    }
    if (this.reported) this.reported = false;
    child.stdin.write(out);
  }

  /** Ends logger's input (it sends what it has read, then exits). */
  close(): Promise<void> {
    this.closed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    this.child = null;
    if (!child) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        resolve();
      }, 2000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.stdin.end();
    });
  }
}
