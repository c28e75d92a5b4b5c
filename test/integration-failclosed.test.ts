/**
 * Issue 12, fail closed: a client probes a TCP port the rules DROP every
 * 50 ms (IPv4 and IPv6) while xtr is stopped (SIGTERM), started, killed with
 * SIGKILL, restarted and started again; a listener behind the router counts
 * what reaches it. Zero connections to the dropped port, in gateway mode
 * (namespaces: policy routing leads to a blackhole while xtr is down) and in
 * the lab (link mode: the peers' devices exist only while xtr holds them).
 * A port the rules allow is probed alongside: it connects while xtr runs, so
 * the probes are real.
 */
import test from 'ava';
import { Namespaces, background, run, sleep, startLab, startRouter, vethPair, type Background, type RouterProcess } from './helpers/netns.js';

const DROPPED = 9;
const ALLOWED = 10;

/** Accepts on both ports, printing one line per accepted connection. */
const SERVER = `
import socket, selectors, sys
sel = selectors.DefaultSelector()
for fam, addr in ((socket.AF_INET, '0.0.0.0'), (socket.AF_INET6, '::')):
    for port in (${DROPPED}, ${ALLOWED}):
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port)); s.listen(256); sel.register(s, selectors.EVENT_READ, port)
while True:
    for key, _ in sel.select(1):
        c, peer = key.fileobj.accept()
        print('accept', key.data, peer[0], flush=True)
        c.close()
`;

/**
 * Every 50 ms for DURATION s: one non-blocking connect to each target, each
 * given up to 1 s to complete (so a slow pass is still seen); prints the
 * number of ticks and of completed connects per target.
 */
const PROBER = `
import socket, sys, time, json, select, errno
dur = float(sys.argv[1]); targets = sys.argv[2:]
ok = {t: 0 for t in targets}; tries = 0; pending = []
now = time.monotonic(); end = now + dur; nxt = now
while True:
    now = time.monotonic()
    if now >= nxt and now < end:
        tries += 1; nxt += 0.05
        for t in targets:
            host, port = t.rsplit(':', 1)
            s = socket.socket(socket.AF_INET6 if ':' in host else socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((host, int(port)))
            if rc == errno.EINPROGRESS:
                pending.append((s, t, now + 1.0))
            else:
                # 0 (connected at once) counts; an immediate error (no route: the link is gone) does not.
                if rc == 0: ok[t] += 1
                s.close()
    keep = []
    for s, t, dl in pending:
        if now >= dl:
            s.close()
        else:
            keep.append((s, t, dl))
    pending = keep
    if now >= end and not pending:
        break
    wait = max(0.0, min(nxt - now, 0.05)) if now < end else 0.05
    _, w, _ = select.select([], [s for s, _, _ in pending], [], wait)
    done = set(w)
    keep = []
    for s, t, dl in pending:
        if s in done:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                try:
                    s.getpeername(); ok[t] += 1
                except OSError:
                    pass
            s.close()
        else:
            keep.append((s, t, dl))
    pending = keep
print(json.dumps({'tries': tries, 'ok': ok}), flush=True)
`;

interface Cycle {
  /** Starts xtr (restoring its saved rules). */
  start(): Promise<RouterProcess>;
}

/** Runs stop, start, kill -9, restart (stop + start), start-up while the prober runs; returns the prober's counts. */
async function cycle(t: import('ava').ExecutionContext, first: RouterProcess, c: Cycle, prober: Background): Promise<RouterProcess> {
  let r = first;
  await sleep(800);
  t.is(await r.stop(), 0, 'SIGTERM stop');
  await sleep(800);
  r = await c.start();
  await sleep(800);
  await r.proc.kill('SIGKILL');
  await sleep(800);
  r = await c.start();
  await sleep(800);
  t.is(await r.stop(), 0, 'restart: stop');
  r = await c.start();
  await sleep(800);
  void prober;
  return r;
}

function accepted(server: Background, port: number): number {
  return server
    .stdout()
    .toString()
    .split('\n')
    .filter((l) => l.startsWith(`accept ${port} `)).length;
}

const RULES: [string, string[]][] = [
  ['iptables', ['-A', 'FORWARD', '-p', 'tcp', '--dport', String(DROPPED), '-j', 'DROP']],
  ['ip6tables', ['-A', 'FORWARD', '-p', 'tcp', '--dport', String(DROPPED), '-j', 'DROP']],
];

