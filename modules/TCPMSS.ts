/**
 * `-j TCPMSS --set-mss VALUE | --clamp-mss-to-pmtu` (IPv4 and IPv6), as
 * mainline's libxt_TCPMSS + xt_TCPMSS: lower the MSS option of TCP SYNs
 * passing through, so hosts behind a link with a smaller MTU (PPPoE, a
 * tunnel) never send segments that need fragmenting or a PMTU discovery
 * that a filtering middlebox breaks.
 *
 * Kernel behaviour reproduced (measured against iptables-legacy 1.8.9 in a
 * namespace, see test/differential-tcpmss.test.ts):
 *  - the rule must be `-p tcp` (checked by the engine from `proto`) and must
 *    contain a tcp match whose comparison flags include SYN, not inverted
 *    (`--syn`, `--tcp-flags SYN,RST SYN`, even `--tcp-flags ACK SYN`):
 *    otherwise "Only works on TCP SYN packets", EINVAL. The packet path
 *    never looks at the flags itself, as in the kernel;
 *  - `--clamp-mss-to-pmtu` only from FORWARD, OUTPUT and POSTROUTING, any
 *    table; the MSS is min(path MTU to the destination, MTU of the route back
 *    to the source) - 40 (IPv4) / 60 (IPv6); an MTU at or below that drops
 *    the packet ("unknown or invalid path-MTU");
 *  - an MSS option is only ever lowered; a SYN without one gets one of
 *    min(MSS, 536) (IPv4) / min(MSS, 1220) (IPv6), the defaults a peer
 *    assumes without the option, unless the segment carries data or the
 *    header is already 60 bytes long; a malformed TCP header drops;
 *  - options walked as the kernel walks them (EOL counted as one byte, like NOP).
 *  - `--set-mss` and `--clamp-mss-to-pmtu` may both be given: the last wins.
 */
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';
import type { RouterServices } from '../xt/services.js';
import { getU16, setU16 } from '../dataplane/bytes.js';
import { csumReplace2, csumReplace4 } from '../dataplane/checksum.js';
import { parseUintOption } from './lib/numbers.js';

/** The kernel's XT_TCPMSS_CLAMP_PMTU: the params value meaning "from the route". */
const CLAMP_PMTU = 0xffff;

const TCPOPT_MSS = 2;
const TCPOLEN_MSS = 4;
const TCP_SYN = 0x02;

export interface TcpmssParams {
  family: 4 | 6;
  /** The MSS to set, or CLAMP_PMTU. */
  mss: number;
}

/** What TCPMSS reads of a tcp match's params (modules/tcp.ts TcpParams) to find its SYN test. */
interface TcpFlagsTest {
  flgCmp: number;
  invFlags: boolean;
}

/** The kernel's find_syn_match: a tcp match comparing SYN as set, not inverted. */
function isSynMatch(name: string, params: unknown): boolean {
  if (name !== 'tcp' || params === null || typeof params !== 'object') return false;
  const p = params as Partial<TcpFlagsTest>;
  return typeof p.flgCmp === 'number' && (p.flgCmp & TCP_SYN) !== 0 && p.invFlags !== true;
}

const CLAMP_HOOKS = (1 << Hook.FORWARD) | (1 << Hook.OUTPUT) | (1 << Hook.POSTROUTING);

/** Scratch for route lookups (no allocation per packet). */
const addr = new Uint32Array(4);

/**
 * The MTU the clamp uses: min(the packet's route MTU, the MTU of the route
 * back to its source), as tcpmss_reverse_mtu; a missing reverse route does not
 * limit (~0), a missing forward route gives 0 (invalid: the packet drops).
 */
function clampMtu(pkt: PacketContext, services: RouterServices): number {
  if (pkt.family === 4) {
    addr[0] = pkt.dst4;
  } else addr.set(pkt.dst6);
  const fwd = services.route(pkt.family, addr);
  const out = fwd !== null ? fwd.mtu : (pkt.outIf?.mtu ?? 0);
  if (pkt.family === 4) {
    addr[0] = pkt.src4;
  } else addr.set(pkt.src6);
  const back = services.route(pkt.family, addr);
  const inMtu = back !== null ? back.mtu : 0xffffffff;
  return Math.min(out, inMtu);
}

/**
 * tcpmss_mangle_packet + the IP length fix-up of tcpmss_tg4/6. Returns a
 * verdict: DROP for what the kernel drops, XT_CONTINUE otherwise.
 */
