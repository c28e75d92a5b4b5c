/**
 * `-m conntrack` (revision 3): --ctstate, --ctproto, --ctorigsrc/--ctorigdst,
 * --ctreplsrc/--ctrepldst, the four port options, --ctstatus, --ctexpire,
 * --ctdir; as libxt_conntrack + xt_conntrack. Every test is ANDed; a packet
 * without a connection (INVALID or UNTRACKED) can only match through
 * --ctstate.
 */
import type { Family, PacketContext } from '../xt/packet.js';
import type { ConnTuple } from '../xt/conn.js';
import { XtError, type MatchExtension } from '../xt/extension.js';
import { formatAddrMask, parseAddrMask } from './lib/addresses.js';
import { parsePortRangeRC } from './lib/ports.js';
import { parseStateList, printStateList } from './lib/ctstate.js';
import { parseUint } from './lib/numbers.js';
import { x6Check } from './lib/options.js';

const STATUS_NAMES: readonly (readonly [string, number])[] = [
  ['NONE', 0],
  ['EXPECTED', 1],
  ['SEEN_REPLY', 2],
  ['ASSURED', 4],
  ['CONFIRMED', 8],
];
const PROTOS: Record<string, number> = { all: 0, icmp: 1, tcp: 6, udp: 17, udplite: 136, sctp: 132, dccp: 33, icmpv6: 58, 'ipv6-icmp': 58, gre: 47, esp: 50, ah: 51 };

interface AddrTest { addr: Uint32Array; mask: Uint32Array; inv: boolean }
interface PortTest { lo: number; hi: number; inv: boolean }

export interface ConntrackParams {
  family: Family;
  state: { mask: number; inv: boolean } | null;
  proto: { num: number; inv: boolean } | null;
  /** origsrc, origdst, replsrc, repldst */
  addrs: (AddrTest | null)[];
  /** origsrcport, origdstport, replsrcport, repldstport */
  ports: (PortTest | null)[];
  status: { mask: number; inv: boolean } | null;
  expire: { lo: number; hi: number; inv: boolean } | null;
  /** true = REPLY */
  dir: boolean | null;
}

const ADDR_OPTS = ['ctorigsrc', 'ctorigdst', 'ctreplsrc', 'ctrepldst'];
const PORT_OPTS = ['ctorigsrcport', 'ctorigdstport', 'ctreplsrcport', 'ctrepldstport'];

function addrMatch(t: AddrTest, w: Uint32Array): boolean {
  for (let i = 0; i < 4; i++) if (((w[i] & t.mask[i]) >>> 0) !== t.addr[i]) return t.inv;
  return !t.inv;
}

function tupleAddr(tp: ConnTuple, i: number): Uint32Array {
  return (i & 1) === 0 ? tp.src : tp.dst;
}

