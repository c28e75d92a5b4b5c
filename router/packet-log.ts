/**
 * The packet log: where NFLOG's packets go (services.nflog), the router's
 * nfnetlink_log. Listeners subscribe to a group number; a packet logged to a
 * group nobody listens to is dropped after one lookup, with nothing copied.
 * A listener gets a PacketLogRecord it owns (the bytes are a copy).
 *
 * The control socket turns a subscription into a stream of JSON lines
 * (`nflogStream`, the `nflog` stream request) that `xtr nflog`
 * (router/nflog-cli.ts) writes as pcap or pcapng (dataplane/pcap.ts).
 *
 * Not carried (as the kernel would for some packets): the socket's UID/GID
 * (xtr has no sockets for what it logs), conntrack attributes, sequence
 * numbers; --nflog-threshold batching (a record is delivered at once).
 */
import type net from 'node:net';
import { ipv4ToString, ipv6ToString } from '../dataplane/addr.js';
import { HOOK_NAMES, type Family, type PacketContext } from '../xt/packet.js';

/** One logged packet as listeners receive it. */
export interface PacketLogRecord {
  readonly group: number;
  readonly prefix: string;
  readonly family: Family;
  /** Netfilter hook number (0 PREROUTING .. 4 POSTROUTING), as NFULA_PACKET_HDR carries it. */
  readonly hook: number;
  /** xtr's interface index and config name; 0 and '' when none. */
  readonly inIndex: number;
  readonly inName: string;
  readonly outIndex: number;
  readonly outName: string;
  readonly mark: number;
  /** Wall-clock time the packet was logged: seconds and microseconds since the epoch. */
  readonly sec: number;
  readonly usec: number;
  /** The packet's length (IP header onward); `data` may be shorter (--nflog-size). */
  readonly length: number;
  /** The first caplen bytes of the IP packet. */
  readonly data: Uint8Array;
  /** The Ethernet header the packet arrived with (TAP ingress), else null. */
  readonly hwHeader: Uint8Array | null;
  /** One line for people: "TCP 198.51.100.2:40000 > 203.0.113.2:80 [S] len 60". */
  readonly summary: string;
}

export type PacketLogListener = (r: PacketLogRecord) => void;

export class PacketLogHub {
  private readonly groups = new Map<number, Set<PacketLogListener>>();
  /** Records delivered to at least one listener since start. */
  delivered = 0;

  /** Listens to `group`; returns the unsubscribe function. */
  subscribe(group: number, listener: PacketLogListener): () => void {
    let set = this.groups.get(group);
    if (!set) this.groups.set(group, (set = new Set()));
    set.add(listener);
    return () => {
      const s = this.groups.get(group);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) this.groups.delete(group);
    };
  }

  /** Whether anyone listens to `group` (the one check a packet without a listener costs). */
  wanted(group: number): boolean {
    return this.groups.has(group);
  }

  /** Number of groups with listeners. */
  get groupsListened(): number {
    return this.groups.size;
  }

  /** Delivers `record` to the listeners of its group; a listener that throws is removed. */
  publish(record: PacketLogRecord): void {
    const set = this.groups.get(record.group);
    if (!set) return;
    this.delivered++;
    for (const l of set) {
      try {
        l(record);
      } catch {
        set.delete(l);
      }
    }
  }
}

/** Copies what a record needs out of `pkt` (called only when someone listens). */
export function recordOf(pkt: PacketContext, group: number, prefix: string, caplen: number): PacketLogRecord {
  const usecNow = Math.round((performance.timeOrigin + performance.now()) * 1000);
  const end = pkt.l3off + Math.max(0, Math.min(caplen, pkt.l3len));
  const l2 = pkt.l2off;
  return {
    group,
    prefix,
    family: pkt.family,
    hook: pkt.hook,
    inIndex: pkt.inIf?.index ?? 0,
    inName: pkt.inIf?.name ?? '',
    outIndex: pkt.outIf?.index ?? 0,
    outName: pkt.outIf?.name ?? '',
    mark: pkt.mark >>> 0,
    sec: Math.floor(usecNow / 1e6),
    usec: usecNow % 1e6,
    length: pkt.l3len,
    data: Uint8Array.prototype.slice.call(pkt.buf, pkt.l3off, end),
    hwHeader: l2 >= 0 && l2 + 14 <= pkt.l3off && pkt.inIf !== null ? Uint8Array.prototype.slice.call(pkt.buf, l2, l2 + 14) : null,
    summary: summaryOf(pkt),
  };
}

const TCP_FLAG_LETTERS = ['F', 'S', 'R', 'P', '.', 'U', 'E', 'W'];
const PROTO_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP', 136: 'UDPLITE' };

