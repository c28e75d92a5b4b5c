/**
 * psd: port scan detection, xtables-addons' xt_psd (derived from Solar
 * Designer's scanlogd), IPv4 and IPv6 (upstream since 1.47.1).
 *
 * A source address that sends TCP/UDP/UDP-Lite packets to many *different*
 * destination ports, each new port less than --psd-delay-threshold
 * hundredths of a second after the previous new one, accumulates weight
 * (privileged ports < 1024 count --psd-lo-ports-weight, others
 * --psd-hi-ports-weight); once the weight reaches --psd-weight-threshold every
 * further packet to a port it has not sent to before matches.
 *
 * The per-source table is upstream's, one per address family, shared by every
 * psd rule of that family (each rule applies its own thresholds to the shared
 * entries), declared state "psd:ipv4" / "psd:ipv6":
 *  - a circular list of `hosts` slots (256): a new source takes the next slot,
 *    evicting whoever held it (the source created longest ago);
 *  - a hash of `hash_size` buckets (512) over the source address; a lookup
 *    walks at most what is chained there, and a chain that has reached
 *    `chain_max` entries (16) when a new source arrives loses its oldest entry;
 *  - `ports_per_host` (20) remembered (port, protocol) pairs per source.
 * Sizes come from settings.psd (config `extensions.psd`), fixed when the table
 * is created. Everything lives in typed arrays allocated once: the packet
 * path allocates nothing.
 *
 * Where xtr differs from upstream 3.x (docs/compat.md, "psd, lscan"): the
 * accumulated weight is a 32-bit count (upstream stores it in 8 bits by
 * accident, so thresholds above 255 could never be reached, which the
 * 0..10000 option range and the man page contradict); time is the packet
 * clock in milliseconds rather than jiffies (delay = N * 10 ms exactly).
 * The state is visible as `xtr proc cat net/xt_psd/ipv4` (and ipv6), a
 * format of xtr's own described in docs/detection.md; upstream exports none.
 */
import type { Family, PacketContext } from '../xt/packet.js';
import type { CheckEnv, MatchExtension } from '../xt/extension.js';
import { XtError } from '../xt/extension.js';
import type { SharedSink, StateShared, StateSpec } from '../xt/state.js';
import { parseUint } from './lib/numbers.js';
import { addrToString, parseAddr } from './lib/addresses.js';

/** Largest value of every option (upstream's PSD_MAX_RATE). */
const PSD_MAX = 10000;

const TCP = 6;
const UDP = 17;
const UDPLITE = 136;
const TCP_ACK = 0x10;
const TCP_RST = 0x04;

export interface PsdParams {
  weightThreshold: number;
  /** Hundredths of a second. */
  delayThreshold: number;
  loPortsWeight: number;
  hiPortsWeight: number;
}

export const PSD_DEFAULTS: Readonly<PsdParams> = { weightThreshold: 21, delayThreshold: 300, loPortsWeight: 3, hiPortsWeight: 1 };

/** Table sizes (settings.psd), upstream's constants as defaults. */
export interface PsdSizes {
  hosts: number;
  hashSize: number;
  chainMax: number;
  portsPerHost: number;
}

export const PSD_SIZE_DEFAULTS: Readonly<PsdSizes> = { hosts: 256, hashSize: 512, chainMax: 16, portsPerHost: 20 };

const NONE = -1;

/**
 * One family's source table (scanlogd's state): slot i holds a source when
 * bucket[i] >= 0 (it is linked into that hash chain). Chains are doubly
 * linked so a slot leaves its chain in O(1); `head[b]` is the newest entry
 * of bucket b, `next` runs towards older entries.
 */
export class PsdTable {
  readonly words: number;
  readonly addr: Uint32Array;
  readonly stamp: Float64Array;
  readonly weight: Uint32Array;
  readonly count: Uint8Array;
  readonly ports: Uint16Array;
  readonly protos: Uint8Array;
  readonly bucket: Int32Array;
  readonly next: Int32Array;
  readonly prev: Int32Array;
  readonly head: Int32Array;
  /** Next slot of the circular list to hand to a new source. */
  index = 0;
  /** Sources whose slot was taken by a newer one, and chain entries cut at chain_max (xtr status / proc). */
  evicted = 0;
  cut = 0;
  private readonly hashBits: number;
  /** Issue 15 (opt-in `shared: [psd]`): the cluster's sink; null = local only. */
  sink: SharedSink<number> | null = null;
  /** Monotonic ms a slot's "flagged" verdict was last shared. */
  readonly sharedAt: Float64Array;

