/**
 * Whether the router can forward as configured, for `xtr health` and the
 * HTTP `/healthz` beside the metrics (docs/config.md "metrics"). Each check
 * names what is wrong; the router is healthy when all pass:
 *
 *  - forwarding:   the router's packet loop runs
 *  - rules:        the rule engine is installed (the saved/configured rules loaded)
 *  - device:NAME   each interface's device exists and is up where it lives
 *                  (link mode: the peer namespace; gateway mode: the TUN and the
 *                  real interface it steers; the host interface)
 *  - sysctl:KEY    gateway mode: the forwarding sysctls the kernel needs to hand
 *                  packets to xtr and send them on (ip_forward, forwarding)
 *  - event-loop:   no stall longer than maxEventLoopLagMs within the last
 *                  STALL_MEMORY_MS (a loop that is stalled right now answers
 *                  nothing at all, which a health probe's timeout reports)
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { XtrConfig } from './config.js';
import type { CommandTable } from './commands.js';
import { Placement } from './placement.js';

/** How long a past stall keeps the router unhealthy. */
export const STALL_MEMORY_MS = 10_000;
const TICK_MS = 100;

export interface HealthCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

export interface HealthReport {
  readonly healthy: boolean;
  readonly checks: readonly HealthCheck[];
}

export interface HealthSources {
  readonly config: XtrConfig;
  /** The router's packet loop runs. */
  running(): boolean;
  /** The rule engine is installed. */
  rulesLoaded(): boolean;
  /** Gateway mode (no host interface; attached TUNs). */
  readonly gateway: boolean;
}

function ipLink(dev: string, netns: string | null): Promise<{ exists: boolean; up: boolean; err?: string }> {
  const args = [...(netns ? ['-n', netns] : []), '-j', 'link', 'show', 'dev', dev];
  return new Promise((resolve) => {
    execFile('ip', args, { timeout: 3000 }, (err, stdout, stderr) => {
      if (err) return resolve({ exists: false, up: false, err: (stderr || err.message).trim() });
      try {
        const [l] = JSON.parse(stdout) as { flags?: string[] }[];
        resolve({ exists: true, up: !!l?.flags?.includes('UP') });
      } catch (e) {
        resolve({ exists: false, up: false, err: (e as Error).message });
      }
    });
  });
}

function readSysctl(key: string): string | null {
  try {
    return readFileSync(`/proc/sys/${key.replaceAll('.', '/')}`, 'utf8').trim();
  } catch {
    return null;
  }
}

export class HealthMonitor {
  private timer: NodeJS.Timeout | null = null;
  private expected = 0;
  /** The longest stall seen and when it ended (monotonic ms). */
  private lastStall: { ms: number; at: number } | null = null;
  /** The largest lag of any tick since start (ms), for the metrics. */
  maxLagMs = 0;

  constructor(
    private readonly src: HealthSources,
    readonly maxEventLoopLagMs: number,
  ) {}

  start(): void {
    if (this.timer) return;
    this.expected = performance.now() + TICK_MS;
    this.timer = setInterval(() => {
      const now = performance.now();
      const lag = Math.max(0, now - this.expected);
      this.expected = now + TICK_MS;
      if (lag > this.maxLagMs) this.maxLagMs = lag;
      if (lag > this.maxEventLoopLagMs) this.lastStall = { ms: lag, at: now };
    }, TICK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async check(): Promise<HealthReport> {
    const checks: HealthCheck[] = [];
    const add = (name: string, ok: boolean, detail: string) => checks.push({ name, ok, detail });
    const cfg = this.src.config;
    add('forwarding', this.src.running(), this.src.running() ? 'packet loop running' : 'the router is not forwarding');
    add('rules', this.src.rulesLoaded(), this.src.rulesLoaded() ? 'rule engine installed' : 'no rule engine: rules not loaded');

    const devs: { label: string; dev: string; netns: string | null }[] = [];
    for (const i of cfg.interfaces) {
      if (i.peer) devs.push({ label: i.name, dev: i.peer.ifname, netns: i.peer.netns });
      else devs.push({ label: i.name, dev: Placement.deviceName(i), netns: null });
      if (i.attach) devs.push({ label: `${i.name} (attached ${i.attach})`, dev: i.attach, netns: null });
    }
    if (!this.src.gateway) devs.push({ label: 'host interface', dev: cfg.hostInterface.name, netns: null });
    const links = await Promise.all(devs.map((d) => ipLink(d.dev, d.netns)));
    devs.forEach((d, k) => {
      const l = links[k]!;
      const where = `${d.dev}${d.netns ? ` in netns ${d.netns}` : ''}`;
      add(`device:${d.label}`, l.exists && l.up, !l.exists ? `${where} is gone (${l.err ?? 'not found'})` : l.up ? `${where} up` : `${where} is down`);
    });

    if (this.src.gateway) {
      for (const key of ['net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']) {
        const v = readSysctl(key);
        add(`sysctl:${key}`, v === '1', v === '1' ? `${key} = 1` : `${key} = ${v ?? 'unreadable'}, needs 1 (docker run --sysctl ${key}=1)`);
      }
    }

    const now = performance.now();
    const stall = this.lastStall && now - this.lastStall.at < STALL_MEMORY_MS ? this.lastStall : null;
    add(
      'event-loop',
      stall === null,
      stall === null
        ? `no stall over ${this.maxEventLoopLagMs} ms in the last ${STALL_MEMORY_MS / 1000} s`
        : `stalled ${Math.round(stall.ms)} ms (limit ${this.maxEventLoopLagMs} ms) ${Math.round((now - stall.at) / 1000)} s ago`,
    );
    return { healthy: checks.every((c) => c.ok), checks };
  }
}

/** Human form: one line per check, the verdict first. */
export function formatHealth(r: HealthReport): string {
  return `${r.healthy ? 'healthy' : 'UNHEALTHY'}\n` + r.checks.map((c) => `  ${c.ok ? 'ok  ' : 'FAIL'} ${c.name}: ${c.detail}\n`).join('');
}

/** `xtr health [--json]`: exit 0 healthy, 1 unhealthy (so a container HEALTHCHECK can run it). */
export function healthCommands(monitor: HealthMonitor): CommandTable {
  return {
    health: async (args) => {
      const json = args.includes('--json') || args.includes('-j');
      const unknown = args.filter((a) => a !== '--json' && a !== '-j');
      if (unknown.length) return { status: 2, stdout: '', stderr: `xtr health: unknown option ${unknown[0]} (usage: xtr health [--json])\n` };
      const r = await monitor.check();
      return { status: r.healthy ? 0 : 1, stdout: json ? JSON.stringify(r, null, 2) + '\n' : formatHealth(r), stderr: '' };
    },
  };
}
