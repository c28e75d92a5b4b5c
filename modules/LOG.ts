/**
 * `-j LOG`: one kernel-style line per packet through services.log, in the
 * format of the kernel's nf_log_syslog (ipt_LOG/ip6t_LOG), e.g.
 *   PREFIX IN=eth0 OUT= MAC=... SRC=10.0.0.1 DST=10.0.0.2 LEN=60 TOS=0x00
 *   PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=1 DPT=22 WINDOW=512 RES=0x00 SYN URGP=0
 * (fields end in a space, as the kernel prints them). --log-uid prints
 * nothing: xtr has no sockets for forwarded or host-interface packets.
 */
import type { PacketContext } from '../xt/packet.js';
import { getU16, getU32 } from '../dataplane/bytes.js';
import { ipv4ToString } from '../dataplane/addr.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';
import { parseUint } from './lib/numbers.js';
import { saveString } from './lib/strings.js';
import { x6Check } from './lib/options.js';

const LEVELS: readonly (readonly [string, number])[] = [
  ['emerg', 0], ['panic', 0], ['alert', 1], ['crit', 2], ['err', 3], ['error', 3],
  ['warning', 4], ['notice', 5], ['info', 6], ['debug', 7],
];

export const enum LogFlag {
  TCPSEQ = 0x01,
  TCPOPT = 0x02,
  IPOPT = 0x04,
  UID = 0x08,
  MACDECODE = 0x20,
}
const FLAG_OPTS: readonly (readonly [string, number])[] = [
  ['log-tcp-sequence', LogFlag.TCPSEQ],
  ['log-tcp-options', LogFlag.TCPOPT],
  ['log-ip-options', LogFlag.IPOPT],
  ['log-uid', LogFlag.UID],
  ['log-macdecode', LogFlag.MACDECODE],
];

export interface LogParams {
  level: number;
  prefix: string;
  flags: number;
}

const hex2 = (v: number) => v.toString(16).padStart(2, '0');
const HEX2 = (v: number) => v.toString(16).toUpperCase().padStart(2, '0');

function optBytes(b: Uint8Array, from: number, to: number): string {
  let s = 'OPT (';
  for (let i = from; i < to; i++) s += HEX2(b[i]);
  return s + ') ';
}

/** %pI6: eight 4-digit groups, no compression. */
function ip6Full(b: Uint8Array, o: number): string {
  const g: string[] = [];
  for (let i = 0; i < 16; i += 2) g.push(hex2(b[o + i]) + hex2(b[o + i + 1]));
  return g.join(':');
}

function tcpText(b: Uint8Array, t: number, avail: number, flags: number): string {
  let s = 'PROTO=TCP ';
  if (avail < 20) return s + `INCOMPLETE [${Math.max(0, avail)} bytes] `;
  s += `SPT=${getU16(b, t)} DPT=${getU16(b, t + 2)} `;
  if (flags & LogFlag.TCPSEQ) s += `SEQ=${getU32(b, t + 4)} ACK=${getU32(b, t + 8)} `;
  s += `WINDOW=${getU16(b, t + 14)} RES=0x${hex2((b[t + 12] & 0x0f) << 2)} `;
  const f = b[t + 13];
  if (f & 0x80) s += 'CWR ';
  if (f & 0x40) s += 'ECE ';
  if (f & 0x20) s += 'URG ';
  if (f & 0x10) s += 'ACK ';
  if (f & 0x08) s += 'PSH ';
  if (f & 0x04) s += 'RST ';
  if (f & 0x02) s += 'SYN ';
  if (f & 0x01) s += 'FIN ';
  s += `URGP=${getU16(b, t + 18)} `;
  const doff = (b[t + 12] >> 4) * 4;
  if (flags & LogFlag.TCPOPT && doff > 20 && doff <= avail) s += optBytes(b, t + 20, t + doff);
  return s;
}

function udpText(name: string, b: Uint8Array, u: number, avail: number): string {
  let s = `PROTO=${name} `;
  if (avail < 8) return s + `INCOMPLETE [${Math.max(0, avail)} bytes] `;
  return s + `SPT=${getU16(b, u)} DPT=${getU16(b, u + 2)} LEN=${getU16(b, u + 4)} `;
}

/** Bytes an ICMP message of each type must have for its fields to be logged. */
const ICMP_REQUIRED: Record<number, number> = { 0: 4, 3: 28, 4: 28, 5: 28, 8: 4, 11: 28, 12: 28, 13: 20, 14: 20, 17: 12, 18: 12 };