  constructor(
    readonly family: Family,
    readonly sizes: PsdSizes,
  ) {
    const n = sizes.hosts;
    this.words = family === 4 ? 1 : 4;
    this.addr = new Uint32Array(n * this.words);
    this.stamp = new Float64Array(n);
    this.weight = new Uint32Array(n);
    this.count = new Uint8Array(n);
    this.ports = new Uint16Array(n * sizes.portsPerHost);
    this.protos = new Uint8Array(n * sizes.portsPerHost);
    this.bucket = new Int32Array(n).fill(NONE);
    this.next = new Int32Array(n).fill(NONE);
    this.prev = new Int32Array(n).fill(NONE);
    this.head = new Int32Array(sizes.hashSize).fill(NONE);
    this.hashBits = Math.log2(sizes.hashSize);
    this.sharedAt = new Float64Array(n).fill(-Infinity);
  }

  /** scanlogd's hash: XOR-fold of the address (IPv6: its four words XORed first) in hash-size steps. */
  hash(src: Uint32Array | number): number {
    let v: number;
    if (typeof src === 'number') v = src >>> 0;
    else v = (src[0] ^ src[1] ^ src[2] ^ src[3]) >>> 0;
    if (this.hashBits === 0) return 0; // one bucket: a fold by 0 bits would never end
    let h = 0;
    do {
      h ^= v;
      v >>>= this.hashBits;
    } while (v !== 0);
    return h & (this.sizes.hashSize - 1);
  }

  /** Sources currently linked (reachable by a lookup). */
  entries(): number {
    let n = 0;
    for (let i = 0; i < this.bucket.length; i++) if (this.bucket[i] !== NONE) n++;
    return n;
  }

  /**
   * The next slot of the ring for a new source in bucket `b`: first drops
   * `cutLast` (a chain's last entry when the chain is at its bound, else
   * NONE), then evicts whatever the slot held, and links the slot at the
   * bucket's head (the caller fills it in).
   */
  private claim(b: number, cutLast: number): number {
    if (cutLast !== NONE) {
      this.unlink(cutLast);
      this.cut++;
    }
    const slot = this.index;
    this.index = slot + 1 === this.sizes.hosts ? 0 : slot + 1;
    if (this.bucket[slot] !== NONE) {
      this.unlink(slot);
      this.evicted++;
    }
    this.linkHead(slot, b);
    return slot;
  }

  unlink(i: number): void {
    const b = this.bucket[i];
    if (b === NONE) return;
    const p = this.prev[i];
    const nx = this.next[i];
    if (p === NONE) this.head[b] = nx;
    else this.next[p] = nx;
    if (nx !== NONE) this.prev[nx] = p;
    this.bucket[i] = NONE;
    this.next[i] = NONE;
    this.prev[i] = NONE;
  }

  private linkHead(i: number, b: number): void {
    const h = this.head[b];
    this.next[i] = h;
    this.prev[i] = NONE;
    if (h !== NONE) this.prev[h] = i;
    this.head[b] = i;
    this.bucket[i] = b;
  }

  /** Empties the table (proc write "clear"). */
  clear(): void {
    this.bucket.fill(NONE);
    this.next.fill(NONE);
    this.prev.fill(NONE);
    this.head.fill(NONE);
    this.addr.fill(0);
    this.count.fill(0);
    this.weight.fill(0);
    this.index = 0;
  }

  private sameAddr4(i: number, a: number): boolean {
    return this.addr[i] === a;
  }

  private sameAddr6(i: number, a: Uint32Array): boolean {
    const o = i * 4;
    return this.addr[o] === a[0] && this.addr[o + 1] === a[1] && this.addr[o + 2] === a[2] && this.addr[o + 3] === a[3];
  }

