/**
 * Fragments cut by hand from whole datagrams, for the reassembly and router
 * tests: any boundaries, orders, flags and header variations, independent of
 * the codec's own fragmenters.
 */
import { checksum } from '../dataplane/checksum.js';
import { udp6 } from './router-packets.js';

/** An IPv4 fragment of `whole` (unfragmented) carrying data bytes [start, end). */
export function frag4(whole: Buffer, start: number, end: number, o: { mf?: boolean; df?: boolean; ttl?: number; tos?: number } = {}): Buffer {
  const hl = (whole[0] & 15) * 4;
  const b = Buffer.concat([whole.subarray(0, hl), whole.subarray(hl + start, hl + end)]);
  b.writeUInt16BE(b.length, 2);
  const mf = o.mf ?? hl + end < whole.length;
  b.writeUInt16BE((o.df ? 0x4000 : 0) | (mf ? 0x2000 : 0) | (start >> 3), 6);
  if (o.ttl !== undefined) b[8] = o.ttl;
  if (o.tos !== undefined) b[1] = o.tos;
  b.writeUInt16BE(0, 10);
  b.writeUInt16BE(checksum(b, 0, hl), 10);
  return b;
}

/** A TCP SYN datagram with `payload` bytes (checksum not needed by reassembly). */
export function tcp4(payload: number): Buffer {
  const b = Buffer.alloc(40 + payload);
  b[0] = 0x45;
  b.writeUInt16BE(b.length, 2);
  b.writeUInt16BE(0x4242, 4);
  b[8] = 64;
  b[9] = 6;
  b.writeUInt32BE(0xc6336402, 12);
  b.writeUInt32BE(0xcb007102, 16);
  b.writeUInt16BE(checksum(b, 0, 20), 10);
  b.writeUInt16BE(1000, 20);
  b.writeUInt16BE(22, 22);
  b[32] = 0x50;
  b[33] = 0x02;
  for (let i = 0; i < payload; i++) b[40 + i] = i & 0xff;
  return b;
}

/** IPv6: the unfragmentable part (base header + its extension headers, the last naming 44), what the Fragment header names, the fragmentable bytes. */
export interface V6 {
  unfrag: Buffer;
  /** Offset of the byte in `unfrag` that names the Fragment header. */
  nhOff: number;
  nh: number;
  data: Buffer;
  ident: number;
}

export function frag6(p: V6, start: number, end: number, m = end < p.data.length): Buffer {
  const piece = p.data.subarray(start, end);
  const b = Buffer.alloc(p.unfrag.length + 8 + piece.length);
  p.unfrag.copy(b, 0);
  b.writeUInt16BE(b.length - 40, 4);
  const f = p.unfrag.length;
  b[f] = p.nh;
  b.writeUInt16BE((start & 0xfff8) | (m ? 1 : 0), f + 2);
  b.writeUInt32BE(p.ident, f + 4);
  piece.copy(b, f + 8);
  return b;
}

/** What reassembly must produce from frag6 pieces: the unfragmentable part (Fragment header's link restored) and the data. */
export function whole6(p: V6): Buffer {
  const b = Buffer.concat([p.unfrag, p.data]);
  b[p.nhOff] = p.nh;
  b.writeUInt16BE(b.length - 40, 4);
  return b;
}

/** A UDP datagram over IPv6 split as V6, optionally with a Hop-by-Hop header before and a Destination Options header after the Fragment header. */
export function v6(o: { payload?: number; hbh?: boolean; destAfter?: boolean; ident?: number; src?: string; dst?: string } = {}): V6 {
  const u = udp6({ src: o.src ?? '2001:db8:c::2', dst: o.dst ?? '2001:db8:5::2', payload: o.payload ?? 200 });
  const base = Buffer.from(u.subarray(0, 40));
  const udp = u.subarray(40);
  let unfrag = base;
  let nhOff = 6;
  if (o.hbh) {
    const hbh = Buffer.from([44, 0, 1, 4, 0, 0, 0, 0]);
    unfrag = Buffer.concat([base, hbh]);
    unfrag[6] = 0;
    nhOff = 40;
  } else {
    unfrag[6] = 44;
  }
  const data = o.destAfter ? Buffer.concat([Buffer.from([17, 0, 1, 4, 0, 0, 0, 0]), udp]) : Buffer.from(udp);
  return { unfrag, nhOff, nh: o.destAfter ? 60 : 17, data, ident: o.ident ?? 0xabcd1234 };
}

