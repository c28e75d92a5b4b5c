/**
 * `-m tcp` (also loaded implicitly by `-p tcp --dport ...`): ports, flags and
 * option presence, as libxt_tcp + xt_tcpudp.
 *
 * Also exports the port helpers udp and multiport share (service names come
 * from /etc/services, read once, as getservbyname would).
 */
import { readFileSync } from 'node:fs';
import type { PacketContext } from '../xt/packet.js';
import { parseUint } from './mark.js';
import { XtError, type FieldRange, type MatchExtension, type ParsedOption } from '../xt/extension.js';

const IPPROTO_TCP = 6;

let services: Map<string, number> | null = null;
/** "port/proto" -> the first name /etc/services gives (getservbyport). */
let serviceNames: Map<string, string> | null = null;

function loadServices(): Map<string, number> {
  if (services === null) {
    services = new Map();
    serviceNames = new Map();
    try {
      for (const line of readFileSync('/etc/services', 'utf8').split('\n')) {
        const words = line.replace(/#.*/, '').trim().split(/\s+/);
        const m = /^(\d+)\/(\w+)$/.exec(words[1] ?? '');
        if (!m) continue;
        if (!serviceNames!.has(words[1])) serviceNames!.set(words[1], words[0]);
        for (const n of [words[0], ...words.slice(2)]) {
          const key = `${n}/${m[2]}`;
          if (!services.has(key)) services.set(key, Number(m[1]));
        }
      }
    } catch {
      // No services database: only numeric ports work, as with an empty /etc/services.
    }
  }
  return services;
}

/** Port number of a service name for "tcp"/"udp"/..., or -1. */
export function servicePort(name: string, proto: string): number {
  return loadServices().get(`${name}/${proto}`) ?? -1;
}

/** A port as `iptables -L` prints it: the service name unless numeric or unknown. */
export function portText(port: number, proto: string, numeric: boolean): string {
  if (numeric) return `${port}`;
  loadServices();
  return serviceNames!.get(`${port}/${proto}`) ?? `${port}`;
}

/** libxt_tcp/udp print_ports: " spt:X", " spts:X:Y", with "!" after the colon. */
export function printPortRange(name: string, lo: number, hi: number, inv: boolean, proto: string, numeric: boolean): string {
  if (lo === 0 && hi === 65535 && !inv) return '';
  const i = inv ? '!' : '';
  if (lo === hi) return ` ${name}:${i}${portText(lo, proto, numeric)}`;
  return ` ${name}s:${i}${portText(lo, proto, numeric)}:${portText(hi, proto, numeric)}`;
}

/** Classifier hints for a port pair (tcp, udp). */
export function describePorts(spts: [number, number], invSrc: boolean, dpts: [number, number], invDst: boolean): FieldRange[] {
  const r: FieldRange[] = [];
  if (spts[0] !== 0 || spts[1] !== 65535 || invSrc) r.push({ field: 'sport', min: spts[0], max: spts[1], inverted: invSrc });
  if (dpts[0] !== 0 || dpts[1] !== 65535 || invDst) r.push({ field: 'dport', min: dpts[0], max: dpts[1], inverted: invDst });
  return r;
}

/**
 * libxtables' xtables_parse_port without its error: a number as
 * xtables_strtoui reads it (base 0, so `0x10` and octal `010` too), else a
 * service name of `proto` (getservbyname); -1 if neither.
 */
export function parsePortOrService(s: string, proto: string): number {
  const n = parseUint(s, 65535);
  if (n >= 0) return n;
  return s === '' ? -1 : servicePort(s, proto);
}

/** `a`, `a:b`, `:b`, `a:`, `:` as parse_tcp_ports in libxt_tcp (a reversed range is refused; udp differs). */
export function parsePortRange(s: string, proto: string): [number, number] {
  const port = (p: string): number => {
    const n = parsePortOrService(p, proto);
    if (n < 0) throw new XtError(`invalid port/service \`${p}' specified`);
    return n;
  };
  const colon = s.indexOf(':');
  if (colon < 0) {
    const p = port(s);
    return [p, p];
  }
  const lo = colon === 0 ? 0 : port(s.slice(0, colon));
  const hi = colon === s.length - 1 ? 65535 : port(s.slice(colon + 1));
  if (lo > hi) throw new XtError('invalid portrange (min > max)');
  return [lo, hi];
}

/** Save text of a port range option, or '' when it is the full, non-inverted range. */
export function savePortRange(opt: string, lo: number, hi: number, inv: boolean): string {
  if (lo === 0 && hi === 65535 && !inv) return '';
  return `${inv ? ' !' : ''} --${opt} ${lo === hi ? lo : `${lo}:${hi}`}`;
}

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