  /**
   * One packet from `src` (IPv4 as a number, IPv6 as four words) to `dport`
   * over `proto` with TCP flags `flags`, at `now` ms, judged with rule `p`:
   * scanlogd's algorithm as xt_psd runs it (matches-facts §12, steps 1-6).
   */
  see(src4: number, src6: Uint32Array, proto: number, dport: number, flags: number, now: number, p: PsdParams): boolean {
    const v4 = this.family === 4;
    const b = v4 ? this.hash(src4) : this.hash(src6);
    const delayMs = p.delayThreshold * 10;
    let walked = 0;
    let last = NONE;
    let staleFound = false;
    for (let i = this.head[b]; i !== NONE; i = this.next[i]) {
      walked++;
      if (v4 ? this.sameAddr4(i, src4) : this.sameAddr6(i, src6)) {
        const age = now - this.stamp[i];
        if (age >= 0 && age <= delayMs) return this.portscan(i, proto, dport, flags, now, p);
        // Stale: forgotten, then treated as a new source (and no chain cut).
        this.unlink(i);
        staleFound = true;
        break;
      }
      last = i;
    }
    if (proto === TCP && (flags & TCP_ACK) !== 0) return false;
    const slot = this.claim(b, !staleFound && walked >= this.sizes.chainMax ? last : NONE);
    this.sharedAt[slot] = -Infinity;
    if (v4) this.addr[slot] = src4;
    else {
      const o = slot * 4;
      this.addr[o] = src6[0];
      this.addr[o + 1] = src6[1];
      this.addr[o + 2] = src6[2];
      this.addr[o + 3] = src6[3];
    }
    this.stamp[slot] = now;
    this.count[slot] = 1;
    this.weight[slot] = dport < 1024 ? p.loPortsWeight : p.hiPortsWeight;
    const o = slot * this.sizes.portsPerHost;
    this.ports[o] = dport;
    this.protos[o] = proto;
    return false;
  }

  private portscan(i: number, proto: number, dport: number, flags: number, now: number, p: PsdParams): boolean {
    const o = i * this.sizes.portsPerHost;
    const n = this.count[i];
    for (let k = 0; k < n; k++) if (this.ports[o + k] === dport && this.protos[o + k] === proto) return false;
    if (proto === TCP && (flags & (TCP_ACK | TCP_RST)) !== 0) return false;
    this.stamp[i] = now;
    if (this.weight[i] >= p.weightThreshold) return this.flagged(i, now);
    this.weight[i] += dport < 1024 ? p.loPortsWeight : p.hiPortsWeight;
    if (this.weight[i] >= p.weightThreshold) return this.flagged(i, now);
    if (n < this.sizes.portsPerHost) {
      this.ports[o + n] = dport;
      this.protos[o + n] = proto;
      this.count[i] = n + 1;
    }
    return false;
  }

  /**
   * Issue 15: a source flagged (a rule matched it) is shared with the cluster
   * (docs/cluster.md "psd"), at most once a second per source: a record built
   * now, as the slot may belong to another source by the next flush.
   */
  private flagged(i: number, now: number): true {
    const sink = this.sink;
    if (sink !== null && sink.clock !== undefined && now - this.sharedAt[i] >= PSD_RESHARE_MS) {
      this.sharedAt[i] = now;
      const a = addrToString(this.addr.subarray(i * this.words, (i + 1) * this.words), this.family);
      sink.record(a, { flagged: Math.round(sink.clock.wallNow() - (sink.clock.now() - now)), weight: this.weight[i] });
    }
    return true;
  }

  /**
   * A remote gateway's verdict: the source gets (or keeps) an entry with at
   * least that weight, stamped at the flag time (the later of both), no ports
   * remembered. Each local rule then judges it with its own thresholds: while
   * its delay threshold has not passed, a packet to a port it has not sent
   * to here matches once the weight reaches the rule's threshold.
   */
  adopt(src: Uint32Array, stamp: number, weight: number): void {
    const v4 = this.family === 4;
    const b = v4 ? this.hash(src[0]) : this.hash(src);
    let walked = 0;
    let last = NONE;
    for (let i = this.head[b]; i !== NONE; i = this.next[i]) {
      walked++;
      if (v4 ? this.sameAddr4(i, src[0]) : this.sameAddr6(i, src)) {
        if (stamp > this.stamp[i]) this.stamp[i] = stamp;
        if (weight > this.weight[i]) this.weight[i] = weight;
        return;
      }
      last = i;
    }
    const slot = this.claim(b, walked >= this.sizes.chainMax ? last : NONE);
    // Shared by its gateway: not echoed from here until it is flagged here again a second later.
    this.sharedAt[slot] = -Infinity;
    this.addr.set(src.subarray(0, this.words), slot * this.words);
    this.stamp[slot] = stamp;
    this.count[slot] = 0;
    this.weight[slot] = weight;
  }

