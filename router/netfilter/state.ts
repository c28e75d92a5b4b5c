/**
 * The registries extensions receive in CheckEnv: named shared state with
 * reference counts (so a recent table survives a rule-set replacement: the
 * new rules acquire it before the old ones release it) and the procfs-like
 * files (net/xt_recent/NAME, ...) the `proc` command reads and writes.
 */
import type { ProcFile, ProcRegistry } from '../../xt/extension.js';
import type { StateRegistry, StateSpec } from '../../xt/state.js';

interface Entry {
  value: unknown;
  refs: number;
  release?: (value: unknown) => void;
}

export class SharedState implements StateRegistry {
  declare<T>(spec: StateSpec<T>): T {
    return this.acquire(spec.key, spec.create, spec.release);
  }

  private readonly entries = new Map<string, Entry>();

  acquire<T>(key: string, create: () => T, release?: (value: T) => void): T {
    const e = this.entries.get(key);
    if (e) {
      e.refs++;
      return e.value as T;
    }
    const value = create();
    this.entries.set(key, { value, refs: 1, release: release as ((v: unknown) => void) | undefined });
    return value;
  }

  release(key: string): void {
    const e = this.entries.get(key);
    if (!e) return;
    if (--e.refs > 0) return;
    this.entries.delete(key);
    e.release?.(e.value);
  }

  /** Reference count of a key (0 = absent); for tests and diagnostics. */
  refs(key: string): number {
    return this.entries.get(key)?.refs ?? 0;
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