/** dump_ipv4_packet: `o` = IP header offset, `end` = end of the bytes we have; inner = quoted in an ICMP error. */
function ipv4Text(b: Uint8Array, o: number, end: number, flags: number, inner: boolean, mark: number): string {
  if (end - o < 20) return 'TRUNCATED';
  const ihl = (b[o] & 15) * 4;
  const tos = b[o + 1];
  const ff = getU16(b, o + 6);
  let s = `SRC=${ipv4ToString(getU32(b, o + 12))} DST=${ipv4ToString(getU32(b, o + 16))} `;
  s += `LEN=${getU16(b, o + 2)} TOS=0x${HEX2(tos & 0x1e)} PREC=0x${HEX2(tos & 0xe0)} TTL=${b[o + 8]} ID=${getU16(b, o + 4)} `;
  if (ff & 0x8000) s += 'CE ';
  if (ff & 0x4000) s += 'DF ';
  if (ff & 0x2000) s += 'MF ';
  const frag = ff & 0x1fff;
  if (frag) s += `FRAG:${frag} `;
  if (flags & LogFlag.IPOPT && ihl > 20 && o + ihl <= end) s += optBytes(b, o + 20, o + ihl);
  const l4 = o + ihl;
  const avail = end - l4;
  const proto = b[o + 9];
  switch (proto) {
    case 6:
      if (frag) s += 'PROTO=TCP ';
      else {
        s += tcpText(b, l4, avail, flags);
        if (avail < 20) return s;
      }
      break;
    case 17:
    case 136:
      if (frag) s += `PROTO=${proto === 17 ? 'UDP' : 'UDPLITE'} `;
      else {
        s += udpText(proto === 17 ? 'UDP' : 'UDPLITE', b, l4, avail);
        if (avail < 8) return s;
      }
      break;
    case 1: {
      s += 'PROTO=ICMP ';
      if (frag) break;
      if (avail < 4) {
        s += `INCOMPLETE [${Math.max(0, avail)} bytes] `;
        break;
      }
      const type = b[l4];
      const code = b[l4 + 1];
      s += `TYPE=${type} CODE=${code} `;
      const need = ICMP_REQUIRED[type] ?? 0;
      if (need && avail < need) {
        s += `INCOMPLETE [${avail} bytes] `;
        break;
      }
      if (type === 0 || type === 8) s += `ID=${getU16(b, l4 + 4)} SEQ=${getU16(b, l4 + 6)} `;
      else if (type === 12) s += `PARAMETER=${b[l4 + 4]} `;
      else if (type === 3 || type === 4 || type === 5 || type === 11) {
        if (type === 5) s += `GATEWAY=${ipv4ToString(getU32(b, l4 + 4))} `;
        if (!inner) s += `[${ipv4Text(b, l4 + 8, end, flags, true, 0)}] `;
        if (type === 3 && code === 4) s += `MTU=${getU16(b, l4 + 6)} `;
      }
      break;
    }
    default:
      s += `PROTO=${proto} `;
  }
  if (!inner && mark !== 0) s += `MARK=0x${(mark >>> 0).toString(16)} `;
  return s;
}

/** dump_ipv6_packet (extension headers other than the fragment header are not itemised). */
function ipv6Text(pkt: PacketContext, b: Uint8Array, o: number, end: number, flags: number, inner: boolean): string {
  if (end - o < 40) return 'TRUNCATED';
  const w = getU32(b, o);
  let s = `SRC=${ip6Full(b, o + 8)} DST=${ip6Full(b, o + 24)} `;
  s += `LEN=${getU16(b, o + 4) + 40} TC=${(w >>> 20) & 0xff} HOPLIMIT=${b[o + 7]} FLOWLBL=${w & 0xfffff} `;
  // Outer packet: the parser already walked the extension headers.
  let proto: number;
  let l4: number;
  let frag = 0;
  if (!inner) {
    proto = pkt.proto;
    l4 = pkt.l4off;
    frag = pkt.fragmentOffset;
    if (pkt.isFragment) s += `FRAG:${frag} `;
  } else {
    proto = b[o + 6];
    l4 = o + 40;
  }
  const avail = end - l4;
  switch (proto) {
    case 6:
      s += frag ? 'PROTO=TCP ' : tcpText(b, l4, avail, flags);
      break;
    case 17:
    case 136:
      s += frag ? `PROTO=${proto === 17 ? 'UDP' : 'UDPLITE'} ` : udpText(proto === 17 ? 'UDP' : 'UDPLITE', b, l4, avail);
      break;
    case 58: {
      s += 'PROTO=ICMPv6 ';
      if (frag) break;
      if (avail < 8) {
        s += `INCOMPLETE [${Math.max(0, avail)} bytes] `;
        break;
      }
      const type = b[l4];
      s += `TYPE=${type} CODE=${b[l4 + 1]} `;
      if (type === 128 || type === 129) s += `ID=${getU16(b, l4 + 4)} SEQ=${getU16(b, l4 + 6)} `;
      else if (type >= 1 && type <= 4) {
        if (type === 4) s += `POINTER=${getU32(b, l4 + 4).toString(16).padStart(8, '0')} `;
        if (!inner) s += `[${ipv6Text(pkt, b, l4 + 8, end, flags, true)}] `;
        if (type === 2) s += `MTU=${getU32(b, l4 + 4)} `;
      }
      break;
    }
    default:
      s += `PROTO=${proto} `;
  }
  if (!inner && pkt.mark !== 0) s += `MARK=0x${(pkt.mark >>> 0).toString(16)} `;
  return s;
}

