/**
 * The lab's configuration, embedded so `npm start` needs no file: xtr runs in
 * `<prefix>r` and its interfaces eth0/eth1/eth2 appear as c0/s0/m0 in the
 * client, server and monitor namespaces `<prefix>c`, `<prefix>s`, `<prefix>m`
 * (issue 2, section 6). The prefix lets tests run labs side by side with
 * unique namespace names.
 */
import { validateConfig, type InterfaceMode, type XtrConfig } from './config.js';

export interface DefaultConfigOptions {
  /** Namespace-name prefix; default "xtr-". */
  prefix?: string;
  /** Mode of all three interfaces; default "tun". */
  mode?: InterfaceMode;
  /** Control socket path; default /run/xtr/xtr.sock. */
  socket?: string;
  /** Host-interface (local delivery) device name; default "xtr0". */
  hostInterface?: string;
  stateDir?: string;
  logLevel?: string;
}

/** The raw document (before validation), as a user would write it in YAML. */
export function defaultConfigDocument(prefixOrOptions: string | DefaultConfigOptions = {}): Record<string, unknown> {
  const o: DefaultConfigOptions = typeof prefixOrOptions === 'string' ? { prefix: prefixOrOptions } : prefixOrOptions;
  const p = o.prefix ?? 'xtr-';
  const mode = o.mode ?? 'tun';
  const link = (name: string, ns: string, ifname: string, v4: string, v6: string, peers4: string[]) => ({
    name,
    mode,
    mtu: 1500,
    addresses: [`${v4}.1/24`, `${v6}::1/64`],
    peer: {
      netns: `${p}${ns}`,
      ifname,
      addresses: [...peers4.map((h) => `${v4}.${h}/24`), `${v6}::2/64`],
      routes: ['default'],
    },
  });
  return {
    logLevel: o.logLevel ?? 'info',
    control: { socket: o.socket ?? '/run/xtr/xtr.sock' },
    stateDir: o.stateDir ?? '/var/lib/xtr',
    hostInterface: { name: o.hostInterface ?? 'xtr0' },
    interfaces: [
      link('eth0', 'c', 'c0', '198.51.100', '2001:db8:c', ['2', '3']),
      link('eth1', 's', 's0', '203.0.113', '2001:db8:5', ['2']),
      link('eth2', 'm', 'm0', '192.0.2', '2001:db8:6', ['2']),
    ],
    routes: [],
    netfilter: {},
    extensions: {},
    // Issue 13: `npm start` shows the Prometheus endpoint working, on the router namespace's loopback
    // (`ip netns exec xtr-r curl http://127.0.0.1:9108/metrics`); one per lab namespace, no clash.
    metrics: { listen: '127.0.0.1:9108' },
  };
}

/** The validated lab configuration. */
export function defaultConfig(prefixOrOptions: string | DefaultConfigOptions = {}): XtrConfig {
  return validateConfig(defaultConfigDocument(prefixOrOptions));
}
