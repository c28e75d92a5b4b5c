/**
 * lscan: low-level TCP scan detection, xtables-addons' xt_lscan.
 *
 * Each tracked TCP connection is followed through a small state machine kept
 * in its connmark (upstream's design: no memory of its own), and the match is
 * true on the packet that completes a scan pattern and on every later packet
 * of that connection:
 *   --stealth  a packet with no connection that is not a pure SYN (FIN, XMAS,
 *              NULL, SYN+FIN ... scans);
 *   --synscan  SYN, then anything but the handshake's ACK (nmap -sS: RST);
 *   --cnscan   SYN, ACK, then FIN/RST (a full connect torn down at once);
 *   --grscan   SYN, ACK, bare ACKs only, then FIN/RST (a banner grabbed);
 *   --mirai    IPv4 TCP sequence number equal to the destination address.
 * The rule belongs where only the remote side's packets pass (INPUT, or
 * FORWARD with `-i` of the outside link): seeing the local SYN/ACK moves a
 * connection to "SYN scan".
 *
 * The connection's state is the connmark under `connmark_mask`; a packet that
 * went through the state machine carries `mark_seen` in its nfmark (under
 * `packet_mask`) so a second lscan rule does not step it again. Masks and
 * state values are upstream's module parameters, taken from settings.lscan
 * (config `extensions.lscan`) with upstream's defaults: with them the whole
 * connmark is overwritten and the packet mark set to 9 (narrow the masks to
 * share the marks with other rules).
 *
 * Where xtr differs from upstream 3.x (docs/compat.md, "psd, lscan"):
 * --synscan reports SYN scans as the man page promises and xtables-addons 1.x
 * did; 3.15+ reports them under --stealth and never consults --synscan (a
 * regression of its flag rework). ip6tables accepts -m lscan (upstream's
 * kernel side handles IPv6, its iptables library registers IPv4 only).
 */
import type { PacketContext } from '../xt/packet.js';
import { CtState } from '../xt/packet.js';
import type { CheckEnv, MatchExtension } from '../xt/extension.js';
import { XtError } from '../xt/extension.js';

export interface LscanParams {
  stealth: boolean;
  synscan: boolean;
  cnscan: boolean;
  grscan: boolean;
  mirai: boolean;
}

/** Upstream's module parameters (xt_lscan's connmark_mask, packet_mask, mark_*). */
export interface LscanMarks {
  connmarkMask: number;
  packetMask: number;
  seen: number;
  synrcv: number;
  closed: number;
  synscan: number;
  estab1: number;
  estab2: number;
  cnscan: number;
  grscan: number;
  valid: number;
}

export const LSCAN_MARK_DEFAULTS: Readonly<LscanMarks> = {
  connmarkMask: 0xffffffff,
  packetMask: 0xffffffff,
  seen: 9,
  synrcv: 1,
  closed: 2,
  synscan: 3,
  estab1: 4,
  estab2: 5,
  cnscan: 6,
  grscan: 7,
  valid: 8,
};

const SETTING_NAMES: readonly [string, keyof LscanMarks][] = [
  ['connmark_mask', 'connmarkMask'],
  ['packet_mask', 'packetMask'],
  ['mark_seen', 'seen'],
  ['mark_synrcv', 'synrcv'],
  ['mark_closed', 'closed'],
  ['mark_synscan', 'synscan'],
  ['mark_estab1', 'estab1'],
  ['mark_estab2', 'estab2'],
  ['mark_cnscan', 'cnscan'],
  ['mark_grscan', 'grscan'],
  ['mark_valid', 'valid'],
];

/** settings.lscan: upstream's module parameter names, each a 32-bit unsigned integer. */
export function lscanMarksOf(settings: Readonly<Record<string, unknown>>): LscanMarks {
  const s = (settings.lscan ?? {}) as Record<string, unknown>;
  const m: LscanMarks = { ...LSCAN_MARK_DEFAULTS };
  for (const [key, field] of SETTING_NAMES) {
    const v = s[key];
    if (v === undefined) continue;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new XtError(`settings.lscan.${key}: ${JSON.stringify(v)}: must be an integer 0..4294967295`, 1);
    }
    m[field] = v;
  }
  return m;
}

const FIN = 0x01;
const SYN = 0x02;
const RST = 0x04;
const PSH = 0x08;
const ACK = 0x10;
const URG = 0x20;

// TCP flag predicates (matches-facts §11): only FIN, SYN, RST, PSH, ACK, URG count.
const pureSyn = (f: number) => (f & (FIN | RST | SYN | ACK)) === SYN;
const synAck = (f: number) => (f & (FIN | RST | SYN | ACK)) === (SYN | ACK);
const ack4 = (f: number) => (f & (FIN | RST | SYN | ACK)) === ACK;
const ack6 = (f: number) => (f & (FIN | RST | SYN | PSH | ACK | URG)) === ACK;
const fin = (f: number) => (f & (FIN | RST | SYN)) === FIN;
const rst = (f: number) => (f & (FIN | RST | SYN)) === RST;
const rstAck = (f: number) => (f & (FIN | RST | SYN | ACK)) === (RST | ACK);

