/**
 * knockdaemon-style actions: a command run when an extension's event happens
 * (pknock's open/close/failed/refused knocks), with the event's fields
 * substituted into an argv template, immediately or after a delay.
 *
 * No shell: the template is an argv array, each element substituted on its
 * own (whole-word upper-case field names, as knockdaemon's `IP`, `PORT`), and
 * run with child_process.execFile under a timeout (SIGKILL when it expires).
 * Running is never on the packet path: a due action is queued and started
 * from setImmediate, at most MAX_RUNNING at a time; the queue is bounded
 * (what does not fit is dropped and counted). Delayed actions are kept as
 * (due wall-clock time, argv) in the owner's persisted state, so a restart in
 * between still runs them (late ones at once after the restart).
 */
import { execFile } from 'node:child_process';
import { XtError } from '../../xt/extension.js';
import type { EventFields, RouterServices } from '../../xt/services.js';

/** One configured action (settings.<ext>.actions[]). */
export interface ActionSpec {
  /** Event kinds (without the extension prefix: "open", "close", "failed", "refused") it runs on. */
  readonly on: readonly string[];
  /** Only for events whose NAME field is one of these (absent = any). */
  readonly names: readonly string[] | null;
  /** argv template: argv[0] is the program (absolute path recommended; PATH is searched). */
  readonly argv: readonly string[];
  /** Seconds after the event (0 = at once). */
  readonly delay: number;
  /** Seconds the command may run before it is killed. */
  readonly timeout: number;
}

/** A delayed action waiting for its time: what is persisted. */
export interface PendingAction {
  /** Wall-clock milliseconds when it is due. */
  readonly due: number;
  readonly argv: readonly string[];
  readonly timeout: number;
  readonly event: string;
}

export const MAX_RUNNING = 8;
export const MAX_QUEUED = 256;
export const MAX_PENDING = 4096;
const DEFAULT_TIMEOUT_S = 10;

/** Reads settings.<ext>.actions, refusing (XtError naming the field) what is malformed. */
export function parseActions(ext: string, raw: unknown): ActionSpec[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new XtError(`settings.${ext}.actions: must be an array`, 1);
  return raw.map((a, i): ActionSpec => {
    const where = `settings.${ext}.actions[${i}]`;
    if (typeof a !== 'object' || a === null) throw new XtError(`${where}: must be an object`, 1);
    const o = a as Record<string, unknown>;
    const on = typeof o.on === 'string' ? [o.on] : o.on;
    if (!Array.isArray(on) || on.length === 0 || !on.every((k) => typeof k === 'string')) throw new XtError(`${where}.on: an event kind or a list of them`, 1);
    const names = o.name === undefined ? null : typeof o.name === 'string' ? [o.name] : o.name;
    if (names !== null && (!Array.isArray(names) || !names.every((k) => typeof k === 'string'))) throw new XtError(`${where}.name: a rule name or a list of them`, 1);
    if (!Array.isArray(o.argv) || o.argv.length === 0 || !o.argv.every((k) => typeof k === 'string') || o.argv[0] === '') {
      throw new XtError(`${where}.argv: a non-empty array of strings (program first; no shell)`, 1);
    }
    const num = (k: string, dflt: number, min: number): number => {
      const v = o[k] ?? dflt;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new XtError(`${where}.${k}: a number of seconds >= ${min}`, 1);
      return v;
    };
    return { on: on as string[], names: names as string[] | null, argv: o.argv as string[], delay: num('delay', 0, 0), timeout: num('timeout', DEFAULT_TIMEOUT_S, 0.001) };
  });
}

/** Replaces whole-word upper-case field names (IP, PORT, NAME, TIME, ...) in each argv element. */
export function substitute(argv: readonly string[], fields: Readonly<Record<string, string>>): string[] {
  const keys = Object.keys(fields);
  if (keys.length === 0) return argv.slice();
  const re = new RegExp(`\\b(${keys.map((k) => k.replace(/[^A-Z0-9_]/g, '')).join('|')})\\b`, 'g');
  return argv.map((a) => a.replace(re, (k) => fields[k] ?? k));
}

