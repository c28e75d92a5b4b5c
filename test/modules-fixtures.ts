/**
 * Packet fixtures for the module tests are built here from bytes and run
 * through the codec's parsePacket, so matches see what the pipeline sees.
 */
import { PacketContext } from '../router/packet.js';
import type { Extension, ParsedOption } from '../modules/types.js';
import { parsePacket } from '../dataplane/parse.js';
import { checksum, finish, pseudoSum4, sum16, pseudoSum6 } from '../dataplane/checksum.js';
import { parseIpv4 } from '../dataplane/ipv4.js';
import { parseIpv6 } from '../dataplane/ipv6.js';

export interface L4 {
  proto: number;
  bytes: number[];
  /** Offset of the checksum field inside bytes, or -1. */
  csumAt: number;
}

export function tcpSeg(sport: number, dport: number, flags: number, o: { seq?: number; ack?: number; win?: number; options?: number[]; payload?: number[]; res?: number } = {}): L4 {
  const opts = o.options ?? [];
  const doff = 5 + Math.ceil(opts.length / 4);
  const b = [sport >> 8, sport & 255, dport >> 8, dport & 255];
  const u32 = (v: number) => [(v >>> 24) & 255, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
  b.push(...u32(o.seq ?? 1000), ...u32(o.ack ?? 0), (doff << 4) | (o.res ?? 0), flags, ...[(o.win ?? 512) >> 8, (o.win ?? 512) & 255], 0, 0, 0, 0);
  b.push(...opts);
  while (b.length < doff * 4) b.push(0);
  b.push(...(o.payload ?? []));
  return { proto: 6, bytes: b, csumAt: 16 };
}

export function udpDgram(sport: number, dport: number, payload: number[] = []): L4 {
  const len = 8 + payload.length;
  return { proto: 17, bytes: [sport >> 8, sport & 255, dport >> 8, dport & 255, len >> 8, len & 255, 0, 0, ...payload], csumAt: 6 };
}

export function icmpMsg(type: number, code: number, rest: number[] = [0, 0, 0, 0], payload: number[] = [], v6 = false): L4 {
  return { proto: v6 ? 58 : 1, bytes: [type, code, 0, 0, ...rest, ...payload], csumAt: 2 };
}

export function ip4(src: string, dst: string, l4: L4, o: { ttl?: number; tos?: number; id?: number; df?: boolean; frag?: number; mf?: boolean; options?: number[] } = {}): Buffer {
  const opts = o.options ?? [];
  const ihl = 20 + opts.length;
  const total = ihl + l4.bytes.length;
  const b = Buffer.alloc(total);
  b[0] = 0x40 | (ihl / 4);
  b[1] = o.tos ?? 0;
  b.writeUInt16BE(total, 2);
  b.writeUInt16BE(o.id ?? 1, 4);
  b.writeUInt16BE((o.df ? 0x4000 : 0) | (o.mf ? 0x2000 : 0) | (o.frag ?? 0), 6);
  b[8] = o.ttl ?? 64;
  b[9] = l4.proto;
  b.writeUInt32BE(parseIpv4(src), 12);
  b.writeUInt32BE(parseIpv4(dst), 16);
  Buffer.from(opts).copy(b, 20);
  b.writeUInt16BE(checksum(b, 0, ihl), 10);
  Buffer.from(l4.bytes).copy(b, ihl);
  if (l4.csumAt >= 0 && !(o.frag ?? 0)) {
    const len = l4.bytes.length;
    const ps = l4.proto === 1 ? 0 : pseudoSum4(parseIpv4(src), parseIpv4(dst), l4.proto, len);
    let c = finish(sum16(b, ihl, len, ps));
    if (l4.proto === 17 && c === 0) c = 0xffff;
    b.writeUInt16BE(c, ihl + l4.csumAt);
  }
  return b;
}

export function ip6(src: string, dst: string, l4: L4, o: { hlim?: number; tc?: number; flow?: number } = {}): Buffer {
  const len = l4.bytes.length;
  const b = Buffer.alloc(40 + len);
  b.writeUInt32BE(((6 << 28) | ((o.tc ?? 0) << 20) | (o.flow ?? 0)) >>> 0, 0);
  b.writeUInt16BE(len, 4);
  b[6] = l4.proto;
  b[7] = o.hlim ?? 64;
  const s = parseIpv6(src);
  const d = parseIpv6(dst);
  for (let i = 0; i < 4; i++) {
    b.writeUInt32BE(s[i], 8 + 4 * i);
    b.writeUInt32BE(d[i], 24 + 4 * i);
  }
  Buffer.from(l4.bytes).copy(b, 40);
  const c = finish(sum16(b, 40, len, pseudoSum6(b, 8, l4.proto, len)));
  b.writeUInt16BE(l4.proto === 17 && c === 0 ? 0xffff : c, 40 + l4.csumAt);
  return b;
}

/** Parses bytes into a fresh context (with `headroom` bytes in front, as the router leaves). */
export function ctxOf(bytes: Buffer, now = 0, headroom = 0): PacketContext {
  const ctx = new PacketContext();
  const buf = Buffer.alloc(headroom + bytes.length);
  bytes.copy(buf, headroom);
  const r = parsePacket(ctx, buf, headroom, bytes.length);
  if (r !== 0) throw new Error(`fixture does not parse: drop reason ${r}`);
  ctx.now = now;
  return ctx;
}

/** iptables-style words for one extension → ParsedOption[] (aliases and nargs resolved as the engine does). */
export function words(ext: Extension, text: string): ParsedOption[] {
  const w = text.match(/"[^"]*"|\S+/g)?.map((x) => x.replace(/^"|"$/g, '')) ?? [];
  const out: ParsedOption[] = [];
  for (let i = 0; i < w.length; i++) {
    let inverted = false;
    if (w[i] === '!') {
      inverted = true;
      i++;
    }
    const n = w[i].replace(/^--/, '');
    const spec = ext.options.find((o) => o.name === n || o.aliases?.includes(n));
    if (!spec) throw new Error(`test: unknown option ${w[i]} for ${ext.name}`);
    let value: string | null = null;
    if (spec.arg === 'required') {
      const k = spec.nargs ?? 1;
      value = w.slice(i + 1, i + 1 + k).join(' ');
      i += k;
    }
    out.push({ name: spec.name, value, inverted });
  }
  return out;
}