const conntrack: MatchExtension<ConntrackParams> = {
  kind: 'match',
  name: 'conntrack',
  revision: 3,
  families: [4, 6],
  needsConntrack: () => true,
  options: [
    { name: 'ctstate', arg: 'required', invertible: true },
    { name: 'ctproto', arg: 'required', invertible: true },
    ...ADDR_OPTS.map((name) => ({ name, arg: 'required' as const, invertible: true })),
    { name: 'ctstatus', arg: 'required', invertible: true },
    { name: 'ctexpire', arg: 'required', invertible: true },
    ...PORT_OPTS.map((name) => ({ name, arg: 'required' as const, invertible: true })),
    { name: 'ctdir', arg: 'required' },
  ],
  parse(opts, rule) {
    // libxt_conntrack's final check runs before the generic option checks.
    if (opts.length === 0) throw new XtError('conntrack: At least one option is required');
    const given = x6Check('conntrack', opts, conntrack.options.map((o) => ({ name: o.name })));
    const p: ConntrackParams = { family: rule.family, state: null, proto: null, addrs: [null, null, null, null], ports: [null, null, null, null], status: null, expire: null, dir: null };
    for (const o of given.values()) {
      const v = o.value ?? '';
      const bad = () => new XtError(`conntrack: Bad value for "--${o.name}" option: "${v}"`);
      const ai = ADDR_OPTS.indexOf(o.name);
      const pi = PORT_OPTS.indexOf(o.name);
      if (o.name === 'ctstate') p.state = { mask: parseStateList(v, true, 'ctstate'), inv: o.inverted };
      else if (o.name === 'ctproto') {
        const num = PROTOS[v.toLowerCase()] ?? parseUint(v, 255);
        if (num < 0) throw new XtError(`unknown protocol "${v}" specified`);
        if (num === 0) throw new XtError('conntrack: --ctproto: protocol 0 is not allowed');
        p.proto = { num, inv: o.inverted };
      } else if (ai >= 0) {
        const am = parseAddrMask(v, rule.family);
        if (!am) throw new XtError(`host/network \`${v}' not found`);
        p.addrs[ai] = { ...am, inv: o.inverted };
      } else if (pi >= 0) {
        const [lo, hi] = parsePortRangeRC('conntrack', o.name, v);
        p.ports[pi] = { lo, hi, inv: o.inverted };
      } else if (o.name === 'ctstatus') {
        let mask = 0;
        for (const w of v.split(',')) {
          const row = STATUS_NAMES.find(([n]) => n.toLowerCase() === w.toLowerCase());
          if (!row) throw new XtError(`Bad ctstatus "${w}"`);
          mask |= row[1];
        }
        p.status = { mask, inv: o.inverted };
      } else if (o.name === 'ctexpire') {
        const m = /^([^:]+)(?::(.+))?$/.exec(v);
        const lo = m ? parseUint(m[1]) : -1;
        const hi = m?.[2] !== undefined ? parseUint(m[2]) : lo;
        if (lo < 0 || hi < 0) throw bad();
        if (lo > hi) throw new XtError(`expire min. range value "${lo}" greater than max. range value "${hi}"`);
        p.expire = { lo, hi, inv: o.inverted };
      } else if (o.name === 'ctdir') {
        if (v.toUpperCase() === 'ORIGINAL') p.dir = false;
        else if (v.toUpperCase() === 'REPLY') p.dir = true;
        else throw new XtError(`Unknown --ctdir value "${v}"`);
      }
    }
    return p;
  },
  check(p) {
    const { state, proto, addrs, ports, status, expire, dir } = p;
    return {
      match(pkt: PacketContext): boolean {
        if (state !== null && ((pkt.ctState & state.mask) !== 0) === state.inv) return false;
        const ct = pkt.ct;
        if (ct === null) return state !== null;
        if (dir !== null && ct.isReply(pkt) !== dir) return false;
        if (proto !== null && (ct.proto === proto.num) === proto.inv) return false;
        for (let i = 0; i < 4; i++) {
          const a = addrs[i];
          if (a !== null && !addrMatch(a, tupleAddr(i < 2 ? ct.orig : ct.repl, i))) return false;
          const pt = ports[i];
          if (pt !== null) {
            const tp = i < 2 ? ct.orig : ct.repl;
            const port = (i & 1) === 0 ? tp.sport : tp.dport;
            if ((port >= pt.lo && port <= pt.hi) === pt.inv) return false;
          }
        }
        if (status !== null && ((ct.status & status.mask) !== 0) === status.inv) return false;
        if (expire !== null) {
          const left = ct.remaining(pkt.now);
          if ((left >= expire.lo && left <= expire.hi) === expire.inv) return false;
        }
        return true;
      },
    };
  },
  save(p) {
    const neg = (inv: boolean) => (inv ? ' !' : '');
    let s = '';
    if (p.state) s += `${neg(p.state.inv)} --ctstate ${printStateList(p.state.mask)}`;
    if (p.proto) s += `${neg(p.proto.inv)} --ctproto ${p.proto.num}`;
    p.addrs.forEach((a, i) => {
      if (a) s += `${neg(a.inv)} --${ADDR_OPTS[i]} ${formatAddrMask(a.addr, a.mask, p.family)}`;
    });
    p.ports.forEach((pt, i) => {
      if (pt) s += `${neg(pt.inv)} --${PORT_OPTS[i]} ${pt.lo === pt.hi ? pt.lo : `${pt.lo}:${pt.hi}`}`;
    });
    if (p.status) {
      const names = p.status.mask === 0 ? 'NONE' : STATUS_NAMES.filter(([, b]) => b !== 0 && (p.status!.mask & b) !== 0).map(([n]) => n).join(',');
      s += `${neg(p.status.inv)} --ctstatus ${names}`;
    }
    if (p.expire) s += `${neg(p.expire.inv)} --ctexpire ${p.expire.lo === p.expire.hi ? p.expire.lo : `${p.expire.lo}:${p.expire.hi}`}`;
    if (p.dir !== null) s += ` --ctdir ${p.dir ? 'REPLY' : 'ORIGINAL'}`;
    return s;
  },
  print(p) {
    return conntrack.save(p).replace(/ --ct/g, ' ct');
  },
};

export default conntrack;