async function gatewayRun(t: import('ava').ExecutionContext, failOpen: boolean): Promise<void> {
  t.timeout(180_000);
  const nss = new Namespaces(failOpen ? 'xx1-o' : 'xx1-g');
  const routers: RouterProcess[] = [];
  const bgs: Background[] = [];
  try {
    const a = await nss.add('a');
    const g = await nss.add('g');
    const b = await nss.add('b');
    await vethPair({ ns: a, ifname: 'a0', addresses: ['10.1.0.2/24', 'fd00:1::2/64'] }, { ns: g, ifname: 'ga', addresses: ['10.1.0.1/24', 'fd00:1::1/64'] });
    await vethPair({ ns: g, ifname: 'gb', addresses: ['10.2.0.1/24', 'fd00:2::1/64'] }, { ns: b, ifname: 'b0', addresses: ['10.2.0.2/24', 'fd00:2::2/64'] });
    for (const [ns, v4, v6] of [
      [a, '10.1.0.1', 'fd00:1::1'],
      [b, '10.2.0.1', 'fd00:2::1'],
    ]) {
      await run(['ip', 'route', 'add', 'default', 'via', v4], { netns: ns });
      await run(['ip', '-6', 'route', 'add', 'default', 'via', v6], { netns: ns });
    }
    const config = {
      logLevel: 'info',
      ...(failOpen ? { failOpen: true } : {}),
      stateDir: `/tmp/${nss.prefix}state`,
      interfaces: [
        { name: 'lan', mode: 'tun', mtu: 1500, addresses: ['10.1.0.1/24', 'fd00:1::1/64'], attach: 'ga' },
        { name: 'wan', mode: 'tun', mtu: 1500, addresses: ['10.2.0.1/24', 'fd00:2::1/64'], attach: 'gb' },
      ],
      routes: [],
    };
    const socket = `/run/xtr/${nss.prefix}gw.sock`;
    const start = async () => {
      const r = await startRouter({ netns: g, socket, config });
      routers.push(r);
      return r;
    };
    const first = await start();
    for (const [cmd, args] of RULES) t.is((await first.xtr([cmd, ...args])).status, 0);
    const server = background(['python3', '-c', SERVER], { netns: b });
    bgs.push(server);
    await sleep(500);
    const prober = background(['python3', '-c', PROBER, '8.5', `10.2.0.2:${DROPPED}`, `fd00:2::2:${DROPPED}`, `10.2.0.2:${ALLOWED}`], { netns: a });
    bgs.push(prober);
    const last = await cycle(t, first, { start }, prober);
    t.is(await prober.wait(30_000), 0, prober.stderr());
    const counts = JSON.parse(prober.stdout().toString()) as { tries: number; ok: Record<string, number> };
    t.log(`gateway: ${JSON.stringify(counts)}; accepted dropped=${accepted(server, DROPPED)} allowed=${accepted(server, ALLOWED)}`);
    t.true(counts.tries > 100);
    // The probes are real: the allowed port connected while xtr ran.
    t.true(counts.ok[`10.2.0.2:${ALLOWED}`]! > 0);
    t.true(accepted(server, ALLOWED) > 0);
    t.is(await last.stop(), 0);
    if (failOpen) {
      // The documented risk of the opt-out: while xtr is down the kernel forwards unfiltered.
      t.true(accepted(server, DROPPED) > 0);
      t.notRegex(await run(['ip', 'rule', 'show'], { netns: g }), /iif ga lookup/);
      return;
    }
    t.is(counts.ok[`10.2.0.2:${DROPPED}`], 0);
    t.is(counts.ok[`fd00:2::2:${DROPPED}`], 0);
    t.is(accepted(server, DROPPED), 0);
    // After a clean stop the diversion and its blackhole stay (fail closed).
    t.regex(await run(['ip', 'rule', 'show'], { netns: g }), /iif ga lookup \d+/);
    t.regex(await run(['ip', '-6', 'rule', 'show'], { netns: g }), /iif gb lookup \d+/);
    t.regex(await run(['ip', 'route', 'show', 'table', 'all'], { netns: g }), /blackhole default table \d+/);
  } finally {
    for (const bg of bgs) await bg.kill('SIGKILL');
    for (const r of routers) await r.stop();
    await nss.cleanup();
    await run(['rm', '-rf', `/tmp/${nss.prefix}state`]).catch(() => undefined);
  }
}

test.serial('gateway mode fails closed: no probe to a dropped port passes across stop, start, kill -9 and restart', (t) => gatewayRun(t, false));

test.serial('gateway mode with failOpen: true forwards unfiltered while xtr is down (the opt-out and its risk)', (t) => gatewayRun(t, true));

test.serial('the lab (link mode) fails closed: no probe to a dropped port passes across stop, start, kill -9 and restart', async (t) => {
  t.timeout(180_000);
  const lab = await startLab({ prefix: 'xx1-l' });
  const routers: RouterProcess[] = [];
  const bgs: Background[] = [];
  try {
    for (const [cmd, args] of RULES) t.is((await lab.xtr([cmd, ...args])).status, 0);
    const start = async () => {
      const r = await startRouter({ netns: lab.ns.r, config: lab.config, socket: lab.router.socket });
      routers.push(r);
      return r;
    };
    const server = lab.background('s', ['python3', '-c', SERVER]);
    await sleep(500);
    const prober = lab.background('c', ['python3', '-c', PROBER, '8.5', `203.0.113.2:${DROPPED}`, `2001:db8:5::2:${DROPPED}`, `203.0.113.2:${ALLOWED}`]);
    bgs.push(prober);
    await cycle(t, lab.router, { start }, prober);
    t.is(await prober.wait(30_000), 0, prober.stderr());
    const counts = JSON.parse(prober.stdout().toString()) as { tries: number; ok: Record<string, number> };
    t.log(`lab: ${JSON.stringify(counts)}; accepted dropped=${accepted(server, DROPPED)} allowed=${accepted(server, ALLOWED)}`);
    t.true(counts.tries > 100);
    t.is(counts.ok[`203.0.113.2:${DROPPED}`], 0);
    t.is(counts.ok[`2001:db8:5::2:${DROPPED}`], 0);
    t.is(accepted(server, DROPPED), 0);
    t.true(counts.ok[`203.0.113.2:${ALLOWED}`]! > 0);
  } finally {
    for (const bg of bgs) await bg.kill('SIGKILL');
    for (const r of routers) await r.stop();
    await lab.stop();
  }
});
