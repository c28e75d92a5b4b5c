/**
 * Drops by reason on the `xtr events` stream (issue 13 §4), rate-limited: at most one `drop`
 * event per reason per interval (config `events.dropIntervalMs`, default 1000 ms), carrying how
 * many packets were dropped for that reason in the interval and on which interfaces:
 *   {"kind":"drop","reason":"no_route","count":37,"intervalMs":1000,"interfaces":{"eth0":37}}
 * So a flood of ten thousand drops a second is one event a second, with nothing suppressed
 * silently: the count is every drop.
 *
 * The packet path is not touched: it already counts drops in typed arrays (RouterInterface.drops,
 * Router.localDrops, indexed by reason). A timer compares them with the previous picture (one
 * Float64Array per interface, allocated once) and publishes summaries; an interval without drops
 * publishes nothing. Summaries are also logged at debug (`event: "drop"`), so a syslog copy at
 * debug level gets them too.
 */
import { DROP_COUNT, DROP_NAMES } from './interfaces.js';
import type { Router } from './forward.js';

export interface DropEventSink {
  publish(e: { kind: string; time: number; fields: Readonly<Record<string, unknown>> }): void;
}

export interface DropEventLog {
  debug(obj: object, msg?: string): void;
}

export class DropEvents {
  private timer: NodeJS.Timeout | null = null;
  private intervalMs = 0;
  /** Last picture per counter array (interfaces by index, then the router's own). */
  private readonly last = new Map<Float64Array, Float64Array>();
  /** Per reason: drops in this interval (scratch, reused). */
  private readonly sums = new Float64Array(DROP_COUNT);

  constructor(
    private readonly router: Pick<Router, 'interfaces' | 'localDrops'>,
    private readonly sink: DropEventSink,
    private readonly log: DropEventLog | null = null,
  ) {}

  /** (Re)starts with `intervalMs` (0 stops). Counters are pictured now, so drops before this are not reported. */
  setInterval(intervalMs: number): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.intervalMs = intervalMs;
    if (intervalMs <= 0) return;
    for (const [counters] of this.sources()) this.picture(counters).set(counters);
    this.timer = setInterval(() => this.flush(), intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.setInterval(0);
  }

  private *sources(): Generator<[Float64Array, string | null]> {
    const ifs = this.router.interfaces;
    for (let i = 1; i < ifs.length; i++) if (ifs[i]) yield [ifs[i].drops, ifs[i].name];
    yield [this.router.localDrops, null];
  }

  private picture(counters: Float64Array): Float64Array {
    let p = this.last.get(counters);
    if (!p) {
      p = new Float64Array(counters.length);
      p.set(counters);
      this.last.set(counters, p);
    }
    return p;
  }

  /** Publishes one summary per reason that grew since the last call (the timer calls it). */
  flush(): number {
    const sums = this.sums;
    sums.fill(0);
    let any = false;
    const perIf: (string | null)[] = [];
    const deltas: Float64Array[] = [];
    for (const [counters, name] of this.sources()) {
      const p = this.picture(counters);
      let grew = false;
      for (let r = 1; r < DROP_COUNT; r++) {
        if (counters[r] !== p[r]) {
          grew = true;
          break;
        }
      }
      if (!grew) continue;
      // Only an interval with drops allocates (the summary objects), never the packet path.
      const d = new Float64Array(DROP_COUNT);
      for (let r = 1; r < DROP_COUNT; r++) {
        d[r] = counters[r] - p[r];
        sums[r] += d[r];
      }
      p.set(counters);
      perIf.push(name);
      deltas.push(d);
      any = true;
    }
    if (!any) return 0;
    const time = Date.now();
    let published = 0;
    for (let r = 1; r < DROP_COUNT; r++) {
      if (sums[r] <= 0 || !DROP_NAMES[r]) continue;
      const interfaces: Record<string, number> = {};
      perIf.forEach((n, i) => {
        if (deltas[i][r] > 0) interfaces[n ?? 'local'] = deltas[i][r];
      });
      const fields = { reason: DROP_NAMES[r], count: sums[r], intervalMs: this.intervalMs, interfaces };
      this.log?.debug({ ...fields, event: 'drop' }, 'drop');
      this.sink.publish({ kind: 'drop', time, fields });
      published++;
    }
    return published;
  }
}
