/**
 * `-m tcp` (also loaded implicitly by `-p tcp --dport ...`): ports, flags and
 * option presence, as libxt_tcp + xt_tcpudp.
 *
 * The port helpers it shares with udp, multiport and conntrack are in
 * lib/ports.ts.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type FieldRange, type MatchExtension, type ParsedOption } from '../xt/extension.js';
import { describePorts, parsePortRange, printPortRange, savePortRange } from './lib/ports.js';
import { parseUint } from './lib/numbers.js';

const IPPROTO_TCP = 6;

export const TCP_FLAG_NAMES: readonly (readonly [string, number])[] = [
  ['FIN', 0x01],
  ['SYN', 0x02],
  ['RST', 0x04],
  ['PSH', 0x08],
  ['ACK', 0x10],
  ['URG', 0x20],
  ['ALL', 0x3f],
  ['NONE', 0],
];

function parseFlagList(s: string): number {
  let v = 0;
  for (const w of s.split(',')) {
    const f = TCP_FLAG_NAMES.find(([n]) => n.toLowerCase() === w.toLowerCase());
    if (!f) throw new XtError(`Unknown TCP flag \`${w}'`);
    v |= f[1];
  }
  return v;
}

function printFlags(v: number): string {
  if (v === 0) return 'NONE';
  const out: string[] = [];
  for (const [n, bit] of TCP_FLAG_NAMES.slice(0, 6)) if (v & bit) out.push(n);
  return out.join(',');
}

export interface TcpParams {
  spts: [number, number];
  dpts: [number, number];
  invSrc: boolean;
  invDst: boolean;
  flgMask: number;
  flgCmp: number;
  invFlags: boolean;
  /** 0 = no option test. */
  option: number;
  invOption: boolean;
}

/** True if the TCP header at pkt.l4off carries option `kind` (walks the option list). */
export function tcpHasOption(buf: Uint8Array, l4off: number, l4len: number, kind: number): boolean {
  const doff = (buf[l4off + 12] >> 4) * 4;
  if (doff < 20 || doff > l4len) return false;
  const end = l4off + doff;
  let i = l4off + 20;
  while (i < end) {
    const k = buf[i];
    if (k === kind) return true;
    // END and NOP are single bytes; the kernel walks past END too.
    if (k === 0 || k === 1) {
      i++;
      continue;
    }
    const len = i + 1 < end ? buf[i + 1] : 0;
    i += len < 2 ? 1 : len;
  }
  return false;
}

/** The packet-side test shared by `tcp` and the implicit `-p tcp` match. */
export function matchTcp(p: TcpParams, pkt: PacketContext): boolean {
  if (pkt.fragmentOffset !== 0 || pkt.proto !== IPPROTO_TCP || pkt.l4len < 20) return false;
  if ((pkt.sport >= p.spts[0] && pkt.sport <= p.spts[1]) === p.invSrc) return false;
  if ((pkt.dport >= p.dpts[0] && pkt.dport <= p.dpts[1]) === p.invDst) return false;
  if (((pkt.tcpFlags & p.flgMask) === p.flgCmp) === p.invFlags) return false;
  if (p.option !== 0 && tcpHasOption(pkt.buf, pkt.l4off, pkt.l4len, p.option) === p.invOption) return false;
  return true;
}

const tcp: MatchExtension<TcpParams> = {
  kind: 'match',
  name: 'tcp',
  families: [4, 6],
  proto: IPPROTO_TCP,
  options: [
    { name: 'source-port', arg: 'required', invertible: true, aliases: ['sport'] },
    { name: 'destination-port', arg: 'required', invertible: true, aliases: ['dport'] },
    { name: 'syn', arg: 'none', invertible: true },
    { name: 'tcp-flags', arg: 'required', invertible: true, nargs: 2 },
    { name: 'tcp-option', arg: 'required', invertible: true },
  ],
  parse(opts: readonly ParsedOption[]) {
    const p: TcpParams = {
      spts: [0, 65535],
      dpts: [0, 65535],
      invSrc: false,
      invDst: false,
      flgMask: 0,
      flgCmp: 0,
      invFlags: false,
      option: 0,
      invOption: false,
    };
    const seen = new Set<string>();
    for (const o of opts) {
      const v = o.value ?? '';
      const once = (key: string, msg: string) => {
        if (seen.has(key)) throw new XtError(msg);
        seen.add(key);
      };
      switch (o.name) {
        case 'source-port':
          once('sport', "Only one `--source-port' allowed");
          p.spts = parsePortRange(v, 'tcp');
          p.invSrc = o.inverted;
          break;
        case 'destination-port':
          once('dport', "Only one `--destination-port' allowed");
          p.dpts = parsePortRange(v, 'tcp');
          p.invDst = o.inverted;
          break;
        case 'syn':
          once('flags', "Only one of `--syn' or `--tcp-flags'  allowed");
          p.flgMask = 0x17;
          p.flgCmp = 0x02;
          p.invFlags = o.inverted;
          break;
        case 'tcp-flags': {
          once('flags', "Only one of `--syn' or `--tcp-flags'  allowed");
          const words = v.split(' ');
          if (words.length !== 2) throw new XtError('--tcp-flags requires two args.');
          p.flgMask = parseFlagList(words[0]);
          p.flgCmp = parseFlagList(words[1]);
          p.invFlags = o.inverted;
          break;
        }
        case 'tcp-option': {
          once('option', "Only one `--tcp-option' allowed");
          const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
          if (!(n >= 1 && n <= 255)) throw new XtError(`Bad TCP option "${v}"`);
          p.option = n;
          p.invOption = o.inverted;
          break;
        }
      }
    }
    return p;
  },
  check(p) {
    return { match: (pkt) => matchTcp(p, pkt) };
  },
  save(p) {
    let s = savePortRange('sport', p.spts[0], p.spts[1], p.invSrc) + savePortRange('dport', p.dpts[0], p.dpts[1], p.invDst);
    if (p.option !== 0 || p.invOption) s += `${p.invOption ? ' !' : ''} --tcp-option ${p.option}`;
    if (p.flgMask !== 0 || p.invFlags) s += `${p.invFlags ? ' !' : ''} --tcp-flags ${printFlags(p.flgMask)} ${printFlags(p.flgCmp)}`;
    return s;
  },
  print(p, numeric = false) {
    let s = ' tcp' + printPortRange('spt', p.spts[0], p.spts[1], p.invSrc, 'tcp', numeric) + printPortRange('dpt', p.dpts[0], p.dpts[1], p.invDst, 'tcp', numeric);
    if (p.option !== 0 || p.invOption) s += ` option=${p.invOption ? '!' : ''}${p.option}`;
    if (p.flgMask !== 0 || p.invFlags) {
      const hex2 = (v: number) => `0x${v.toString(16).toUpperCase().padStart(2, '0')}`;
      s += ` flags:${p.invFlags ? '!' : ''}${numeric ? `${hex2(p.flgMask)}/${hex2(p.flgCmp)}` : `${printFlags(p.flgMask)}/${printFlags(p.flgCmp)}`}`;
    }
    return s;
  },
  describe(p) {
    return describePorts(p.spts, p.invSrc, p.dpts, p.invDst);
  },
};

export default tcp;
