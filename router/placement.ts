/**
 * Placement: the operating-system side of xtr's interfaces, configured with
 * iproute2 after the router has opened its TUN/TAP file descriptors.
 *
 * Two placements (see docs/lab.md and docs/gateway.md):
 *
 * - link mode (`peer:`): the device is created in xtr's own namespace under
 *   the peer's interface name and moved into the peer namespace, where it gets
 *   the peer's addresses and routes. xtr keeps the fd, so the peer's netdev
 *   lives exactly as long as the router: when the fd closes the kernel deletes
 *   it, wherever it is.
 * - gateway mode (`attach: REAL`): xtr runs in the namespace that owns REAL.
 *   The device stays here as `xtr-<name>` and policy routing diverts what the
 *   kernel would forward from REAL into it; what xtr writes back into the TUN
 *   is forwarded by the kernel through the main table.
 *
 * Everything done here that outlives the process (policy rules, routing
 * tables, namespaces created on demand) is recorded so teardown() undoes it.
 * Non-goals: bridging, VLANs, TAP in gateway mode.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';

/** The subset of the configuration schema placement needs (router/config.ts owns the full one). */
export interface PeerSpec {
  netns: string;
  ifname: string;
  addresses?: readonly string[];
  /** `default` (via the router's address of each family on this link) or an explicit route. */
  routes?: readonly (string | { readonly to: string; readonly via: string })[];
}

export interface PlacedInterface {
  name: string;
  mode: 'tun' | 'tap';
  mtu?: number;
  addresses?: readonly string[];
  peer?: PeerSpec | null;
  attach?: string | null;
  /** Name the device is created under in xtr's namespace (config `device`, default the config name). */
  device?: string;
}

export interface PlacementLogger {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
}

export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly stderr: string,
    readonly code: number | string | null,
  ) {
    super(`${argv.join(' ')}: ${stderr.trim() || `exit ${code}`}`);
  }
}

/** Runs a program without a shell; rejects with the command line and its stderr. */
export function run(argv: readonly string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(argv[0], argv.slice(1), { timeout: opts.timeoutMs ?? 10_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException & { code?: number | string }).code ?? null;
        reject(new CommandError(argv, String(stderr ?? '') || err.message, code));
      } else resolve(String(stdout));
    });
  });
}

/** `ip [-n NS] ARGS...`. */
export function ip(args: readonly string[], netns?: string): Promise<string> {
  return run(netns ? ['ip', '-n', netns, ...args] : ['ip', ...args]);
}

/**
 * Sets a sysctl. In our own namespace we write /proc/sys directly; in another
 * namespace through `ip netns exec`, whose fresh /sys mount also makes the
 * per-device keys of that namespace visible. Slash-separated keys because
 * interface names may contain dots.
 */
export async function sysctl(key: string, value: string | number, netns?: string): Promise<void> {
  const path = key.replaceAll('.', '/');
  if (!netns) {
    writeFileSync(`/proc/sys/${path}`, `${value}\n`);
    return;
  }
  await run(['ip', 'netns', 'exec', netns, 'sysctl', '-q', '-w', `${path}=${value}`]);
}

/** Sets a sysctl in our namespace unless it already has the value; warns instead of failing. */
export async function ensureSysctl(key: string, value: number, log: PlacementLogger): Promise<void> {
  const path = `/proc/sys/${key.replaceAll('.', '/')}`;
  try {
    if (readFileSync(path, 'utf8').trim() === String(value)) return;
  } catch {
    /* unreadable: try to write */
  }
  try {
    await sysctl(key, value);
  } catch (e) {
    log.warn({ sysctl: key, want: value, err: String(e) }, 'cannot set sysctl; set it outside (docker run --sysctl)');
  }
}

export function familyOf(cidr: string): 4 | 6 {
  return cidr.includes(':') ? 6 : 4;
}

/** The address part of `A/len` (or `A`). */
export function addrOf(cidr: string): string {
  const slash = cidr.indexOf('/');
  return slash < 0 ? cidr : cidr.slice(0, slash);
}

/** Base of the policy-routing tables and rule preferences gateway mode uses (one per interface). */
export const GATEWAY_TABLE_BASE = 7800;
/**
 * Packets the kernel queues for xtr on each TUN/TAP it places (txqueuelen: the TUN's ring).
 * The default 500 is ~10 ms of a flood; a longer stall of the event loop (a GC pause, a
 * flood's bursts) then drops packets blindly before xtr can tell established from new
 * (forward.ts sheds new flows itself, issue 12 floods). bench:flood: established_kept 0.36
 * with 500, 0.98 with 4096.
 */
