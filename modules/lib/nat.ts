/**
 * What the NAT targets (SNAT, DNAT, MASQUERADE, REDIRECT, NETMAP) share:
 * iptables 1.8.9 libxt_NAT/MASQUERADE/REDIRECT's parsing of
 * `addr[-addr][:port[-port[/base]]]` and `port[-port[/base]]` with their
 * error words (checked against iptables-legacy: test/nat-parse-diff.test.ts),
 * the printing of a range, and the packet-time call into conntrack NAT.
 */
import { XtError, type RuleInfo } from '../../xt/extension.js';
import { NatRangeFlag, newNatRange, type NatRange } from '../../xt/nat.js';
import { addrToString, parseAddr } from './addresses.js';
import { xtStrtoul } from './numbers.js';

/** Plain params form of a range (JSON-safe: saved with the rule set). */
export interface NatRangeParams {
  flags: number;
  minAddr: number[];
  maxAddr: number[];
  minPort: number;
  maxPort: number;
  basePort: number;
}

export function emptyRangeParams(): NatRangeParams {
  return { flags: 0, minAddr: [0, 0, 0, 0], maxAddr: [0, 0, 0, 0], minPort: 0, maxPort: 0, basePort: 0 };
}

/** The range a target hands conntrack, built once at check time. */
export function toNatRange(p: NatRangeParams): NatRange {
  const r = newNatRange();
  r.flags = p.flags;
  r.minAddr.set(p.minAddr);
  r.maxAddr.set(p.maxAddr);
  r.minPort = p.minPort;
  r.maxPort = p.maxPort;
  r.basePort = p.basePort;
  return r;
}

/** Whether `-p` names a protocol with ports, as libxt_NAT's portok (tcp, udp, sctp, dccp; `! -p tcp` too: iptables looks only at the number). */
export function portsAllowed(rule: RuleInfo): boolean {
  return (rule.proto === 6 || rule.proto === 17 || rule.proto === 132 || rule.proto === 33);
}

const NEED_PORTS = 'Need TCP, UDP, SCTP or DCCP with port specification';

/** libxt_NAT's parse_ports: `port[-port[/base]]` (xtables_strtoui, base 0). */
export function parsePorts(arg: string, portok: boolean, r: NatRangeParams): void {
  if (!portok) throw new XtError(NEED_PORTS);
  r.flags |= NatRangeFlag.PROTO_SPECIFIED;
  const a = xtStrtoul(arg, 0, 0xffff);
  if (a === null) throw new XtError(`Port \`${arg}' not valid`);
  const c = arg[a.end];
  if (c === undefined) {
    r.minPort = r.maxPort = a.value;
    return;
  }
  if (c === ':') throw new XtError('Invalid port:port syntax - use dash');
  if (c !== '-') throw new XtError(`Garbage after port value: \`${arg.slice(a.end)}'`);
  const rest = arg.slice(a.end + 1);
  const b = xtStrtoul(rest, 0, 0xffff);
  if (b === null) throw new XtError(`Port \`${rest}' not valid`);
  if (b.value < a.value) throw new XtError(`Port range \`${rest}' funky`);
  r.minPort = a.value;
  r.maxPort = b.value;
  const d = rest[b.end];
  if (d === undefined) return;
  if (d !== '/') throw new XtError(`Garbage after port range: \`${rest.slice(b.end)}'`);
  const baseText = rest.slice(b.end + 1);
  const base = xtStrtoul(baseText, 0, 0xffff);
  // what follows the base is not looked at (iptables 1.8.9 accepts `/150x`)
  if (base === null || base.value < 1) throw new XtError(`Port \`${baseText}' not valid`);
  r.flags |= NatRangeFlag.PROTO_OFFSET;
  r.basePort = base.value;
}

