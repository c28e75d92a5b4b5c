/**
 * Range pools for the builders: collect inclusive [start, end] ranges in any
 * order, then produce the on-disk form - sorted ascending, overlapping and
 * adjacent ranges coalesced (the union, as the upstream builders' range
 * library computes it), big-endian begin/end records.
 */
import { writeV6 } from './addr.js';

export class RangePool4 {
  private starts: number[] = [];
  private ends: number[] = [];

  add(start: number, end: number): void {
    this.starts.push(start);
    this.ends.push(end);
  }

  get size(): number {
    return this.starts.length;
  }

  /** Merged ranges as [start0, end0, start1, end1, ...]. */
  merged(): number[] {
    const n = this.starts.length;
    const order = new Uint32Array(n);
    for (let i = 0; i < n; i++) order[i] = i;
    const s = this.starts;
    order.sort((a, b) => s[a]! - s[b]!);
    const out: number[] = [];
    for (let k = 0; k < n; k++) {
      const i = order[k]!;
      const start = s[i]!;
      const end = this.ends[i]!;
      const last = out.length - 1;
      if (last > 0 && start <= out[last]! + 1) {
        if (end > out[last]!) out[last] = end;
      } else {
        out.push(start, end);
      }
    }
    return out;
  }

  /** The `.iv4` file content. */
  encode(): Buffer {
    const m = this.merged();
    const buf = Buffer.alloc(m.length * 4);
    for (let i = 0; i < m.length; i++) buf.writeUInt32BE(m[i]!, i * 4);
    return buf;
  }
}

export class RangePool6 {
  private ranges: Array<[bigint, bigint]> = [];

  add(start: bigint, end: bigint): void {
    this.ranges.push([start, end]);
  }

  get size(): number {
    return this.ranges.length;
  }

  merged(): Array<[bigint, bigint]> {
    const sorted = this.ranges.slice().sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const out: Array<[bigint, bigint]> = [];
    for (const [start, end] of sorted) {
      const last = out[out.length - 1];
      if (last && start <= last[1] + 1n) {
        if (end > last[1]) last[1] = end;
      } else {
        out.push([start, end]);
      }
    }
    return out;
  }

  /** The `.iv6` file content. */
  encode(): Buffer {
    const m = this.merged();
    const buf = Buffer.alloc(m.length * 32);
    m.forEach(([s, e], i) => {
      writeV6(s, buf, i * 32);
      writeV6(e, buf, i * 32 + 16);
    });
    return buf;
  }
}

/** Both families' pools for one country or AS number. */
export class RangeSetBuilder {
  readonly v4 = new RangePool4();
  readonly v6 = new RangePool6();
}

/** Splits an IPv4 range into CIDR blocks (used by tests to produce GeoLite2-style inputs). */
export function rangeToCidrs4(start: number, end: number): string[] {
  const out: string[] = [];
  let s = start;
  while (s <= end) {
    let size = 32;
    while (size > 0) {
      const block = 2 ** (32 - (size - 1));
      if (s % block !== 0 || s + block - 1 > end) break;
      size--;
    }
    out.push(`${s >>> 24}.${(s >>> 16) & 255}.${(s >>> 8) & 255}.${s & 255}/${size}`);
    s += 2 ** (32 - size);
  }
  return out;
}

/** Splits an IPv6 range into CIDR blocks as [network, prefix length]. */
export function rangeToCidrs6(start: bigint, end: bigint): Array<[bigint, number]> {
  const out: Array<[bigint, number]> = [];
  let s = start;
  while (s <= end) {
    let size = 128;
    while (size > 0) {
      const block = 1n << BigInt(128 - (size - 1));
      if (s % block !== 0n || s + block - 1n > end) break;
      size--;
    }
    out.push([s, size]);
    s += 1n << BigInt(128 - size);
  }
  return out;
}