export const LINK_QUEUE_LEN = 4096;
export const GATEWAY_PREF_BASE = 7800;

/** Gateway NAT (placeGatewayNat): where the kernel's `local` rule moves, and the diversion rules before it. */
export const GATEWAY_LOCAL_PREF = 100;
export const GATEWAY_NAT_PREF = 90;

interface GatewayState {
  tun: string;
  attach: string;
  table: number;
  prefIn: number;
  prefOut: number;
}

export class Placement {
  private readonly createdNamespaces: string[] = [];
  private readonly gateways: GatewayState[] = [];
  private gatewayIndex = 0;
  /** placeGatewayNat ran (teardown moves the local rule back). */
  private natPlaced = false;
  private reservedPortsWas: string | null = null;

  /**
   * `failOpen` (config `failOpen: true`, docs/gateway.md "Fail closed"):
   * remove the gateway's policy routing at stop, as before issue 12, so the
   * kernel forwards unfiltered while xtr is not running. Default false: the
   * policy rules stay and lead to a blackhole route until xtr is back.
   */
  constructor(
    private readonly log: PlacementLogger,
    private readonly opts: { failOpen?: boolean } = {},
  ) {}

  /** Name xtr opens the device under for an interface, before any move. */
  static deviceName(iface: PlacedInterface): string {
    const explicit = iface.device && iface.device !== iface.name ? iface.device : null;
    // In gateway mode the config name is often the real interface's own name
    // (eth0 in a container), so the TUN gets a prefix unless one is given.
    if (iface.attach) return explicit ?? gatewayTunName(iface.name);
    return iface.device ?? iface.name;
  }

  /** Checks what can be checked before any device exists, so errors come before side effects. */
  static async preflight(ifaces: readonly PlacedInterface[]): Promise<void> {
    for (const iface of ifaces) {
      if (iface.peer && iface.attach) throw new Error(`interface ${iface.name}: peer and attach are exclusive`);
      if (iface.attach) {
        if (iface.mode !== 'tun') throw new Error(`interface ${iface.name}: gateway mode (attach) supports mode tun only`);
        try {
          await ip(['link', 'show', 'dev', iface.attach]);
        } catch {
          throw new Error(`interface ${iface.name}: attach: no interface named ${iface.attach} in this namespace`);
        }
        const tun = Placement.deviceName(iface);
        if (tun.length > 15) throw new Error(`interface ${iface.name}: device name ${tun} is longer than 15 characters`);
      }
      if (iface.peer && iface.peer.ifname.length > 15) {
        throw new Error(`interface ${iface.name}: peer.ifname ${iface.peer.ifname} is longer than 15 characters`);
      }
    }
  }

  /** Creates the namespace if it does not exist (and remembers to delete it on teardown). */
  async ensureNamespace(ns: string): Promise<void> {
    if (existsSync(`/run/netns/${ns}`) || existsSync(`/var/run/netns/${ns}`)) return;
    await run(['ip', 'netns', 'add', ns]);
    this.createdNamespaces.push(ns);
    await ip(['link', 'set', 'lo', 'up'], ns);
    this.log.info({ netns: ns }, 'created namespace');
  }

  /**
   * Link mode: move the just-opened device (Placement.deviceName in our
   * namespace) into the peer namespace under peer.ifname and configure the
   * peer's side.
   */
  async placeLink(iface: PlacedInterface): Promise<void> {
    const peer = iface.peer;
    if (!peer) throw new Error(`interface ${iface.name}: not a link-mode interface`);
    const dev = peer.ifname;
    const ns = peer.netns;
    await this.ensureNamespace(ns);
    // A leftover device of that name in the peer namespace (a crashed run) would make the move fail.
    await ip(['link', 'del', 'dev', dev], ns).catch(() => undefined);
    await ip(['link', 'set', 'dev', Placement.deviceName(iface), 'netns', ns, 'name', dev]);
    // DAD on the peer would hold its IPv6 addresses "tentative" for a second
    // or more; rp_filter would drop packets whose source routes elsewhere.
    await sysctl(`net.ipv6.conf.${dev}.disable_ipv6`, 0, ns).catch(() => undefined);
    await sysctl(`net.ipv6.conf.${dev}.accept_dad`, 0, ns).catch(() => undefined);
    await sysctl(`net.ipv6.conf.${dev}.accept_ra`, 0, ns).catch(() => undefined);
    await sysctl('net.ipv4.conf.all.rp_filter', 0, ns);
    await sysctl(`net.ipv4.conf.${dev}.rp_filter`, 0, ns);
    const linkArgs = ['link', 'set', 'dev', dev, 'txqueuelen', String(LINK_QUEUE_LEN)];
    if (iface.mtu) linkArgs.push('mtu', String(iface.mtu));
    await ip([...linkArgs, 'up'], ns);
    for (const a of peer.addresses ?? []) {
      const args = ['addr', 'replace', a, 'dev', dev];
      if (familyOf(a) === 6) args.push('nodad');
      await ip(args, ns);
    }
    for (const r of peer.routes ?? []) await this.addPeerRoute(iface, r);
    this.log.info({ iface: iface.name, netns: ns, dev, mode: iface.mode }, 'link-mode interface placed');
  }