/** "PROTO SRC[:SPORT] > DST[:DPORT] [details] len N", from the context the router parsed. */
export function summaryOf(pkt: PacketContext): string {
  const v4 = pkt.family === 4;
  const src = v4 ? ipv4ToString(pkt.src4) : ipv6ToString(pkt.src6);
  const dst = v4 ? ipv4ToString(pkt.dst4) : ipv6ToString(pkt.dst6);
  const name = PROTO_NAMES[pkt.proto] ?? `proto ${pkt.proto}`;
  const ports = !pkt.isFragment || pkt.fragmentOffset === 0;
  const hasPorts = ports && (pkt.proto === 6 || pkt.proto === 17 || pkt.proto === 132 || pkt.proto === 136);
  const at = (a: string, p: number) => (hasPorts ? (v4 ? `${a}:${p}` : `[${a}]:${p}`) : a);
  let s = `${name} ${at(src, pkt.sport)} > ${at(dst, pkt.dport)}`;
  if (ports && pkt.proto === 6) {
    let f = '';
    for (let i = 0; i < 8; i++) if (pkt.tcpFlags & (1 << i)) f += TCP_FLAG_LETTERS[i];
    s += ` [${f}]`;
  } else if (ports && (pkt.proto === 1 || pkt.proto === 58) && pkt.icmpType >= 0) {
    s += ` type ${pkt.icmpType} code ${pkt.icmpCode}`;
  }
  if (pkt.isFragment) s += ` frag ${pkt.fragmentOffset}`;
  return `${s} len ${pkt.l3len}`;
}

/** The `nflog.packet` event fields `xtr events` shows (no packet bytes). */
export function eventFields(r: PacketLogRecord): Record<string, string | number> {
  return {
    group: r.group,
    prefix: r.prefix,
    hook: HOOK_NAMES[r.hook] ?? String(r.hook),
    in: r.inName,
    out: r.outName,
    len: r.length,
    caplen: r.data.length,
    summary: r.summary,
  };
}

/** One record as the `nflog` stream sends it: a JSON line, bytes in base64. */
export function recordLine(r: PacketLogRecord): string {
  return (
    JSON.stringify({
      kind: 'nflog.packet',
      group: r.group,
      prefix: r.prefix,
      family: r.family,
      hook: r.hook,
      inIndex: r.inIndex,
      in: r.inName,
      outIndex: r.outIndex,
      out: r.outName,
      mark: r.mark,
      sec: r.sec,
      usec: r.usec,
      len: r.length,
      data: Buffer.from(r.data.buffer, r.data.byteOffset, r.data.length).toString('base64'),
      hw: r.hwHeader ? Buffer.from(r.hwHeader).toString('hex') : null,
      summary: r.summary,
    }) + '\n'
  );
}

/** Reads a `nflog.packet` line back (the client side); throws on a malformed one. */
export function parseRecordLine(v: Record<string, unknown>): PacketLogRecord {
  const num = (k: string) => {
    const x = v[k];
    if (typeof x !== 'number' || !Number.isFinite(x)) throw new Error(`nflog stream: "${k}" is not a number`);
    return x;
  };
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : '');
  const family = num('family');
  if (family !== 4 && family !== 6) throw new Error(`nflog stream: family ${family}`);
  return {
    group: num('group'),
    prefix: str('prefix'),
    family,
    hook: num('hook'),
    inIndex: num('inIndex'),
    inName: str('in'),
    outIndex: num('outIndex'),
    outName: str('out'),
    mark: num('mark'),
    sec: num('sec'),
    usec: num('usec'),
    length: num('len'),
    data: new Uint8Array(Buffer.from(str('data'), 'base64')),
    hwHeader: typeof v.hw === 'string' ? new Uint8Array(Buffer.from(v.hw, 'hex')) : null,
    summary: str('summary'),
  };
}

/**
 * Bytes queued on one `nflog` stream socket beyond which packets are dropped
 * (counted, then announced with an `nflog.dropped` line) rather than
 * buffered: a capture that cannot keep up costs bounded memory and never
 * slows the router, like a full netlink socket buffer in the kernel.
 */
export const NFLOG_MAX_QUEUED_BYTES = 4 << 20;

export const NFLOG_STREAM_USAGE = 'usage: xtr nflog [-g GROUP]... (GROUP 0-65535, default 0)';

/**
 * The control socket's `nflog [-g GROUP]...` stream: the connection becomes
 * one JSON line per logged packet of those groups until the client closes it.
 * The first line is `{"kind":"nflog.subscribed","groups":[...]}`.
 */
export function nflogStream(hub: PacketLogHub): (sock: net.Socket, args: readonly string[]) => Promise<void> {
  return (sock, args) => {
    const groups: number[] = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      const v = a === '-g' || a === '--group' ? args[++i] : undefined;
      const n = v !== undefined && /^\d{1,5}$/.test(v) ? Number(v) : -1;
      if (n < 0 || n > 65535) {
        const what = v === undefined ? `unknown argument ${JSON.stringify(a)}` : `bad group ${JSON.stringify(v)}`;
        sock.end(JSON.stringify({ status: 2, stdout: '', stderr: `xtr nflog: ${what} (${NFLOG_STREAM_USAGE})\n` }) + '\n');
        return Promise.resolve();
      }
      if (!groups.includes(n)) groups.push(n);
    }
    if (groups.length === 0) groups.push(0);
    let dropped = 0;
    return new Promise<void>((resolve) => {
      const listener = (r: PacketLogRecord) => {
        if (sock.destroyed) return;
        if (sock.writableLength > NFLOG_MAX_QUEUED_BYTES) {
          dropped++;
          return;
        }
        if (dropped) {
          sock.write(JSON.stringify({ kind: 'nflog.dropped', count: dropped }) + '\n');
          dropped = 0;
        }
        sock.write(recordLine(r));
      };
      const unsubscribe = groups.map((g) => hub.subscribe(g, listener));
      sock.once('close', () => {
        for (const u of unsubscribe) u();
        resolve();
      });
      sock.write(JSON.stringify({ kind: 'nflog.subscribed', groups }) + '\n');
    });
  };
}