/** Field values as substituted: upper-case names, strings. */
export function templateFields(kind: string, fields: EventFields, wallMs: number): Record<string, string> {
  const out: Record<string, string> = { EVENT: kind, TIME: String(Math.floor(wallMs / 1000)) };
  for (const [k, v] of Object.entries(fields)) out[k.toUpperCase()] = String(v);
  return out;
}

/**
 * Runs actions for one extension. `pending` is the persisted list of delayed
 * actions (the owner's state), `due()` is called from the owner's tick.
 */
export class ActionRunner {
  running = 0;
  readonly queue: PendingAction[] = [];
  dropped = 0;
  started = 0;
  private scheduled = false;

  constructor(
    private readonly ext: string,
    private readonly services: RouterServices,
    readonly pending: PendingAction[],
  ) {}

  /** An event happened: queue immediate actions, remember delayed ones. */
  onEvent(actions: readonly ActionSpec[], what: string, fields: EventFields): void {
    if (actions.length === 0) return;
    const now = this.services.wallNow();
    const name = fields.name;
    let values: Record<string, string> | null = null;
    for (const a of actions) {
      if (!a.on.includes(what)) continue;
      if (a.names !== null && !a.names.includes(String(name))) continue;
      values ??= templateFields(`${this.ext}.${what}`, fields, now);
      const job: PendingAction = { due: now + a.delay * 1000, argv: substitute(a.argv, values), timeout: a.timeout, event: `${this.ext}.${what}` };
      if (a.delay > 0) {
        if (this.pending.length >= MAX_PENDING) this.drop(job, 'too many delayed actions');
        else this.pending.push(job);
      } else this.enqueue(job);
    }
  }

  /** Moves delayed actions whose time has come to the run queue (the owner's tick). */
  due(wallNow: number): void {
    for (let i = 0; i < this.pending.length; ) {
      if (this.pending[i].due <= wallNow) this.enqueue(this.pending.splice(i, 1)[0]);
      else i++;
    }
  }

  private enqueue(job: PendingAction): void {
    if (this.queue.length >= MAX_QUEUED) {
      this.drop(job, 'action queue full');
      return;
    }
    this.queue.push(job);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.drain();
      });
    }
  }

  private drop(job: PendingAction, why: string): void {
    this.dropped++;
    this.services.log(4, `${this.ext}: action ${JSON.stringify(job.argv)} for ${job.event} dropped: ${why}`);
  }

  private drain(): void {
    while (this.running < MAX_RUNNING && this.queue.length > 0) this.start(this.queue.shift()!);
  }

  private start(job: PendingAction): void {
    this.running++;
    this.started++;
    const t0 = Date.now();
    const done = (status: string, detail: EventFields): void => {
      this.running--;
      const ms = Date.now() - t0;
      const ok = status === 'ok';
      this.services.log(ok ? 6 : 4, `${this.ext}: action ${JSON.stringify(job.argv)} for ${job.event}: ${status} after ${ms} ms${detail.stderr ? `: ${detail.stderr}` : ''}`);
      this.services.event(`${this.ext}.action`, { for: job.event, argv: JSON.stringify(job.argv), result: status, ms, ...detail });
      this.drain();
    };
    try {
      execFile(job.argv[0], job.argv.slice(1), { timeout: job.timeout * 1000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024, windowsHide: true }, (err, _stdout, stderr) => {
        const tail = String(stderr ?? '').trim().slice(-200);
        if (!err) done('ok', tail ? { stderr: tail } : {});
        else {
          const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null; code?: number | string };
          if (e.killed && e.signal === 'SIGKILL') done('timeout', { stderr: tail });
          else if (typeof e.code === 'number') done(`exit ${e.code}`, { stderr: tail });
          else if (e.signal) done(`signal ${e.signal}`, { stderr: tail });
          else done(`error ${e.code ?? e.message}`, {});
        }
      });
    } catch (e) {
      done(`error ${(e as Error).message}`, {});
    }
  }
}