  private async addPeerRoute(iface: PlacedInterface, route: string | { to: string; via: string }): Promise<void> {
    const peer = iface.peer!;
    if (typeof route === 'object') {
      await ip([`-${familyOf(route.via)}`, 'route', 'replace', route.to, 'via', route.via, 'dev', peer.ifname], peer.netns);
      return;
    }
    const families: (4 | 6)[] = route === 'default' ? [4, 6] : [familyOf(route)];
    for (const fam of families) {
      const own = (iface.addresses ?? []).find((a) => familyOf(a) === fam);
      const peerHas = (peer.addresses ?? []).some((a) => familyOf(a) === fam);
      if (route === 'default' && (!own || !peerHas)) continue;
      const args = [`-${fam}`, 'route', 'replace', route, 'dev', peer.ifname];
      // Via the router's address, so the peer's neighbour entry is xtr's (TAP);
      // on a TUN that is harmless and keeps the route readable.
      if (own) args.push('via', addrOf(own));
      await ip(args, peer.netns);
    }
  }

  /**
   * Gateway mode: steer what the kernel would forward from `attach` into the
   * TUN (already open as `xtr-<name>`), and send what comes out of the TUN
   * through the main table.
   */
  async placeGateway(iface: PlacedInterface): Promise<void> {
    const real = iface.attach;
    if (!real) throw new Error(`interface ${iface.name}: not a gateway-mode interface`);
    const tun = Placement.deviceName(iface);
    const n = this.gatewayIndex++;
    const st: GatewayState = {
      tun,
      attach: real,
      table: GATEWAY_TABLE_BASE + n,
      prefIn: GATEWAY_PREF_BASE + 2 * n + 1,
      prefOut: GATEWAY_PREF_BASE + 2 * n,
    };
    if (this.opts.failOpen) {
      // Remove leftovers of a previous run that did not exit cleanly.
      await this.removeGateway(st, true);
    } else {
      // Fail closed (issue 12): the blackhole goes in before the diversion
      // rule, and a diversion left by a previous run is kept, never removed
      // and re-added: at no moment does what arrives on `real` reach the
      // kernel's main table while xtr is not forwarding it.
      await this.failClosedRouting(st);
    }
    this.gateways.push(st);

    // In an unprivileged container /proc/sys is read-only: the operator passes
    // these with `docker run --sysctl`; say which are missing instead of failing.
    for (const [key, value] of [
      ['net.ipv4.ip_forward', 1],
      ['net.ipv6.conf.all.forwarding', 1],
      ['net.ipv4.conf.all.rp_filter', 0],
      ['net.ipv4.conf.default.rp_filter', 0],
      [`net.ipv4.conf.${real}.rp_filter`, 0],
      [`net.ipv4.conf.${tun}.rp_filter`, 0],
      // ICMP errors xtr originates carry the gateway's own address as source;
      // without this the kernel drops them as martians when they come out of the TUN.
      [`net.ipv4.conf.${tun}.accept_local`, 1],
    ] as const) {
      await ensureSysctl(key, value, this.log);
    }
    await sysctl(`net.ipv6.conf.${tun}.disable_ipv6`, 0).catch(() => undefined);
    await sysctl(`net.ipv6.conf.${tun}.accept_dad`, 0).catch(() => undefined);
    const linkArgs = ['link', 'set', 'dev', tun, 'txqueuelen', String(LINK_QUEUE_LEN)];
    if (iface.mtu) linkArgs.push('mtu', String(iface.mtu));
    await ip([...linkArgs, 'up']);
    for (const fam of [4, 6] as const) {
      await ip([`-${fam}`, 'route', 'replace', 'default', 'dev', tun, 'table', String(st.table)]);
      // What xtr writes into the TUN leaves by the ordinary routes; explicit so
      // that another iif rule (ours for a different interface) cannot catch it.
      await addRuleOnce([`-${fam}`, 'rule', 'add', 'pref', String(st.prefOut), 'iif', tun, 'lookup', 'main']);
      // Local destinations are matched earlier by the `local` table rule
      // (pref 0), so only traffic the kernel would forward is diverted.
      await addRuleOnce([`-${fam}`, 'rule', 'add', 'pref', String(st.prefIn), 'iif', real, 'lookup', String(st.table)]);
    }
    this.log.info({ iface: iface.name, attach: real, tun, table: st.table }, 'gateway-mode interface placed');
  }

