/**
 * The registries extensions receive in CheckEnv: named state with the
 * lifecycle of xt/state.ts, run the same way for every extension, and the
 * procfs-like files (net/xt_recent/NAME, ...) the `proc` command reads and
 * writes.
 *
 * Lifecycle of one key:
 *   declare  - the first reference creates the value, registers the spec's
 *              proc view and, if the appliance handed over a saved snapshot
 *              holding the key, loads it (aged by the downtime); later
 *              references share it. A rule-set replacement declares the new
 *              rules before the old ones release, so a kept key keeps its value.
 *   tick     - every `everyMs` of the monotonic clock (one timer for all keys,
 *              or runTicks(now) driven by a test's fake clock);
 *   save     - exportAll() pictures every live key for the state file;
 *   release  - the last reference unregisters the proc view and releases.
 *
 * A spec's failing load or tick is that key's problem only: it is logged and
 * the key keeps running (empty, for a load); nothing else is touched.
 */
import type { ProcFile, ProcRegistry } from '../../xt/extension.js';
import type { StateLookup, StateRegistry, StateReport, StateSpec } from '../../xt/state.js';

/** The clocks state needs: monotonic ms (values' timestamps) and wall ms (downtime across a restart). */
export interface StateClock {
  now(): number;
  wallNow(): number;
}

/** What exportAll() returns and expectSaved() takes: every key's saved picture and when it was taken. */
export interface SavedExtensionState {
  /** Wall-clock ms of the save; the downtime at load is measured from it. */
  readonly savedAt: number;
  readonly entries: Readonly<Record<string, unknown>>;
}

interface Live {
  readonly key: string;
  /** Null for state taken with acquire() (no proc view, persistence, limits or tick). */
  readonly spec: StateSpec<unknown> | null;
  readonly value: unknown;
  refs: number;
  readonly releaseFn?: (value: unknown) => void;
  /** Monotonic ms the next tick is due (spec.tick only). */
  nextTick: number;
  procPath: string | null;
}

type LogFn = (level: number, line: string) => void;

/**
 * Issue 15: the cluster link (router/cluster/link.ts) is told of every live
 * key whose spec declares `shared`, so modules never talk to the network.
 */
export interface SharedStateListener {
  attach(key: string, spec: StateSpec<unknown>, value: unknown): void;
  detach(key: string, spec: StateSpec<unknown>, value: unknown): void;
}

export class SharedState implements StateRegistry, StateLookup {
  private readonly live = new Map<string, Live>();
  /** A loaded snapshot waiting for its keys to be declared (during restoreState only). */
  private pending: { savedAt: number; entries: Map<string, unknown> } | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerOn = false;
  private cluster: SharedStateListener | null = null;

  constructor(
    private readonly proc: ProcFiles = new ProcFiles(),
    private readonly clock: StateClock = { now: () => performance.now(), wallNow: () => Date.now() },
    private readonly log: LogFn = () => undefined,
  ) {}

  declare<T>(spec: StateSpec<T>): T {
    const e = this.live.get(spec.key);
    if (e) {
      e.refs++;
      return e.value as T;
    }
    if (spec.tick && !(spec.tick.everyMs > 0)) throw new Error(`state ${spec.key}: tick.everyMs must be positive`);
    let value = spec.create();
    const saved = this.pending?.entries.get(spec.key);
    if (saved !== undefined && this.pending) {
      this.pending.entries.delete(spec.key);
      if (spec.load) {
        const downtime = Math.max(0, this.clock.wallNow() - this.pending.savedAt);
        try {
          spec.load(value, saved, downtime, this.clock.now());
        } catch (err) {
          // A picture this spec cannot take back: start the key empty rather than half-loaded.
          this.log(3, `xtr state ${spec.key}: saved data not restored, starting empty: ${err instanceof Error ? err.message : String(err)}`);
          spec.release?.(value);
          value = spec.create();
        }
      }
    }
    const entry: Live = {
      key: spec.key,
      spec: spec as StateSpec<unknown>,
      value,
      refs: 1,
      nextTick: spec.tick ? this.clock.now() + spec.tick.everyMs : Infinity,
      procPath: null,
    };
    if (spec.proc) {
      const view = spec.proc;
      const file: ProcFile = { read: () => view.read(value) };
      if (view.write) {
        const write = view.write.bind(view);
        file.write = (data: string) => write(value, data);
      }
      this.proc.register(view.path, file);
      entry.procPath = view.path;
    }
    this.live.set(spec.key, entry);
    if (spec.tick) this.arm();
    if (spec.shared && this.cluster) this.cluster.attach(spec.key, entry.spec!, value);
    return value;
  }

  acquire<T>(key: string, create: () => T, release?: (value: T) => void): T {
    const e = this.live.get(key);
    if (e) {
      e.refs++;
      return e.value as T;
    }
    const value = create();
    this.live.set(key, { key, spec: null, value, refs: 1, releaseFn: release as ((v: unknown) => void) | undefined, nextTick: Infinity, procPath: null });
    return value;
  }

