/**
 * The host interface: a TUN in xtr's own namespace that carries every router
 * address, so that packets xtr delivers locally reach the real kernel stack
 * (sshd, a DNS server, a socat listener started in the router namespace) and
 * what that stack sends comes back into xtr as locally generated traffic.
 *
 * The kernel side sees one point-to-point device holding all router addresses
 * as host addresses (/32, /128) and routes for every connected and routed
 * prefix through it, each with the matching router address as preferred
 * source, so locally originated connections pick the address of the link they
 * leave by. rp_filter is off (replies to the stack arrive from any prefix on
 * the one device) and accept_local is on (xtr may hand the stack a packet
 * whose source is one of the router's own addresses, e.g. ping to itself via
 * a looped route).
 *
 * Not used in gateway mode: there the namespace's real interfaces already own
 * the addresses and the main table must keep routing to them.
 */
import { DottedQuad, ipv4FromText, ipv4ToString, ipv6FromText, ipv6ToString } from '../dataplane/addr.js';
import { addrOf, familyOf, ip, sysctl, type PlacedInterface } from './placement.js';
import { mask4, mask6Into } from './routing.js';

export const DEFAULT_HOST_INTERFACE = 'xtr0';

export interface HostRouteSpec {
  to: string;
  via?: string | null;
  dev?: string | null;
}

export interface HostInterfaceSpec {
  /** Device name in xtr's namespace (config hostInterface.name). */
  name: string;
  /** Device MTU; default the largest interface MTU. */
  mtu?: number;
  interfaces: readonly PlacedInterface[];
  routes: readonly HostRouteSpec[];
}

export interface HostInterfacePlan {
  mtu: number;
  addresses: string[];
  routes: { to: string; src?: string }[];
}

/** Works out what the host interface carries; pure, so it is unit-tested without namespaces. */
export function planHostInterface(spec: HostInterfaceSpec): HostInterfacePlan {
  const addresses: string[] = [];
  const routes = new Map<string, { to: string; src?: string }>();
  let mtu = 0;
  for (const iface of spec.interfaces) {
    mtu = Math.max(mtu, iface.mtu ?? 1500);
    for (const a of iface.addresses ?? []) {
      const fam = familyOf(a);
      const host = `${addrOf(a)}/${fam === 4 ? 32 : 128}`;
      if (!addresses.includes(host)) addresses.push(host);
      const net = networkOf(a);
      if (!routes.has(net)) routes.set(net, { to: net, src: addrOf(a) });
    }
  }
  for (const r of spec.routes) {
    const to = r.to === 'default' ? (r.via && familyOf(r.via) === 6 ? '::/0' : '0.0.0.0/0') : networkOf(r.to);
    if (routes.has(to)) continue;
    const fam = familyOf(to);
    const egress =
      spec.interfaces.find((i) => i.name === r.dev) ??
      (r.via ? spec.interfaces.find((i) => (i.addresses ?? []).some((a) => familyOf(a) === fam && prefixContains(a, r.via!))) : undefined);
    const src = egress?.addresses?.find((a) => familyOf(a) === fam);
    routes.set(to, src ? { to, src: addrOf(src) } : { to });
  }
  return { mtu: spec.mtu ?? (mtu || 1500), addresses, routes: [...routes.values()] };
}

/** Configures the already-open host TUN in our namespace. */
export async function configureHostInterface(spec: HostInterfaceSpec): Promise<HostInterfacePlan> {
  const plan = planHostInterface(spec);
  const dev = spec.name;
  await ip(['link', 'set', 'dev', 'lo', 'up']);
  await sysctl('net.ipv4.conf.all.rp_filter', 0);
  await sysctl('net.ipv4.conf.default.rp_filter', 0);
  await sysctl(`net.ipv4.conf.${dev}.rp_filter`, 0);
  await sysctl(`net.ipv4.conf.${dev}.accept_local`, 1);
  await sysctl(`net.ipv6.conf.${dev}.disable_ipv6`, 0).catch(() => undefined);
  await sysctl(`net.ipv6.conf.${dev}.accept_dad`, 0).catch(() => undefined);
  // The stack would otherwise solicit routers through xtr on every start.
  await sysctl(`net.ipv6.conf.${dev}.router_solicitations`, 0).catch(() => undefined);
  await ip(['link', 'set', 'dev', dev, 'mtu', String(plan.mtu), 'up']);
  for (const a of plan.addresses) {
    const args = ['addr', 'replace', a, 'dev', dev];
    if (familyOf(a) === 6) args.push('nodad');
    await ip(args);
  }
  for (const r of plan.routes) {
    const args = [`-${familyOf(r.to)}`, 'route', 'replace', r.to, 'dev', dev];
    if (r.src) args.push('src', r.src);
    await ip(args);
  }
  return plan;
}

/**
 * Config reload (router/reload.ts): brings the host TUN from `before`'s plan to `after`'s. Addresses
 * and routes no longer planned are removed (the kernel drops routes whose source address goes with
 * them), then every planned one is replaced, so the result is exactly `after`'s plan.
 */
export async function updateHostInterface(before: HostInterfaceSpec, after: HostInterfaceSpec): Promise<HostInterfacePlan> {
  const was = planHostInterface(before);
  const plan = planHostInterface(after);
  const dev = after.name;
  for (const r of was.routes) {
    if (!plan.routes.some((n) => n.to === r.to)) await ip([`-${familyOf(r.to)}`, 'route', 'del', r.to, 'dev', dev]).catch(() => undefined);
  }
  for (const a of was.addresses) if (!plan.addresses.includes(a)) await ip(['addr', 'del', a, 'dev', dev]).catch(() => undefined);
  for (const a of plan.addresses) await ip(familyOf(a) === 6 ? ['addr', 'replace', a, 'dev', dev, 'nodad'] : ['addr', 'replace', a, 'dev', dev]);
  for (const r of plan.routes) await ip([`-${familyOf(r.to)}`, 'route', 'replace', r.to, 'dev', dev, ...(r.src ? ['src', r.src] : [])]);
  return plan;
}

// ---- prefix arithmetic at the configuration edge (strings in, strings out) ----

/** `198.51.100.7/24` -> `198.51.100.0/24`; `2001:db8:c::1/64` -> `2001:db8:c::/64`. */
export function networkOf(cidr: string): string {
  const [addr, lenText] = cidr.split('/');
  const fam = familyOf(addr);
  const bits = fam === 4 ? 32 : 128;
  const len = lenText === undefined ? bits : Number(lenText);
  if (!Number.isInteger(len) || len < 0 || len > bits) throw new Error(`${cidr}: bad prefix length`);
  if (fam === 4) {
    const a = ipv4FromText(addr, DottedQuad.LEADING_ZEROS);
    if (a < 0) throw new Error(`${addr}: not an IPv4 address`);
    return `${ipv4ToString((a & mask4(len)) >>> 0)}/${len}`;
  }
  const w = ipv6FromText(addr, DottedQuad.LEADING_ZEROS);
  if (w === null) throw new Error(`${addr}: not an IPv6 address`);
  mask6Into(w, len, w);
  return `${ipv6ToString(w)}/${len}`;
}

/** Whether `addr` lies in the prefix of `cidr`. */
export function prefixContains(cidr: string, addr: string): boolean {
  if (familyOf(cidr) !== familyOf(addr)) return false;
  const len = cidr.split('/')[1] ?? (familyOf(cidr) === 4 ? '32' : '128');
  return networkOf(`${addrOf(addr)}/${len}`) === networkOf(cidr);
}