  /**
   * The proc view (xtr's own format, docs/detection.md): a header line, then
   * one line per linked source, newest slot first:
   * `SRC weight=W ports=N age_ms=A last=proto/port,...`.
   */
  read(now: number): string {
    const s = this.sizes;
    const lines = [`# psd ipv${this.family}: sources=${this.entries()}/${s.hosts} hash=${s.hashSize} chain_max=${s.chainMax} ports_per_host=${s.portsPerHost} evicted=${this.evicted} chain_cut=${this.cut}`];
    const word = new Uint32Array(this.words);
    for (let step = 1; step <= s.hosts; step++) {
      const i = (this.index - step + s.hosts) % s.hosts;
      if (this.bucket[i] === NONE) continue;
      word.set(this.addr.subarray(i * this.words, (i + 1) * this.words));
      const o = i * s.portsPerHost;
      const list: string[] = [];
      for (let k = 0; k < this.count[i]; k++) list.push(`${protoName(this.protos[o + k])}/${this.ports[o + k]}`);
      lines.push(`${addrToString(word, this.family)} weight=${this.weight[i]} ports=${this.count[i]} age_ms=${Math.max(0, now - this.stamp[i])} last=${list.join(',')}`);
    }
    return `${lines.join('\n')}\n`;
  }
}

/** A flagged source's verdict is re-shared at most this often while it keeps matching. */
export const PSD_RESHARE_MS = 1000;

/**
 * Cluster sharing, opt-in (`cluster.shared: [psd]`, docs/cluster.md): one
 * record per flagged source, `{flagged: wall ms, weight}`; applied by
 * PsdTable.adopt (the larger weight, the later stamp).
 */
const sharedPsd: StateShared<PsdTable, number> = {
  kind: 'psd',
  attach(t, sink) {
    t.sink = sink;
  },
  // Records are built when the source is flagged (sink.record); nothing is left for the flush.
  export: () => null,
  apply(t, id, data, _from, clock) {
    const r = data as { flagged?: unknown; weight?: unknown } | null;
    const a = parseAddr(id, t.family);
    if (a === null || typeof r !== 'object' || r === null || typeof r.flagged !== 'number' || !Number.isFinite(r.flagged) ||
      typeof r.weight !== 'number' || !Number.isInteger(r.weight) || r.weight < 0 || r.weight > 0xffffffff) {
      throw new XtError(`psd: bad cluster record for ${JSON.stringify(id)}`, 1);
    }
    t.adopt(a, clock.now() - (clock.wallNow() - r.flagged), r.weight);
  },
};

function protoName(p: number): string {
  return p === TCP ? 'tcp' : p === UDP ? 'udp' : p === UDPLITE ? 'udplite' : String(p);
}

/** settings.psd: { hosts, hash_size, chain_max, ports_per_host }, each checked; upstream's sizes when absent. */
export function psdSizesOf(settings: Readonly<Record<string, unknown>>): PsdSizes {
  const s = (settings.psd ?? {}) as Record<string, unknown>;
  const int = (key: string, dflt: number, min: number, max: number, pow2 = false): number => {
    const v = s[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max || (pow2 && (v & (v - 1)) !== 0)) {
      throw new XtError(`settings.psd.${key}: ${JSON.stringify(v)}: must be an integer ${min}..${max}${pow2 ? ', a power of two' : ''}`, 1);
    }
    return v;
  };
  return {
    hosts: int('hosts', PSD_SIZE_DEFAULTS.hosts, 1, 1 << 20),
    hashSize: int('hash_size', PSD_SIZE_DEFAULTS.hashSize, 1, 1 << 20, true),
    chainMax: int('chain_max', PSD_SIZE_DEFAULTS.chainMax, 1, 1 << 20),
    portsPerHost: int('ports_per_host', PSD_SIZE_DEFAULTS.portsPerHost, 1, 255),
  };
}