/** libxt_NAT's parse_to: `addr[-addr][:ports]`, IPv6 as `[addr[-addr]]:ports` when ports are given. */
export function parseTo(orig: string, portok: boolean, family: 4 | 6, r: NatRangeParams): void {
  let start: string;
  let colonAt = -1;
  let text = orig;
  const bracket = orig.indexOf('[');
  if (bracket < 0) {
    start = orig;
    // one colon is port information; more make an IPv6 address
    const c = orig.indexOf(':');
    if (c >= 0 && orig.indexOf(':', c + 1) < 0) colonAt = c;
  } else {
    const end = orig.indexOf(']', bracket + 1);
    if (end < 0 || family === 4) throw new XtError('Invalid address format');
    start = orig.slice(bracket + 1, end);
    const c = orig.indexOf(':', end + 1);
    if (c >= 0) colonAt = c;
    text = orig;
  }
  if (colonAt >= 0) {
    parsePorts(text.slice(colonAt + 1), portok, r);
    // ":port" or "[]:port": no address
    if (colonAt === 0 || (bracket >= 0 && colonAt === 2)) return;
    if (bracket < 0) start = orig.slice(0, colonAt);
  }
  r.flags |= NatRangeFlag.MAP_IPS;
  const dash = start.indexOf('-');
  const lo = dash >= 0 ? start.slice(0, dash) : start;
  const min = parseAddr(lo, family);
  if (min === null || lo === '') throw new XtError(`Bad IP address "${lo}"`);
  r.minAddr = Array.from(min);
  if (dash >= 0) {
    const hiText = start.slice(dash + 1);
    const max = parseAddr(hiText, family);
    if (max === null || hiText === '') throw new XtError(`Bad IP address "${hiText}"`);
    r.maxAddr = Array.from(max);
  } else {
    r.maxAddr = Array.from(min);
  }
}

function sameAddr(a: number[], b: number[]): boolean {
  return a[0] === b[0] && a[1] === b[1] && a[2] === b[2] && a[3] === b[3];
}

/** libxt_NAT's print_range: what follows `to:` / `--to-source ` (`[v6]` when ports follow). */
export function rangeText(r: NatRangeParams, family: 4 | 6, withBase: boolean): string {
  let s = '';
  const ports = (r.flags & NatRangeFlag.PROTO_SPECIFIED) !== 0;
  if ((r.flags & NatRangeFlag.MAP_IPS) !== 0) {
    const a = addrToString(Uint32Array.from(r.minAddr), family);
    const b = addrToString(Uint32Array.from(r.maxAddr), family);
    const bracket = family === 6 && ports;
    if (bracket) s += '[';
    s += a;
    if (!sameAddr(r.minAddr, r.maxAddr)) s += `-${b}`;
    if (bracket) s += ']';
  }
  if (ports) s += ':' + portsText(r, withBase);
  return s;
}

/** `a`, `a-b`, `a-b/base` (the base only where the kernel revision keeps it; else `/0`). */
export function portsText(r: NatRangeParams, withBase: boolean): string {
  let s = `${r.minPort}`;
  if (r.maxPort !== r.minPort) s += `-${r.maxPort}`;
  if ((r.flags & NatRangeFlag.PROTO_OFFSET) !== 0) s += `/${withBase ? r.basePort : 0}`;
  return s;
}

/** The flag words of save (` --random`...) or print (` random`...). */
export function flagWords(flags: number, save: boolean, order: readonly number[] = [NatRangeFlag.PROTO_RANDOM, NatRangeFlag.PROTO_RANDOM_FULLY, NatRangeFlag.PERSISTENT]): string {
  const name = (f: number) => (f === NatRangeFlag.PROTO_RANDOM ? 'random' : f === NatRangeFlag.PROTO_RANDOM_FULLY ? 'random-fully' : 'persistent');
  let s = '';
  for (const f of order) if ((flags & f) !== 0) s += save ? ` --${name(f)}` : ` ${name(f)}`;
  return s;
}

/** libxtables' "can only be used once", raised while parsing (before the repeated option's value is looked at). */
export function once(ext: string, seen: Set<string>, name: string): void {
  if (seen.has(name)) throw new XtError(`${ext}: option "--${name}" can only be used once.\n`);
  seen.add(name);
}