/**
 * One step of the connection state machine: the new state from the current
 * one (connmark under the mask), whether conntrack called the packet NEW,
 * whether it arrived on a loopback device, its flags and TCP payload length.
 */
export function lscanStep(m: LscanMarks, state: number, ctNew: boolean, loopback: boolean, flags: number, payload: number): number {
  if (state === m.estab2) {
    if (ack4(flags) && payload === 0) return m.estab2;
    if (rst(flags) || fin(flags)) return m.grscan;
    return m.valid;
  }
  if (state === m.estab1) {
    if (rst(flags) || fin(flags)) return m.cnscan;
    if (!loopback && ack4(flags) && payload === 0) return m.estab2;
    return m.valid;
  }
  if (state === m.synrcv) {
    if (loopback && synAck(flags)) return m.synrcv;
    if (loopback && rstAck(flags)) return m.closed;
    if (ack6(flags)) return m.estab1;
    return m.synscan;
  }
  if (ctNew && pureSyn(flags)) return m.synrcv;
  return state;
}

/** net_ratelimit()'s defaults: 10 messages, then one per 5 s window. */
const WARN_BURST = 10;
const WARN_INTERVAL_MS = 5000;

const lscan: MatchExtension<LscanParams> = {
  kind: 'match',
  name: 'lscan',
  families: [4, 6],
  proto: 6,
  // libxt_lscan is an old-style parser: repeats allowed, `!` accepted and ignored.
  options: ['stealth', 'synscan', 'cnscan', 'grscan', 'mirai'].map((name) => ({ name, arg: 'none' as const, invertible: true })),
  parse(opts) {
    const p: LscanParams = { stealth: false, synscan: false, cnscan: false, grscan: false, mirai: false };
    for (const o of opts) p[o.name as keyof LscanParams] = true;
    return p;
  },
  needsConntrack: () => true,
  check(p, env: CheckEnv) {
    const m = lscanMarksOf(env.settings);
    const services = env.services;
    const mirai = p.mirai && env.rule.family === 4;
    const { stealth, synscan, cnscan, grscan } = p;
    let warnStart = -Infinity;
    let warnLeft = 0;
    // Pure RST without a connection: false while the warning is allowed (upstream's quirk).
    const warnPureRst = (now: number): boolean => {
      if (now - warnStart >= WARN_INTERVAL_MS) {
        warnStart = now;
        warnLeft = WARN_BURST;
      }
      if (warnLeft === 0) return false;
      warnLeft--;
      services.log(4, 'xt_lscan: Warning: Pure RST received');
      return true;
    };
    const loopbackIn = (pkt: PacketContext): boolean => {
      const inIf = pkt.inIf;
      // Only the host link can be a loopback device; TUN/TAP links never are.
      if (inIf === null || inIf.kind !== 'host') return false;
      return services.iface(inIf.name)?.flags.loopback === true;
    };
    const match = (pkt: PacketContext): boolean => {
      if (pkt.proto !== 6 || pkt.fragmentOffset !== 0 || pkt.l4len < 20) return false;
      const buf = pkt.buf;
      const l4 = pkt.l4off;
      if (mirai && buf.readUInt32BE(l4 + 4) === pkt.dst4) return true;
      const flags = buf[l4 + 13];
      const ct = pkt.ct;
      if (ct === null || pkt.ctState === CtState.INVALID || pkt.ctState === CtState.UNTRACKED) {
        if (!stealth) return false;
        if (rstAck(flags)) return false;
        if ((flags & (RST | ACK)) === RST && warnPureRst(pkt.now)) return false;
        return !pureSyn(flags);
      }
      const cmask = m.connmarkMask;
      const pmask = m.packetMask;
      if ((ct.mark & cmask) >>> 0 === m.valid || (pkt.mark & pmask) >>> 0 !== m.seen) {
        const payload = pkt.l3len - (l4 - pkt.l3off) - 4 * (buf[l4 + 12] >> 4);
        const loopback = pkt.inIf !== null && pkt.inIf.kind === 'host' && loopbackIn(pkt);
        const next = lscanStep(m, (ct.mark & cmask) >>> 0, pkt.ctState === CtState.NEW, loopback, flags, payload);
        ct.mark = ((ct.mark & ~cmask) | next) >>> 0;
        pkt.mark = ((pkt.mark & ~pmask) ^ m.seen) >>> 0;
      }
      const mark = ct.mark;
      return (synscan && mark === m.synscan) || (cnscan && mark === m.cnscan) || (grscan && mark === m.grscan);
    };
    return { match };
  },
  // libxt_lscan's words, each with its own leading and trailing space.
  save(p) {
    return `${p.stealth ? ' --stealth ' : ''}${p.synscan ? ' --synscan ' : ''}${p.cnscan ? ' --cnscan ' : ''}${p.grscan ? ' --grscan ' : ''}${p.mirai ? ' --mirai ' : ''}`;
  },
  print(p) {
    return ` -m lscan${lscan.save(p)}`;
  },
};

export default lscan;
