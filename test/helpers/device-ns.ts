/**
 * A namespace of a test's own holding one device the test opened here: the
 * native device tests (native-tun, native-workers) move the device as the
 * router does (`ip link set DEV netns NS`; the fd keeps working) and talk to
 * it with kernel tools there. Synchronous, so a test's set-up reads top down.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
}

export function nsExec(ns: string, cmd: string, args: string[], timeout = 10_000): string {
  return execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout });
}

/**
 * Creates `<prefix><random>`, moves `dev` into it and returns its name; at teardown the device is
 * closed and the namespace deleted. IPv6 stays off on the device unless asked for (DAD, router and
 * MLD chatter would only be noise).
 */
export function namespaceWith(t: { teardown(fn: () => void): void }, dev: { name: string; close(): void }, opts: { ipv6?: boolean; prefix?: string } = {}): string {
  const ns = `${opts.prefix ?? 'xn-tun-'}${randomBytes(4).toString('hex')}`;
  ip('netns', 'add', ns);
  t.teardown(() => {
    dev.close();
    try {
      ip('netns', 'del', ns);
    } catch {
      /* already gone */
    }
  });
  ip('link', 'set', dev.name, 'netns', ns);
  if (!opts.ipv6) nsExec(ns, 'sysctl', ['-qw', `net.ipv6.conf.${dev.name}.disable_ipv6=1`]);
  return ns;
}