  /** A device placed by neither mode: just MTU and up, in our namespace. */
  async bringUp(dev: string, mtu?: number): Promise<void> {
    const args = ['link', 'set', 'dev', dev, 'txqueuelen', String(LINK_QUEUE_LEN)];
    if (mtu) args.push('mtu', String(mtu));
    await ip([...args, 'up']);
  }

  /**
   * The fail-closed floor of one gateway interface: in its table, a blackhole
   * default route of the largest metric, under the TUN's default route while
   * xtr runs and alone once the TUN is gone (the kernel deletes the TUN and
   * its routes when xtr's descriptor closes: stop, crash, kill -9); then the
   * diversion rules. Both survive the process, so packets arriving on the
   * real interface are dropped until xtr places the interface again.
   */
  private async failClosedRouting(st: GatewayState): Promise<void> {
    for (const fam of [4, 6] as const) {
      await ip([`-${fam}`, 'route', 'replace', 'blackhole', 'default', 'metric', String(FAIL_CLOSED_METRIC), 'table', String(st.table)]);
      await addRuleOnce([`-${fam}`, 'rule', 'add', 'pref', String(st.prefIn), 'iif', st.attach, 'lookup', String(st.table)]);
    }
  }

  private async removeGateway(st: GatewayState, quiet: boolean): Promise<void> {
    for (const fam of [4, 6] as const) {
      const steps: string[][] = [
        [`-${fam}`, 'rule', 'del', 'pref', String(st.prefIn)],
        [`-${fam}`, 'rule', 'del', 'pref', String(st.prefOut)],
        [`-${fam}`, 'route', 'flush', 'table', String(st.table)],
      ];
      for (const s of steps) {
        // A preference can carry several rules after a crash; delete until none is left.
        for (let i = 0; i < 8; i++) {
          try {
            await ip(s);
          } catch (e) {
            if (!quiet && i === 0 && !String(e).includes('No such file') && !String(e).includes('FIB table does not exist')) {
              this.log.warn({ err: String(e) }, 'gateway cleanup step failed');
            }
            break;
          }
          if (s[1] === 'route') break;
        }
      }
    }
  }

  /**
   * Gateway-mode NAT (docs/gateway.md "NAT"), after every placeGateway: the
   * kernel's `local` rule moves from pref 0 to GATEWAY_LOCAL_PREF, and rules
   * at GATEWAY_NAT_PREF (before it) divert into xtr what arrives on a real
   * interface for one of the gateway's own addresses (`addrs`) and belongs to
   * xtr: TCP/UDP/SCTP to the NAT port range (replies of MASQUERADE/SNAT
   * flows), to the forwarded ports (DNAT port forwards), and IPv4 ICMP (echo
   * replies and errors of NATed flows; xtr hands back into the kernel what
   * is not its own, through the TUN it came from). The gateway's own sockets
   * are kept out of the NAT range with ip_local_reserved_ports.
   */
  async placeGatewayNat(addrs: readonly string[], natPorts: readonly [number, number], forwardPorts: readonly { proto: string; lo: number; hi: number }[]): Promise<void> {
    if (this.gateways.length === 0) return;
    await this.removeGatewayNat(true);
    this.natPlaced = true;
    for (const fam of [4, 6] as const) {
      const own = addrs.filter((a) => familyOf(a) === fam).map(addrOf);
      if (own.length === 0) continue;
      // Never without a local rule: add the later one before deleting pref 0.
      await ip([`-${fam}`, 'rule', 'add', 'pref', String(GATEWAY_LOCAL_PREF), 'lookup', 'local']);
      await ip([`-${fam}`, 'rule', 'del', 'pref', '0', 'lookup', 'local']).catch(() => undefined);
      const matches: string[][] = [];
      // Protocol numbers, not names: iproute2 resolves names through /etc/protocols, which a
      // minimal image (debootstrap minbase, the container's base) does not have.
      const num: Record<string, string> = { tcp: '6', udp: '17', sctp: '132' };
      for (const proto of ['tcp', 'udp', 'sctp']) matches.push(['ipproto', num[proto], 'dport', `${natPorts[0]}-${natPorts[1]}`]);
      for (const f of forwardPorts) matches.push(['ipproto', num[f.proto] ?? f.proto, 'dport', f.lo === f.hi ? String(f.lo) : `${f.lo}-${f.hi}`]);
      // ICMPv6 is not diverted: neighbour discovery to the gateway's addresses must stay on the real interface.
      if (fam === 4) matches.push(['ipproto', '1']);
      for (const g of this.gateways) {
        for (const a of own) {
          for (const m of matches) {
            await ip([`-${fam}`, 'rule', 'add', 'pref', String(GATEWAY_NAT_PREF), 'iif', g.attach, 'to', a, ...m, 'lookup', String(g.table)]);
          }
        }
      }
    }
    // Keep the gateway's own connections off the NAT range (they would share its reply tuples).
    try {
      const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
      if (lo <= natPorts[1] && hi >= natPorts[0]) {
        const path = '/proc/sys/net/ipv4/ip_local_reserved_ports';
        const was = readFileSync(path, 'utf8').trim();
        const range = `${natPorts[0]}-${natPorts[1]}`;
        writeFileSync(path, was ? `${was},${range}\n` : `${range}\n`);
        this.reservedPortsWas = was;
        this.log.info({ range }, 'gateway NAT ports reserved (ip_local_reserved_ports)');
      }
    } catch (e) {
      this.log.warn({ err: String(e), natPorts }, 'gateway NAT port range overlaps ip_local_port_range and cannot be reserved: the gateway\'s own connections may take NAT ports; set net.ipv4.ip_local_reserved_ports outside');
    }
    this.log.info({ natPorts, forwardPorts, localPref: GATEWAY_LOCAL_PREF }, 'gateway NAT diversion placed');
  }

