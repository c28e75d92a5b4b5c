/**
 * `-j MASQUERADE [--to-ports port[-port]] [--random] [--random-fully]`
 * (IPv4 and IPv6), as libxt_MASQUERADE + nf_nat_masquerade: SNAT of a
 * flow's first packet (nat POSTROUTING) to the out-interface's address -
 * the one on the next hop's subnet (inet_select_addr), else its primary
 * address; IPv6: one whose prefix holds the next hop or destination, else
 * the first that is not link-local. The binding remembers the interface:
 * conntrack forgets it when that interface goes down or changes its
 * addresses (Conntrack.forgetMasquerade, masq_device_event/masq_inet_event).
 * In gateway mode the interface's configured addresses are those of the
 * real interface it is attached to (docs/gateway.md).
 * No address on the interface: the packet is dropped, as the kernel does.
 */
import { Hook, Verdict, type PacketContext } from '../xt/packet.js';
import type { TargetExtension } from '../xt/extension.js';
import type { StateSpec } from '../xt/state.js';
import type { IfaceFacts, RouterServices } from '../xt/services.js';
import { NatRangeFlag, NatSide } from '../xt/nat.js';
import { x6Check } from './lib/options.js';
import { emptyRangeParams, flagWords, once, parsePorts, portsAllowed, portsText, toNatRange, type NatRangeParams } from './lib/nat.js';
import { prefixMaskWord } from '../dataplane/addr.js';

export interface MasqueradeParams extends NatRangeParams {
  family: 4 | 6;
}

const dst = new Uint32Array(4);

function covers4(addr: number, len: number, x: number): boolean {
  const m = prefixMaskWord(len, 0);
  return ((addr ^ x) & m) === 0;
}

function covers6(addr: Uint32Array, len: number, x: Uint32Array): boolean {
  for (let i = 0; i < 4; i++) if (((addr[i] ^ x[i]) & prefixMaskWord(len, i)) !== 0) return false;
  return true;
}

/** The source address MASQUERADE gives a packet leaving by `oif`, into out; false when the interface has none. */
export function masqueradeSource(pkt: PacketContext, oif: IfaceFacts, services: RouterServices, out: Uint32Array): boolean {
  out.fill(0);
  if (pkt.family === 4) {
    const a = oif.addrs4;
    if (a.length === 0) return false;
    dst[0] = pkt.dst4;
    const nh = services.route(4, dst)?.gateway?.[0] ?? pkt.dst4;
    out[0] = a[0];
    for (let i = 0; i < a.length; i++) {
      if (covers4(a[i], oif.prefixes4[i], nh)) {
        out[0] = a[i];
        break;
      }
    }
    return true;
  }
  const a = oif.addrs6;
  if (a.length === 0) return false;
  const nh = services.route(6, pkt.dst6)?.gateway ?? pkt.dst6;
  let pick = -1;
  for (let i = 0; i < a.length && pick < 0; i++) if (covers6(a[i], oif.prefixes6[i], nh) || covers6(a[i], oif.prefixes6[i], pkt.dst6)) pick = i;
  for (let i = 0; i < a.length && pick < 0; i++) if ((a[i][0] & 0xffc00000) >>> 0 !== 0xfe800000) pick = i;
  if (pick < 0) pick = 0;
  out.set(a[pick]);
  return true;
}

/** What MASQUERADE's bindings depend on: the interface being up, and its addresses. */
function ifaceSignature(f: IfaceFacts | null): string {
  if (f === null || !f.flags.up || !f.flags.running) return 'down';
  return `${f.addrs4.join(',')}|${f.addrs6.map((a) => a.join(':')).join(',')}`;
}

const WATCH_KEY = 'MASQUERADE:interfaces';

/**
 * The kernel's masq_device_event / masq_inet_event: interfaces MASQUERADE
 * has bound flows through, checked once a second; when one went down or its
 * addresses changed, conntrack forgets the flows bound through it (their
 * replies would go to an address the interface no longer has).
 */
function watchSpec(services: RouterServices): StateSpec<Map<string, string>> {
  return {
    key: WATCH_KEY,
    create: () => new Map<string, string>(),
    tick: {
      everyMs: 1000,
      run(watch) {
        for (const [name, was] of watch) {
          const now = ifaceSignature(services.iface(name));
          if (now === was) continue;
          watch.set(name, now);
          const n = services.nat?.forgetInterface?.(name) ?? 0;
          if (n > 0) services.log(6, `MASQUERADE: ${name} ${now === 'down' ? 'went down' : 'changed its addresses'}: forgot ${n} flow${n === 1 ? '' : 's'}`);
        }
      },
    },
  };
}

const MASQUERADE: TargetExtension<MasqueradeParams> = {
  kind: 'target',
  name: 'MASQUERADE',
  families: [4, 6],
  tables: ['nat'],
  hooks: [Hook.POSTROUTING],
  options: [
    { name: 'to-ports', arg: 'required' },
    { name: 'random', arg: 'none' },
    { name: 'random-fully', arg: 'none' },
  ],
  needsConntrack: () => true,
  parse(opts, rule) {
    const p: MasqueradeParams = { ...emptyRangeParams(), family: rule.family };
    const seen = new Set<string>();
    for (const o of opts) {
      once('MASQUERADE', seen, o.name);
      if (o.name === 'to-ports') parsePorts(o.value ?? '', portsAllowed(rule), p);
      else if (o.name === 'random') p.flags |= NatRangeFlag.PROTO_RANDOM;
      else if (o.name === 'random-fully') p.flags |= NatRangeFlag.PROTO_RANDOM_FULLY;
    }
    x6Check('MASQUERADE', opts, [{ name: 'to-ports' }, { name: 'random' }, { name: 'random-fully' }]);
    return p;
  },
  check(p, env) {
    const services = env.services;
    const range = toNatRange(p);
    range.flags |= NatRangeFlag.MAP_IPS;
    const watch = env.state.declare(watchSpec(services));
    return {
      destroy() {
        env.state.release(WATCH_KEY);
      },
      target(pkt) {
        const nat = services.nat;
        const out = pkt.outIf;
        if (nat === undefined || out === null) return Verdict.DROP;
        const facts = services.iface(out.name);
        if (facts === null || !masqueradeSource(pkt, facts, services, range.minAddr)) return Verdict.DROP;
        range.maxAddr.set(range.minAddr);
        if (!watch.has(out.name)) watch.set(out.name, ifaceSignature(facts));
        return nat.setup(pkt, NatSide.SRC, range, { masqIface: out.name });
      },
    };
  },
  save: (p) => `${(p.flags & NatRangeFlag.PROTO_SPECIFIED) !== 0 ? ` --to-ports ${portsText(p, false)}` : ''}${flagWords(p.flags, true)}`,
  print: (p) => `${(p.flags & NatRangeFlag.PROTO_SPECIFIED) !== 0 ? ` masq ports: ${portsText(p, false)}` : ''}${flagWords(p.flags, false)}`,
};
export default MASQUERADE;