  release(key: string): void {
    const e = this.live.get(key);
    if (!e) return;
    if (--e.refs > 0) return;
    this.live.delete(key);
    if (e.procPath !== null) this.proc.unregister(e.procPath);
    if (e.spec?.shared && this.cluster) this.cluster.detach(key, e.spec, e.value);
    if (e.spec) e.spec.release?.(e.value);
    else e.releaseFn?.(e.value);
    if (e.spec?.tick) this.arm();
  }

  /** Issue 15: hands every shared key (live now and declared later) to the cluster link; null detaches them. */
  setCluster(listener: SharedStateListener | null): void {
    if (this.cluster) for (const e of this.live.values()) if (e.spec?.shared) this.cluster.detach(e.key, e.spec, e.value);
    this.cluster = listener;
    if (listener) for (const e of this.live.values()) if (e.spec?.shared) listener.attach(e.key, e.spec, e.value);
  }

  /** Reference count of a key (0 = absent); for tests and diagnostics. */
  refs(key: string): number {
    return this.live.get(key)?.refs ?? 0;
  }

  // ---- StateLookup: what module commands and reload() see

  get<T>(key: string): T | undefined {
    return this.live.get(key)?.value as T | undefined;
  }

  keys(prefix: string): string[] {
    return [...this.live.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  /** Every live key with its limits and proc path, by key (`xtr status`). */
  report(): StateReport[] {
    return [...this.live.values()]
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
      .map((e) => {
        const limit = e.spec?.limit;
        let entries: number | null = null;
        if (limit) {
          try {
            entries = limit.count(e.value);
          } catch {
            entries = null;
          }
        }
        return { key: e.key, refs: e.refs, entries, max: limit ? limit.max : null, eviction: limit ? limit.eviction : null, proc: e.procPath };
      });
  }

  // ---- persistence

  /** Whether any live key's spec saves (the appliance's periodic save has nothing to do otherwise). */
  hasSavedState(): boolean {
    for (const e of this.live.values()) if (e.spec?.save) return true;
    return false;
  }

  /** The saved picture of every live key whose spec saves; a key whose save throws is logged and left out. */
  exportAll(): SavedExtensionState {
    const now = this.clock.now();
    const entries: Record<string, unknown> = {};
    for (const e of this.live.values()) {
      if (!e.spec?.save) continue;
      try {
        const v = e.spec.save(e.value, now);
        if (v !== undefined) entries[e.key] = v;
      } catch (err) {
        this.log(3, `xtr state ${e.key}: not saved: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return { savedAt: this.clock.wallNow(), entries };
  }

  /**
   * Hands over a snapshot read at start: keys declared while it is pending
   * are created from it. expectSaved(null) ends that (restoreState does once
   * the saved rules are in); returns the keys no rule declared.
   */
  expectSaved(saved: SavedExtensionState | null): string[] {
    const left = this.pending ? [...this.pending.entries.keys()] : [];
    this.pending = saved ? { savedAt: saved.savedAt, entries: new Map(Object.entries(saved.entries)) } : null;
    return left;
  }

  // ---- ticks

  /**
   * Runs every tick that is due at `now` (monotonic ms). The timer calls it;
   * tests call it with a fake clock. A tick that fell far behind runs once,
   * not once per missed period.
   */
  runTicks(now = this.clock.now()): void {
    for (const e of [...this.live.values()]) {
      const tick = e.spec?.tick;
      if (!tick || now < e.nextTick || this.live.get(e.key) !== e) continue;
      e.nextTick += tick.everyMs;
      if (e.nextTick <= now) e.nextTick = now + tick.everyMs;
      try {
        tick.run(e.value, now);
      } catch (err) {
        this.log(3, `xtr state ${e.key}: tick failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  }

  /** Monotonic ms of the earliest due tick (Infinity: none). */
  nextTickAt(): number {
    let at = Infinity;
    for (const e of this.live.values()) if (e.nextTick < at) at = e.nextTick;
    return at;
  }

  /** Drives ticks from one unref'd timer, re-armed for the earliest due key (the appliance does this). */
  startTimer(): void {
    this.timerOn = true;
    this.arm();
  }

  stopTimer(): void {
    this.timerOn = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private arm(): void {
    if (!this.timerOn) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const at = this.nextTickAt();
    if (at === Infinity) return;
    const delay = Math.min(Math.max(0, at - this.clock.now()), 2 ** 31 - 1);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.runTicks();
      this.arm();
    }, delay);
    this.timer.unref();
  }
}

export class ProcFiles implements ProcRegistry {
  private readonly files = new Map<string, ProcFile>();

  register(path: string, file: ProcFile): void {
    this.files.set(normalise(path), file);
  }

  unregister(path: string): void {
    this.files.delete(normalise(path));
  }

  get(path: string): ProcFile | undefined {
    return this.files.get(normalise(path));
  }

  paths(): string[] {
    return [...this.files.keys()].sort();
  }
}

/** "/proc/net/xt_recent/x" and "net/xt_recent/x" name the same file. */
export function normalise(path: string): string {
  return path.replace(/^\/?(proc\/)?/, '').replace(/\/+$/, '');
}