  private async removeGatewayNat(quiet: boolean): Promise<void> {
    for (const fam of [4, 6] as const) {
      // The local rule back at pref 0 first (a no-op error if it is there), then the moved one and ours.
      const hasZero = (await ip([`-${fam}`, 'rule', 'show', 'pref', '0']).catch(() => '')).includes('lookup local');
      if (!hasZero) await ip([`-${fam}`, 'rule', 'add', 'pref', '0', 'lookup', 'local']).catch((e) => quiet || this.log.warn({ err: String(e) }, 'cannot restore the local rule at pref 0'));
      for (const pref of [GATEWAY_LOCAL_PREF, GATEWAY_NAT_PREF]) {
        for (let i = 0; i < 4096; i++) {
          try {
            await ip([`-${fam}`, 'rule', 'del', 'pref', String(pref)]);
          } catch {
            break;
          }
        }
      }
    }
    if (this.reservedPortsWas !== null) {
      try {
        writeFileSync('/proc/sys/net/ipv4/ip_local_reserved_ports', `${this.reservedPortsWas}\n`);
      } catch (e) {
        if (!quiet) this.log.warn({ err: String(e) }, 'cannot restore ip_local_reserved_ports');
      }
      this.reservedPortsWas = null;
    }
  }

  /** Undoes policy routing and deletes namespaces this process created. Never throws. */
  async teardown(): Promise<void> {
    if (this.natPlaced) {
      this.natPlaced = false;
      await this.removeGatewayNat(false);
    }
    for (const st of this.gateways.splice(0)) {
      if (this.opts.failOpen) await this.removeGateway(st, false);
      else {
        // Fail closed: the diversion and its blackhole stay; only the route into the TUN goes (with the device).
        for (const fam of [4, 6] as const) await ip([`-${fam}`, 'route', 'del', 'default', 'dev', st.tun, 'table', String(st.table)]).catch(() => undefined);
        this.log.info({ attach: st.attach, table: st.table }, 'gateway policy routing left leading to a blackhole until xtr is back (fail closed; failOpen: true removes it)');
      }
    }
    for (const ns of this.createdNamespaces.splice(0)) {
      await run(['ip', 'netns', 'del', ns]).catch((e) => this.log.warn({ netns: ns, err: String(e) }, 'namespace delete failed'));
    }
  }
}

/** Metric of the fail-closed blackhole route: the largest, so the TUN's route always wins while it exists. */
export const FAIL_CLOSED_METRIC = 4294967295;

/** `ip rule add` that is content when the identical rule is already there (a previous run's, kept to fail closed). */
async function addRuleOnce(args: readonly string[]): Promise<void> {
  try {
    await ip(args);
  } catch (e) {
    if (!String(e).includes('File exists')) throw e;
  }
}

export function gatewayTunName(configName: string): string {
  return `xtr-${configName}`;
}
