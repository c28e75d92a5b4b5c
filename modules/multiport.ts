/**
 * `-m multiport` revision 1: up to 15 port slots (a range takes two), as
 * libxt_multiport + xt_multiport. Needs a port-carrying `-p`.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension, type RuleInfo } from '../xt/extension.js';
import { parsePortOrService, portText } from './lib/ports.js';

const MAX_PORTS = 15;
const PROTO_NAMES: Record<number, string> = { 6: 'tcp', 17: 'udp', 136: 'udplite', 132: 'sctp', 33: 'dccp' };

export const enum MultiportDir {
  SOURCE = 0,
  DESTINATION = 1,
  EITHER = 2,
}

export interface MultiportParams {
  dir: MultiportDir;
  /** Inclusive ranges: lo[i]..hi[i] (a single port has lo === hi). */
  lo: number[];
  hi: number[];
  inv: boolean;
  /** The rule's -p (service names for iptables -L). */
  proto: number;
}

const OPT_NAMES = ['source-ports', 'destination-ports', 'ports'];
const SAVE_NAMES = ['sports', 'dports', 'ports'];

/**
 * parse_multi_ports_v1 of libxt_multiport, step by step (its error order
 * included): comma-separated ports or `a:b` ranges with a < b, a range
 * taking two of the 15 slots.
 */
function parseList(s: string, proto: string): { lo: number[]; hi: number[] } {
  const lo: number[] = [];
  const hi: number[] = [];
  const port = (p: string) => {
    const n = parsePortOrService(p, proto);
    if (n < 0) throw new XtError(`invalid port/service \`${p}' specified`);
    return n;
  };
  let rest: string | null = s;
  for (let slot = 0; rest !== null && slot < MAX_PORTS; slot++) {
    const comma = rest.indexOf(',');
    const item = comma < 0 ? rest : rest.slice(0, comma);
    rest = comma < 0 ? null : rest.slice(comma + 1);
    const colon = item.indexOf(':');
    if (colon >= 0 && slot === MAX_PORTS - 1) throw new XtError('too many ports specified');
    const a = port(colon < 0 ? item : item.slice(0, colon));
    let b = a;
    if (colon >= 0) {
      slot++;
      b = port(item.slice(colon + 1));
      if (a >= b) throw new XtError('invalid portrange specified');
    }
    lo.push(a);
    hi.push(b);
  }
  if (rest !== null) throw new XtError('too many ports specified');
  return { lo, hi };
}

function matchPorts(p: MultiportParams, pkt: PacketContext): boolean {
  if (pkt.fragmentOffset !== 0 || pkt.l4len < 4) return false;
  const s = pkt.sport;
  const d = pkt.dport;
  const { lo, hi, dir } = p;
  for (let i = 0; i < lo.length; i++) {
    const a = lo[i];
    const b = hi[i];
    if (dir !== MultiportDir.DESTINATION && s >= a && s <= b) return !p.inv;
    if (dir !== MultiportDir.SOURCE && d >= a && d <= b) return !p.inv;
  }
  return p.inv;
}

const multiport: MatchExtension<MultiportParams> = {
  kind: 'match',
  name: 'multiport',
  revision: 1,
  families: [4, 6],
  options: [
    { name: 'source-ports', arg: 'required', invertible: true, aliases: ['sports'] },
    { name: 'destination-ports', arg: 'required', invertible: true, aliases: ['dports'] },
    { name: 'ports', arg: 'required', invertible: true },
  ],
  parse(opts, rule: RuleInfo) {
    let p: MultiportParams | null = null;
    let prev = '';
    for (const o of opts) {
      const dir = OPT_NAMES.indexOf(o.name);
      if (dir < 0) continue;
      if (p) {
        if (prev === o.name) throw new XtError(`multiport: option "--${o.name}" can only be used once.\n`);
        throw new XtError(`multiport: option "--${o.name}" cannot be used together with "--${prev}".\n`);
      }
      const protoName = PROTO_NAMES[rule.proto];
      if (protoName === undefined || rule.protoInverted) {
        throw new XtError("multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'");
      }
      const { lo, hi } = parseList(o.value ?? '', protoName);
      p = { dir, lo, hi, inv: o.inverted, proto: rule.proto };
      prev = o.name;
    }
    // iptables' own spelling.
    if (!p) throw new XtError('multiport expection an option');
    return p;
  },
  check(p) {
    return { match: (pkt) => matchPorts(p, pkt) };
  },
  save(p) {
    const list = p.lo.map((a, i) => (a === p.hi[i] ? `${a}` : `${a}:${p.hi[i]}`)).join(',');
    return `${p.inv ? ' !' : ''} --${SAVE_NAMES[p.dir]} ${list}`;
  },
  print(p, numeric = false) {
    const proto = PROTO_NAMES[p.proto] ?? 'tcp';
    const port = (v: number) => portText(v, proto, numeric);
    const list = p.lo.map((a, i) => (a === p.hi[i] ? port(a) : `${port(a)}:${port(p.hi[i])}`)).join(',');
    return ` multiport ${SAVE_NAMES[p.dir]} ${p.inv ? ' !' : ''}${list}`;
  },
  describe(p) {
    // One range in one direction is a plain field range; lists are left to match().
    if (p.lo.length !== 1 || p.dir === MultiportDir.EITHER) return [];
    return [{ field: p.dir === MultiportDir.SOURCE ? 'sport' : 'dport', min: p.lo[0], max: p.hi[0], inverted: p.inv }];
  },
};

export default multiport;
