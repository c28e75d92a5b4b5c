/**
 * The routing tables xtr starts with, built from the config as the kernel
 * builds them when addresses and routes are added: a host route per own
 * address (local delivery: to the host interface, or back into the link in
 * gateway mode), a connected route per address prefix, then the config's
 * static routes (a `via` without `dev` leaves by the link whose prefix holds
 * the gateway).
 */
import type { XtrConfig } from './config.js';
import type { RouterInterface } from './interfaces.js';
import { parseIPv4, parseIPv6, parsePrefix, prefixContains4, prefixContains6, RouteKind, type RouteTable4, type RouteTable6 } from './routing.js';

/**
 * Fills routes4/routes6. `interfaces` is the router's table (index 0 unused),
 * `host` its host interface or null. Throws naming a static route no
 * interface reaches.
 */
export function installRoutes(
  config: XtrConfig,
  interfaces: readonly RouterInterface[],
  host: RouterInterface | null,
  routes4: RouteTable4,
  routes6: RouteTable6,
): void {
  const byName = new Map<string, RouterInterface>();
  for (let i = 1; i < interfaces.length; i++) byName.set(interfaces[i].name, interfaces[i]);
  const links = interfaces.slice(1).filter((i) => i.kind !== 'host');
  // the router's own addresses first (host routes: local delivery), then connected networks
  for (const ri of links) {
    const localIf = host ? host.index : ri.index;
    for (const a of ri.v4) routes4.add({ prefix: { family: 4, addr: a.addr, len: 32 }, kind: RouteKind.LOCAL, ifIndex: localIf });
    for (const a of ri.v6) routes6.add({ prefix: { family: 6, addr: a.addr, len: 128 }, kind: RouteKind.LOCAL, ifIndex: localIf });
  }
  for (const ri of links) {
    for (const a of ri.v4) routes4.add({ prefix: { family: 4, addr: a.addr, len: a.len }, kind: RouteKind.CONNECTED, ifIndex: ri.index });
    for (const a of ri.v6) routes6.add({ prefix: { family: 6, addr: a.addr, len: a.len }, kind: RouteKind.CONNECTED, ifIndex: ri.index });
  }
  for (const r of config.routes) {
    const prefix = parsePrefix(r.to)!;
    let out: RouterInterface | undefined = r.dev ? byName.get(r.dev) : undefined;
    if (!out && r.via) {
      out = links.find((ri) =>
        prefix.family === 4
          ? ri.v4.some((a) => prefixContains4(a.addr, a.len, parseIPv4(r.via!)))
          : ri.v6.some((a) => prefixContains6(a.addr, a.len, parseIPv6(r.via!)!)),
      );
    }
    if (!out) throw new Error(`route ${r.to}: no interface reaches ${r.via ?? r.dev}`);
    const spec = r.via
      ? { prefix, kind: RouteKind.GATEWAY, ifIndex: out.index, gateway: prefix.family === 4 ? parseIPv4(r.via) : parseIPv6(r.via)! }
      : { prefix, kind: RouteKind.CONNECTED, ifIndex: out.index };
    if (prefix.family === 4) routes4.add(spec);
    else routes6.add(spec);
  }
}
