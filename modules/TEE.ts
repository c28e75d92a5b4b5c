/**
 * `-j TEE --gateway ADDR [--oif NAME]` (mainline's xt_TEE, IPv4 and IPv6, any
 * table and chain): sends a copy of the packet to a host on a directly
 * reachable network - a capture box, an IDS - while the original carries on.
 *
 * The copying is the router's (RouterServices.dup, nf_dup_ipv4/6): the
 * clone keeps its IP header (still addressed to the original destination)
 * and goes to the gateway's link-layer address (TAP) or out of the link
 * that reaches the gateway (TUN); TTL / hop limit is decremented only for a
 * copy taken in PREROUTING or INPUT; it is untracked, passes no hook, is
 * never copied again, and is lost silently when the gateway is not on-link
 * (through --oif's link when it exists). This file is the iptables side: the
 * options in libxt_TEE's words and the kernel's one check.
 *
 * --oif: libxt_TEE copies at most 15 bytes (IFNAMSIZ - 1); an empty name
 * means none. A name no interface has is taken as no --oif at all, as
 * xt_TEE does (its oif index stays -1 until such a device appears, and -1
 * routes the clone without an interface), measured in
 * test/differential-tee-checksum.test.ts. An --oif whose link does not reach
 * the gateway loses the clone here; the kernel then sends it through that
 * link to the packet's own destination (docs/compat.md, TEE).
 */
import type { PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';
import type { DupOptions } from '../xt/services.js';
import { addrToString, parseAddr } from './lib/addresses.js';

export interface TeeParams {
  family: 4 | 6;
  /** Four words; IPv4 in word 0. */
  gateway: Uint32Array;
  /** Output interface name, '' for none. */
  oif: string;
}

const IFNAMSIZ = 16;

/** XTTYPE_HOST without a resolver: xtr reads numeric addresses only (docs/compat.md: TEE). */
function parseGateway(v: string, family: 4 | 6): Uint32Array {
  const a = parseAddr(v, family);
  if (a !== null) return a;
  if (parseAddr(v, family === 4 ? 6 : 4) !== null) throw new XtError('getaddrinfo: Address family for hostname not supported\n');
  throw new XtError('getaddrinfo: Name or service not known\n');
}

const TEE: TargetExtension<TeeParams> = {
  kind: 'target',
  name: 'TEE',
  families: [4, 6],
  options: [
    { name: 'gateway', arg: 'required' },
    { name: 'oif', arg: 'required' },
  ],
  parse(opts, rule) {
    // libxtables' x6 order: per option as it comes, "only once", then its value; then "must be specified".
    let gateway: Uint32Array | null = null;
    let oif = '';
    const seen = new Set<string>();
    for (const o of opts) {
      if (seen.has(o.name)) throw new XtError(`TEE: option "--${o.name}" can only be used once.\n`);
      seen.add(o.name);
      if (o.name === 'gateway') gateway = parseGateway(o.value ?? '', rule.family);
      else oif = (o.value ?? '').slice(0, IFNAMSIZ - 1);
    }
    if (gateway === null) throw new XtError('TEE: option "--gateway" must be specified\n');
    return { family: rule.family, gateway, oif };
  },
  check(p, env) {
    const g = p.gateway;
    // tee_tg_check: an all-zero gateway is EINVAL (the kernel logs nothing; xtr says why).
    if ((g[0] | g[1] | g[2] | g[3]) === 0) {
      throw new XtError(`TEE: --gateway ${addrToString(g, p.family)} is not a usable next hop`, 1, 'EINVAL');
    }
    const viaRoute: DupOptions = { gateway: Uint32Array.from(g) };
    const services = env.services;
    if (p.oif === '') {
      return {
        target(pkt: PacketContext): number {
          services.dup(pkt, viaRoute);
          return XT_CONTINUE;
        },
      };
    }
    const viaOif: DupOptions = { gateway: viaRoute.gateway, oif: p.oif };
    const oif = p.oif;
    return {
      target(pkt: PacketContext): number {
        services.dup(pkt, services.iface(oif) !== null ? viaOif : viaRoute);
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    return ` --gateway ${addrToString(p.gateway, p.family)}${p.oif === '' ? '' : ` --oif ${p.oif}`}`;
  },
  print(p) {
    return ` TEE gw:${addrToString(p.gateway, p.family)}${p.oif === '' ? '' : ` oif=${p.oif}`}`;
  },
};

export default TEE;
