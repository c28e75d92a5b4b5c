/**
 * Declarative extension state: named state that rules share (recent
 * tables, quota2 counters, ACCOUNT tables, pknock peers, DNETMAP bindings,
 * psd/lscan source tables) is described once as a StateSpec and the engine
 * runs its whole lifecycle for every extension alike:
 *
 *  - create on the first rule that declares the key, release after the last
 *    rule holding it is gone (an atomic reload that keeps the key keeps the
 *    value: the new rules declare before the old ones release);
 *  - bounds: `limit` reports entries against the maximum and says how the
 *    module evicts, shown by `xtr status`;
 *  - the proc view (net/xt_recent/NAME ...) read and written by `xtr proc`;
 *  - persistence: `save` after every committed change and at shutdown, `load`
 *    when the key is created again by the saved rules after a restart (only
 *    then: a key declared later starts empty), told how long xtr was down; a
 *    picture `load` refuses (throws) is logged and the key starts empty;
 *  - a periodic tick (GC, autoclose, expiry), driven by the engine's timer.
 *
 * The module keeps the value's type to itself; the engine sees only the spec.
 */

export interface StateLimit<T> {
  /** Largest number of entries the value holds. */
  readonly max: number;
  /** How entries are evicted at the bound, in words for `xtr status` ("least recently seen"). */
  readonly eviction: string;
  /** Entries held now. */
  count(value: T): number;
}

export interface StateProc<T> {
  /** procfs-like path, e.g. "net/xt_recent/DEFAULT". */
  readonly path: string;
  read(value: T): string;
  /** Absent = read-only. Throws XtError naming what was wrong; nothing changes then. */
  write?(value: T, data: string): void;
}

export interface StateTick<T> {
  readonly everyMs: number;
  run(value: T, now: number): void;
}

export interface StateSpec<T> {
  /** Unique across extensions: "<extension>:<name>", e.g. "recent:DEFAULT". */
  readonly key: string;
  create(): T;
  release?(value: T): void;
  readonly limit?: StateLimit<T>;
  readonly proc?: StateProc<T>;
  /**
   * Persistence: a JSON-able picture of the value (saved with the rules), and
   * how to take it back after a restart. `downtimeMs` is how long xtr was
   * not running (wall clock between the save and now) so timestamps can be
   * aged; `now` is the monotonic clock the value uses.
   */
  save?(value: T, now: number): unknown;
  load?(value: T, saved: unknown, downtimeMs: number, now: number): void;
  readonly tick?: StateTick<T>;
  /** Issue 15: present when the state can be shared by a cluster of gateways (docs/cluster.md). */
  readonly shared?: StateShared<T, any>;
}

/** What `xtr status` reports of one declared state. */
export interface StateReport {
  readonly key: string;
  readonly refs: number;
  readonly entries: number | null;
  readonly max: number | null;
  readonly eviction: string | null;
  readonly proc: string | null;
}

/** The engine's side, handed to check() as CheckEnv.state. */
export interface StateRegistry {
  /**
   * Takes a reference on the state named by spec.key, creating it (and
   * restoring saved data for that key) if it does not exist. The reference
   * is dropped by release(key) from the instance's destroy().
   */
  declare<T>(spec: StateSpec<T>): T;
  release(key: string): void;
  /** Old form, for state without proc/persistence/limits (geoip sets). */
  acquire<T>(key: string, create: () => T, release?: (value: T) => void): T;
}

/** A control command an extension offers (`xtr ext NAME ARGS`; iptaccount uses ACCOUNT's). */
export interface ModuleCommand {
  /** One word, unique across extensions (a clash is a start-up error). */
  readonly name: string;
  /** The arguments' synopsis after the name ("[-a] [-l NAME]"), shown as `xtr ext NAME USAGE`. */
  readonly usage: string;
  /**
   * Runs the command. `state` looks up live state by key (or lists keys with
   * a prefix). Returns the text to print; throws XtError for bad arguments
   * (its status, 2 by default, is the exit status; its message is printed
   * with the usage).
   */
  run(args: readonly string[], state: StateLookup): string;
}

export interface StateLookup {
  get<T>(key: string): T | undefined;
  keys(prefix: string): string[];
}

// ---- Issue 15: state shared by a cluster of gateways (docs/cluster.md) ----

/** The clocks a shared record is converted with: monotonic ms (the value's) and wall ms (the fleet's). */
export interface SharedClock {
  now(): number;
  wallNow(): number;
}

/**
 * Handed to a shared value by attach(): what the packet path calls when the
 * value changed. Both only queue (no I/O, no waiting): the cluster link builds
 * and publishes records from a timer, in batches.
 */
export interface SharedSink<I> {
  /** `item` changed: its record is built by export() at the next flush; repeated changes coalesce. Allocates nothing. */
  changed(item: I): void;
  /** A record built now, for changes whose item may be gone or reused by the flush (a removal). */
  record(id: string, data: unknown): void;
  /** The clocks records are converted with (a removal's wall time); the cluster link always gives them. */
  readonly clock?: SharedClock;
  /** This gateway's id (cluster.gateway), for states whose conflict rule breaks ties by gateway (DNETMAP). */
  readonly gateway?: string;
}

/**
 * How a state's changes travel between gateways, declared by the extension
 * beside the rest of its StateSpec; the extension never talks to the network.
 * Records are small JSON values; `id` names the item within the state (an
 * address), unique per state key.
 */
export interface StateShared<T, I = unknown> {
  /** The kind named by `cluster.shared` in the config ("recent", "quota2", "pknock", "account"). */
  readonly kind: string;
  /**
   * Counters: each gateway owns its record of an item (the cluster keeps one
   * per gateway, and apply() is told whose it is); otherwise one record per
   * item, the latest publish of any gateway, merged by apply().
   */
  readonly perGateway?: boolean;
  /** Starts (sink) or stops (null) reporting changes of `value`. */
  attach(value: T, sink: SharedSink<I> | null): void;
  /**
   * The record of a changed item at flush time; null = nothing to send (the
   * item is gone); undefined = not yet, keep the item for a later flush (a
   * busy item re-sent at most so often).
   */
  export(value: T, item: I, clock: SharedClock): { id: string; data: unknown } | null | undefined;
  /**
   * Applies a record from gateway `from` (never this gateway's own) by the
   * state's conflict rule; must not call the sink (no echo). Throws on a
   * malformed record: it is counted and skipped.
   */
  apply(value: T, id: string, data: unknown, from: string, clock: SharedClock): void;
}