export function psdTableSpec(family: Family, sizes: PsdSizes, env: CheckEnv): StateSpec<PsdTable> {
  const name = family === 4 ? 'ipv4' : 'ipv6';
  return {
    key: `psd:${name}`,
    create: () => new PsdTable(family, sizes),
    limit: {
      max: sizes.hosts,
      eviction: `circular list of ${sizes.hosts} slots: a new source takes the oldest-created slot; a hash chain of ${sizes.chainMax} loses its oldest entry`,
      count: (t) => t.entries(),
    },
    proc: {
      path: `net/xt_psd/${name}`,
      read: (t) => t.read(env.services.now()),
      write: (t, data) => {
        if (data.trim() !== 'clear') throw new XtError(`net/xt_psd/${name}: ${JSON.stringify(data.trim())}: only "clear" is understood`);
        t.clear();
      },
    },
    shared: sharedPsd,
  };
}

const OPTIONS = [
  ['psd-weight-threshold', 'weightThreshold'],
  ['psd-delay-threshold', 'delayThreshold'],
  ['psd-lo-ports-weight', 'loPortsWeight'],
  ['psd-hi-ports-weight', 'hiPortsWeight'],
] as const;

const psd: MatchExtension<PsdParams> = {
  kind: 'match',
  name: 'psd',
  families: [4, 6],
  // libxt_psd is an old-style parser: it never looks at `!`, so iptables accepts and ignores it.
  options: OPTIONS.map(([name]) => ({ name, arg: 'required' as const, invertible: true })),
  parse(opts) {
    const p: PsdParams = { ...PSD_DEFAULTS };
    const seen = new Set<string>();
    for (const o of opts) {
      const field = OPTIONS.find(([n]) => n === o.name)![1];
      if (seen.has(o.name)) throw new XtError(`Can't specify --${o.name} twice`);
      seen.add(o.name);
      const v = parseUint(o.value ?? '', PSD_MAX);
      if (v < 0) throw new XtError(`bad --${o.name} '${o.value ?? ''}'`);
      p[field] = v;
    }
    return p;
  },
  check(p, env) {
    // xt_psd's checkentry (v3): it refuses these with EINVAL and logs nothing; xtr says why.
    if (p.weightThreshold === 0) throw new XtError('xt_psd: --psd-weight-threshold 0 would match every first packet', 1, 'EINVAL');
    if ((p.loPortsWeight | p.hiPortsWeight) === 0) throw new XtError('xt_psd: --psd-lo-ports-weight and --psd-hi-ports-weight both 0 would never match', 1, 'EINVAL');
    const family = env.rule.family;
    const spec = psdTableSpec(family, psdSizesOf(env.settings), env);
    const table = env.state.declare(spec);
    const params: PsdParams = { ...p };
    const match =
      family === 4
        ? (pkt: PacketContext): boolean => {
            if (pkt.fragmentOffset !== 0 || pkt.src4 === 0) return false;
            const proto = pkt.proto;
            if (proto !== TCP && proto !== UDP && proto !== UDPLITE) return false;
            return table.see(pkt.src4, pkt.src6, proto, pkt.dport, pkt.tcpFlags, pkt.now, params);
          }
        : (pkt: PacketContext): boolean => {
            const s = pkt.src6;
            if ((s[0] | s[1] | s[2] | s[3]) === 0 || pkt.fragmentOffset !== 0) return false;
            const proto = pkt.proto;
            if (proto !== TCP && proto !== UDP && proto !== UDPLITE) return false;
            return table.see(0, s, proto, pkt.dport, pkt.tcpFlags, pkt.now, params);
          };
    return { match, destroy: () => env.state.release(spec.key) };
  },
  // libxt_psd's words, its trailing space included (iptables-save then shows two spaces before -j).
  save(p) {
    return ` --psd-weight-threshold ${p.weightThreshold} --psd-delay-threshold ${p.delayThreshold} --psd-lo-ports-weight ${p.loPortsWeight} --psd-hi-ports-weight ${p.hiPortsWeight} `;
  },
  print(p) {
    return ` -m psd${psd.save(p)}`;
  },
};

export default psd;
