/**
 * Long control-plane work cut into slices that give the packet path its turn
 * (issue 12 §5): a 10,000-line iptables-restore took 0.4-1.25 s of one
 * uninterrupted run of the event loop, so packets waited that long.
 *
 * The work is written once, as a generator that `yield`s at points where it
 * may pause (after a restore line, a rule checked, a rule compiled). Two
 * drivers run it: `runSteps` to the end at once (start-up, before the router
 * forwards; tests), and `runStepsSliced`, which goes back to the event loop
 * (setImmediate: TUN reads, timers and sockets run) whenever a slice has
 * taken SLICE_MS. The commit itself (the swap of the compiled rule set) is
 * one step, so the rule set still changes atomically.
 *
 * Why not a worker thread: the compiled form is closures over extension
 * instances (compile.ts), and parsed rules hold extension records; neither
 * can cross a thread boundary, and checking must acquire extension state in
 * this thread. Slicing keeps one implementation for both paths.
 */

/** A piece of work that may pause at each `yield` and ends with a T. */
export type Steps<T> = Generator<void, T, void>;

/**
 * Longest run of control-plane work between two turns of the packet path, in ms. A packet through
 * the router waits up to a slice on each pass (a ping's request and reply: two), plus any GC pause
 * that lands in it: with 4 ms, ping p50 during back-to-back 10,000-line restores was 8.3-10.4 ms,
 * with 2 ms 4.7-6.3 ms; with 1 ms (rules kept smaller too, so scavenges copy less) p99 was 18.3 /
 * 18.0 / 19.0 / 17.0 ms against 23.4 / 20.8 ms for 2 ms, alternated, restores per second unchanged
 * (bench:restore --lab-only; docs/design.md).
 */
export const SLICE_MS = 1;

/** Runs `steps` to the end without pausing. */
export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Runs `steps`, letting the event loop run whenever a slice has taken `sliceMs`. */
export async function runStepsSliced<T>(steps: Steps<T>, sliceMs = SLICE_MS): Promise<T> {
  let end = performance.now() + sliceMs;
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    if (performance.now() >= end) {
      await turn();
      end = performance.now() + sliceMs;
    }
  }
}

/**
 * A sliced transaction found, at its commit, that the rule set it was built
 * from had been replaced meanwhile by a change that did not wait its turn
 * (the control socket runs commands one at a time, but start-up, reload or a
 * test may call the engine directly). Nothing was committed.
 */
export class RuleSetChanged extends Error {
  constructor() {
    super('the rule set changed while this change was being prepared');
  }
}

/**
 * Runs the work `make` builds in slices; if its commit meets a rule set
 * replaced meanwhile (RuleSetChanged), runs it again from the start without
 * pausing, so it applies to the current rule set, as a one-piece change would.
 */
export async function runSliced<T>(make: () => Steps<T>, sliceMs = SLICE_MS): Promise<T> {
  try {
    return await runStepsSliced(make(), sliceMs);
  } catch (e) {
    if (!(e instanceof RuleSetChanged)) throw e;
    return runSteps(make());
  }
}