function mangle(pkt: PacketContext, mssWanted: number, services: RouterServices, logLimit: { last: number }): number {
  if (pkt.fragmentOffset !== 0) return XT_CONTINUE; // no TCP header here
  const b = pkt.buf;
  const th = pkt.l4off;
  const len = pkt.l3off + pkt.l3len - th;
  if (len < 20) return Verdict.DROP;
  const hdrLen = (b[th + 12] >> 4) << 2;
  if (len < hdrLen || hdrLen < 20) return Verdict.DROP;

  const minLen = pkt.family === 4 ? 40 : 60;
  let mss = mssWanted;
  if (mss === CLAMP_PMTU) {
    const mtu = clampMtu(pkt, services);
    if (mtu <= minLen) {
      // Rate-limited like net_err_ratelimited (the kernel shares a 10-per-5-s budget; here one line a second per rule).
      if (pkt.now - logLimit.last >= 1000 || logLimit.last === 0) {
        logLimit.last = pkt.now || 1;
        services.log(3, `xt_TCPMSS: unknown or invalid path-MTU (${mtu >>> 0})`);
      }
      return Verdict.DROP;
    }
    mss = (mtu - minLen) & 0xffff;
  }

  for (let i = 20; i <= hdrLen - TCPOLEN_MSS; ) {
    const kind = b[th + i];
    if (kind === TCPOPT_MSS && b[th + i + 1] === TCPOLEN_MSS) {
      const old = getU16(b, th + i + 2);
      // Never raised, even by --set-mss: a host may rely on the MSS it announced.
      if (old <= mss) return XT_CONTINUE;
      setU16(b, th + i + 2, mss);
      setU16(b, th + 16, csumReplace2(getU16(b, th + 16), old, mss));
      return XT_CONTINUE;
    }
    const l = b[th + i + 1];
    i += kind <= 1 || l === 0 ? 1 : l;
  }

  // Adding the option would move data (or make the SYN too large), or overflow the 4-bit data offset.
  if (len > hdrLen || hdrLen >= 60) return XT_CONTINUE;
  // skb_put: the kernel grows the buffer or drops when it cannot.
  if (pkt.tailroom < TCPOLEN_MSS) return Verdict.DROP;

  // A peer that sees no MSS option assumes 536 (IPv4, RFC 1122) / 1220 (IPv6: 1280 - 60).
  mss = Math.min(mss, pkt.family === 4 ? 536 : 1220);
  const opt = th + 20;
  b.copyWithin(opt + TCPOLEN_MSS, opt, th + len);
  let check = getU16(b, th + 16);
  // The pseudo-header's TCP length grows; the moved options keep their word alignment, so only the new word counts.
  check = csumReplace2(check, len, len + TCPOLEN_MSS);
  b[opt] = TCPOPT_MSS;
  b[opt + 1] = TCPOLEN_MSS;
  setU16(b, opt + 2, mss);
  check = csumReplace4(check, 0, (((TCPOPT_MSS << 24) | (TCPOLEN_MSS << 16) | mss) >>> 0));
  const oldWord = getU16(b, th + 12);
  b[th + 12] += TCPOLEN_MSS << 2; // data offset + 1 word
  check = csumReplace2(check, oldWord, getU16(b, th + 12));
  setU16(b, th + 16, check);

  const ip = pkt.l3off;
  if (pkt.family === 4) {
    const oldTotal = getU16(b, ip + 2);
    setU16(b, ip + 2, oldTotal + TCPOLEN_MSS);
    setU16(b, ip + 10, csumReplace2(getU16(b, ip + 10), oldTotal, oldTotal + TCPOLEN_MSS));
  } else {
    setU16(b, ip + 4, getU16(b, ip + 4) + TCPOLEN_MSS);
  }
  pkt.l3len += TCPOLEN_MSS;
  pkt.l4len += TCPOLEN_MSS;
  pkt.tailroom -= TCPOLEN_MSS;
  return XT_CONTINUE;
}

const OPTIONS = ['set-mss', 'clamp-mss-to-pmtu'];

const TCPMSS: TargetExtension<TcpmssParams> = {
  kind: 'target',
  name: 'TCPMSS',
  families: [4, 6],
  proto: 6,
  options: [
    { name: 'set-mss', arg: 'required' },
    { name: 'clamp-mss-to-pmtu', arg: 'none' },
  ],
  parse(opts, rule) {
    // libxtables checks each option in turn: given twice first, then its value.
    const seen = new Set<string>();
    let mss = -1;
    for (const o of opts) {
      if (!OPTIONS.includes(o.name)) continue;
      if (seen.has(o.name)) throw new XtError(`TCPMSS: option "--${o.name}" can only be used once.\n`);
      seen.add(o.name);
      if (o.name === 'clamp-mss-to-pmtu') mss = CLAMP_PMTU;
      else mss = parseUintOption('TCPMSS', 'set-mss', o.value ?? '', rule.family === 4 ? 0xffff - 20 : 0xffff - 40);
    }
    if (mss < 0) throw new XtError('TCPMSS target: At least one parameter is required');
    return { family: rule.family, mss };
  },
  check(p, env) {
    if (p.mss === CLAMP_PMTU && (env.hookMask & ~CLAMP_HOOKS) !== 0) {
      throw new XtError('xt_TCPMSS: path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING hooks', 1, 'EINVAL');
    }
    if (!(env.ruleMatches ?? []).some((m) => isSynMatch(m.ext.name, m.params))) {
      throw new XtError('xt_TCPMSS: Only works on TCP SYN packets', 1, 'EINVAL');
    }
    const services = env.services;
    const mss = p.mss;
    const logLimit = { last: 0 };
    return {
      target: (pkt: PacketContext) => mangle(pkt, mss, services, logLimit),
    };
  },
  save(p) {
    return p.mss === CLAMP_PMTU ? ' --clamp-mss-to-pmtu' : ` --set-mss ${p.mss}`;
  },
  print(p) {
    return p.mss === CLAMP_PMTU ? ' TCPMSS clamp to PMTU' : ` TCPMSS set ${p.mss}`;
  },
};

export default TCPMSS;