/** The whole line for pkt (exported for tests and for LOGMARK-style targets). */
export function formatLogLine(pkt: PacketContext, prefix: string, flags: number): string {
  let s = `${prefix}IN=${pkt.inIf?.name ?? ''} OUT=${pkt.outIf?.name ?? ''} `;
  const b = pkt.buf;
  if (pkt.inIf !== null) {
    const l2 = pkt.l2off;
    const hasEth = l2 >= 0 && l2 + 14 <= pkt.l3off;
    if (hasEth && flags & LogFlag.MACDECODE) {
      const mac = (o: number) => Array.from(b.subarray(o, o + 6), hex2).join(':');
      s += `MACSRC=${mac(l2 + 6)} MACDST=${mac(l2)} MACPROTO=${hex2(b[l2 + 12])}${hex2(b[l2 + 13])} `;
    } else if (hasEth) {
      s += `MAC=${Array.from(b.subarray(l2, l2 + 14), hex2).join(':')} `;
    } else {
      s += 'MAC= ';
    }
  }
  const end = pkt.l3off + pkt.l3len;
  s += pkt.family === 4 ? ipv4Text(b, pkt.l3off, end, flags, false, pkt.mark) : ipv6Text(pkt, b, pkt.l3off, end, flags, false);
  return s;
}

const LOG: TargetExtension<LogParams> = {
  kind: 'target',
  name: 'LOG',
  families: [4, 6],
  options: [
    { name: 'log-level', arg: 'required' },
    { name: 'log-prefix', arg: 'required' },
    ...FLAG_OPTS.map(([name]) => ({ name, arg: 'none' as const })),
  ],
  parse(opts) {
    const given = x6Check('LOG', opts, [{ name: 'log-level' }, { name: 'log-prefix' }, ...FLAG_OPTS.map(([name]) => ({ name }))]);
    const p: LogParams = { level: 4, prefix: '', flags: 0 };
    const lv = given.get('log-level');
    if (lv) {
      const v = lv.value ?? '';
      const named = LEVELS.find(([n]) => n === v);
      const n = named ? named[1] : parseUint(v, 7);
      if (n < 0) throw new XtError(`log level "${v}" unknown\n`);
      p.level = n;
    }
    const pf = given.get('log-prefix');
    if (pf) {
      const v = pf.value ?? '';
      if (v.length === 0) throw new XtError('Argument must have a minimum length of 1 characters\n');
      // The kernel's prefix field holds 29 characters; iptables cuts longer ones.
      p.prefix = Buffer.from(v).subarray(0, 29).toString();
    }
    for (const [name, bit] of FLAG_OPTS) if (given.has(name)) p.flags |= bit;
    return p;
  },
  check(p, env) {
    const { level, prefix, flags } = p;
    const services = env.services;
    return {
      target(pkt: PacketContext): number {
        services.log(level, formatLogLine(pkt, prefix, flags));
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    let s = '';
    if (p.prefix) s += ` --log-prefix${saveString(p.prefix)}`;
    if (p.level !== 4) s += ` --log-level ${p.level}`;
    for (const [name, bit] of FLAG_OPTS) if (p.flags & bit) s += ` --${name}`;
    return s;
  },
  print(p) {
    return ` LOG flags ${p.flags} level ${p.level}${p.prefix ? ` prefix "${p.prefix}"` : ''}`;
  },
};

export default LOG;
