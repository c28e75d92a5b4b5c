/**
 * Issue 13 §3/§4 in a namespace lab: the router started with a config file (link mode, client c
 * and server s) and a rules file; the file is rewritten and SIGHUP (or `xtr reload`) applies what
 * changed, shown by traffic: a rules file (ICMP dropped, then not), an address (the router answers
 * on it through its host interface), a route (a network behind the server becomes reachable). A
 * broken config (not JSON, a bad value, a missing rules file, a bad rule line, a field that needs a
 * restart) changes nothing: traffic and rules as before, the error in the log and as `xtr reload`'s
 * exit 1. Every rule change through the socket is one audit line naming the peer (the kernel's
 * pid, here the test process itself) and an `xtr events` rule-change event; drops by reason come as
 * rate-limited `drop` events; log lines have ISO time and level names, and their syslog copy reaches
 * a Unix datagram socket (socat standing in for the daemon) as RFC 5424 messages with severities.
 */
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { background, exec, Namespaces, REPO_ROOT, run, startRouter, uniquePrefix, waitFor, type RouterProcess } from './helpers/netns.js';

const XTR = join(REPO_ROOT, 'bin', 'xtr.js');
const readIf = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8') : '');

const RULES_DROP_ICMP = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -d 10.62.0.2/32 -p icmp -j DROP\nCOMMIT\n';
const RULES_DROP_UDP = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p udp -m udp --dport 9 -j DROP\nCOMMIT\n';

type Doc = Record<string, unknown> & { interfaces: (Record<string, unknown> & { addresses: string[]; mode?: string })[]; routes: unknown[]; netfilter: { rulesFiles: { v4: string } } };

/** JSON log lines of the router so far. */
function logLines(router: RouterProcess): Record<string, unknown>[] {
  return router
    .log()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

test.serial('SIGHUP / xtr reload apply a changed config (rules file, address, route) and keep the running one when the new one is broken; audit lines and events', async (t) => {
  const nss = new Namespaces(uniquePrefix('yd'));
  const dir = mkdtempSync(join(tmpdir(), 'yd-reload-'));
  let router: RouterProcess | null = null;
  const bgs: ReturnType<typeof background>[] = [];
  try {
    const r = await nss.add('r');
    const c = await nss.add('c');
    const s = await nss.add('s');
    const rules = join(dir, 'rules.v4');
    writeFileSync(rules, RULES_DROP_ICMP);
    // A syslog daemon stand-in: socat receiving datagrams on a Unix socket (log.syslog.path).
    const syslogSock = join(dir, 'log.sock');
    const syslogOut = join(dir, 'syslog.out');
    bgs.push(background(['socat', '-u', `UNIX-RECV:${syslogSock}`, '-'], { stdoutFile: syslogOut }));
    t.true(await waitFor(() => existsSync(syslogSock), 10_000));
    const doc: Doc = {
      logLevel: 'info',
      stateDir: join(dir, 'state'),
      interfaces: [
        { name: 'eth0', mode: 'tun', mtu: 1500, addresses: ['10.61.0.1/24'], peer: { netns: c, ifname: 'c0', addresses: ['10.61.0.2/24'], routes: ['default'] } },
        { name: 'eth1', mode: 'tun', mtu: 1500, addresses: ['10.62.0.1/24'], peer: { netns: s, ifname: 's0', addresses: ['10.62.0.2/24'], routes: ['default'] } },
      ],
      routes: [],
      netfilter: { rulesFiles: { v4: rules } },
      log: { syslog: { path: syslogSock, facility: 'local1' } },
    } as Doc;
    router = await startRouter({ netns: r, socket: `/run/xtr/${nss.prefix}r.sock`, config: doc });
    const rp = router;
    // startRouter wrote the file it passed with --config: the test edits that one.
    const written = () => JSON.parse(readFileSync(rp.configPath, 'utf8')) as Doc;
    const rewrite = (edit: (d: Doc) => void) => {
      const d = written();
      edit(d);
      writeFileSync(rp.configPath, JSON.stringify(d, null, 2));
    };
    const ping = async (dst: string) => /\b1 received/.test((await exec(['ping', '-c', '1', '-W', '1', dst], { netns: c, timeoutMs: 10_000 })).stdout);
    const pid = rp.proc.proc.pid!;
    const sighup = async (expect: RegExp) => {
      const before = logLines(rp).length;
      process.kill(pid, 'SIGHUP');
      t.true(await waitFor(() => logLines(rp).slice(before).some((l) => expect.test(String(l.msg))), 15_000), `log after SIGHUP: ${expect}`);
      // SIGHUP still has the extensions re-read their data (geoip/asn databases), whatever the config did.
      t.true(await waitFor(() => logLines(rp).slice(before).some((l) => l.msg === 'extensions reloaded their external data'), 15_000), 'reload-databases after SIGHUP');
      return logLines(rp).slice(before);
    };
    await run(['ip', 'addr', 'add', '10.64.0.1/32', 'dev', 'lo'], { netns: s });

    // Log format: ISO time and level names by default.
    const first = logLines(rp)[0];
    t.regex(String(first.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    t.is(first.level, 'info');

    // Drop events: subscribe before the dropped pings.
    const drops = join(dir, 'drops.jsonl');
    bgs.push(background([process.execPath, XTR, '--socket', rp.socket, 'events', '--kind', 'drop', '--count', '1'], { stdoutFile: drops }));
    t.true(await waitFor(() => readIf(drops).includes('events.subscribed'), 30_000), readIf(drops));

    // 1. The rules file at boot drops ICMP to the server.
    t.false(await ping('10.62.0.2'), 'ICMP dropped by the boot rules file');
    t.true(await waitFor(() => readIf(drops).includes('"kind":"drop"'), 10_000), 'a drop event');
    const dropEvent = readIf(drops).split('\n').filter((l) => l.includes('"kind":"drop"')).map((l) => JSON.parse(l))[0];
    t.like(dropEvent, { kind: 'drop', reason: 'netfilter', intervalMs: 1000 });
    t.true(dropEvent.count >= 1 && dropEvent.interfaces.eth0 >= 1, JSON.stringify(dropEvent));

    // 2. SIGHUP with a changed rules file: the new rules are in force.
    writeFileSync(rules, RULES_DROP_UDP);
    const l2 = await sighup(/^configuration reloaded/);
    t.true(l2.some((l) => l.msg === 'configuration reloaded' && JSON.stringify(l.changed).includes('netfilter.rulesFiles.v4: re-loaded')), JSON.stringify(l2));
    t.true(l2.some((l) => l.msg === 'audit' && l.signal === 'SIGHUP' && l.exitStatus === 0), 'the SIGHUP reload is audited');
    t.true(await ping('10.62.0.2'), 'ICMP passes after the reload');
    t.true((await rp.xtr(['iptables-save', '-t', 'filter'])).stdout.includes('-A FORWARD -p udp -m udp --dport 9 -j DROP'));

    // 3. SIGHUP with a new address on eth0 and a route behind the server.
    t.false(await ping('10.63.0.1'), 'no such router address yet');
    t.false(await ping('10.64.0.1'), 'no route yet');
    rewrite((d) => {
      d.interfaces[0].addresses = ['10.61.0.1/24', '10.63.0.1/24'];
      d.routes = [{ to: '10.64.0.0/24', via: '10.62.0.2' }];
      // Settings in the same reload: log level, the metrics listener, the save interval.
      d.logLevel = 'debug';
      d.metrics = { listen: '127.0.0.1:9187' };
      (d.netfilter as Record<string, unknown>).stateSaveIntervalMs = 500;
    });
    const l3 = await sighup(/^configuration reloaded/);
    const changed3 = (l3.find((l) => l.msg === 'configuration reloaded')?.changed ?? []) as string[];
    t.deepEqual(changed3, [
      'interfaces[0].addresses (eth0): 10.61.0.1/24 -> 10.61.0.1/24 10.63.0.1/24',
      'routes: 0 -> 1',
      'logLevel: info -> debug',
      'metrics: off -> 127.0.0.1:9187',
      'netfilter.stateSaveIntervalMs: 1000 -> 500',
    ]);
    t.regex((await exec(['curl', '-sf', 'http://127.0.0.1:9187/metrics'], { netns: r, timeoutMs: 10_000 })).stdout, /^xtr_uptime_seconds /m, 'metrics listening after the reload');
    // logLevel debug in force: the drop summary of a dropped datagram is logged (at debug only).
    await exec(['bash', '-c', 'echo x > /dev/udp/10.62.0.2/9'], { netns: c, timeoutMs: 5000 });
    t.true(await waitFor(() => logLines(rp).some((l) => l.level === 'debug' && l.event === 'drop' && l.reason === 'netfilter'), 10_000), 'debug lines after the reload');
    t.true(await ping('10.63.0.1'), 'the router answers on its new address (host interface updated)');
    t.true(await ping('10.64.0.1'), 'the new route carries traffic');
    t.regex(await run(['ip', '-4', 'addr', 'show', 'dev', 'xtr0'], { netns: r }), /10\.63\.0\.1\/32/);
    const status = JSON.parse((await rp.xtr(['status', '--json'])).stdout) as { routes: { to: string; via: string | null }[] };
    t.true(status.routes.some((x) => x.to === '10.64.0.0/24' && x.via === '10.62.0.2'), JSON.stringify(status.routes));

    // 4. Broken configs: nothing changes, the error is logged (SIGHUP) and returned (xtr reload, exit 1).
    const good = readFileSync(rp.configPath, 'utf8');
    const saveBefore = (await rp.xtr(['iptables-save', '-t', 'filter'])).stdout.replace(/^#.*\n/gm, '').replace(/\[\d+:\d+\]/g, '[n]');
    writeFileSync(rp.configPath, '{"interfaces": [');
    const l4 = await sighup(/reload refused/);
    t.true(l4.some((l) => l.msg === 'configuration reload refused; the running configuration is kept' && /not valid JSON/.test(String(l.err)) && l.level === 'error'), JSON.stringify(l4));
    const broken: [string, () => void, RegExp][] = [
      ['not JSON', () => writeFileSync(rp.configPath, '{"interfaces": ['), /not valid JSON/],
      ['bad address', () => rewrite((d) => (d.interfaces[0].addresses = ['10.61.0.300/24'])), /interfaces\[0\]\.addresses\[0\]: "10\.61\.0\.300\/24" is not an IPv4\/IPv6 prefix/],
      ['missing rules file', () => rewrite((d) => (d.netfilter.rulesFiles.v4 = join(dir, 'nope.v4'))), /netfilter\.rulesFiles\.v4: cannot read .*nope\.v4: ENOENT/],
      ['bad rule line', () => writeFileSync(rules, '*filter\n-A FORWARD -p udp -j DROP\n-A FORWARD -j NOSUCHTARGET\nCOMMIT\n'), /netfilter\.rulesFiles\.v4: .*rules\.v4: .*Error occurred at line: 3/],
      ['restart needed', () => rewrite((d) => (d.interfaces[1].mode = 'tap')), /interfaces\[1\]\.mode: cannot change while xtr runs \(was "tun", now "tap"\): restart needed/],
    ];
    for (const [name, breakIt, why] of broken) {
      writeFileSync(rp.configPath, good);
      writeFileSync(rules, RULES_DROP_UDP);
      breakIt();
      const res = await rp.cli(['reload']);
      t.is(res.code, 1, `${name}: ${res.stderr}`);
      t.regex(res.stderr, why, name);
      t.regex(res.stderr, /the running configuration is unchanged/, name);
    }
    writeFileSync(rp.configPath, good);
    writeFileSync(rules, RULES_DROP_UDP);
    t.true(await ping('10.64.0.1'), 'routes as before the broken reloads');
    t.true(await ping('10.63.0.1'), 'addresses as before the broken reloads');
    t.is((await rp.xtr(['iptables-save', '-t', 'filter'])).stdout.replace(/^#.*\n/gm, '').replace(/\[\d+:\d+\]/g, '[n]'), saveBefore, 'rules as before the broken reloads');
    const ok = await rp.cli(['reload']);
    t.is(ok.code, 0, ok.stderr);
    t.is(ok.stdout, 'reloaded: no change\n');

    // 5. Audit: a rule change over the socket is one audit line with the kernel's view of the peer,
    // and a rule-change event.
    const events = join(dir, 'events.jsonl');
    bgs.push(background([process.execPath, XTR, '--socket', rp.socket, 'events', '--kind', 'rule-change', '--count', '1'], { stdoutFile: events }));
    t.true(await waitFor(() => readIf(events).includes('events.subscribed'), 30_000), readIf(events));
    const before = logLines(rp).length;
    t.is((await rp.xtr(['iptables', '-A', 'FORWARD', '-p', 'tcp', '--dport', '7', '-j', 'DROP'])).status, 0);
    t.is((await rp.xtr(['iptables', '-L', 'FORWARD'])).status, 0);
    // The line is written once the command answered and the kernel named the peer.
    t.true(await waitFor(() => logLines(rp).slice(before).some((l) => l.audit === true), 10_000));
    t.is((await rp.xtr(['ping'])).stdout, 'pong\n');
    const audits = logLines(rp).slice(before).filter((l) => l.audit === true);
    t.is(audits.length, 1, 'one audit line: the listing is not audited');
    t.deepEqual(audits[0].argv, ['iptables', '-A', 'FORWARD', '-p', 'tcp', '--dport', '7', '-j', 'DROP']);
    t.is(audits[0].exitStatus, 0);
    // The test process (in the host namespace) is the peer: found through sock_diag + /proc.
    t.like(audits[0].peer as object, { pid: process.pid, uid: 0 }, JSON.stringify(audits[0]));
    t.true(await waitFor(() => readIf(events).includes('"kind":"rule-change"'), 10_000), readIf(events));
    const ev = JSON.parse(readIf(events).split('\n').find((l) => l.includes('"kind":"rule-change"'))!);
    t.like(ev, { kind: 'rule-change', exitStatus: 0, peer: { pid: process.pid } });
    t.deepEqual(ev.argv, audits[0].argv);
    // The CLI as a peer: another process, named by the kernel.
    const cliRun = await rp.cli(['iptables', '-D', 'FORWARD', '-p', 'tcp', '--dport', '7', '-j', 'DROP']);
    t.is(cliRun.code, 0, cliRun.stderr);
    t.true(await waitFor(() => logLines(rp).slice(before).filter((l) => l.audit === true).length === 2, 10_000));
    const cliAudit = logLines(rp).filter((l) => l.audit === true).at(-1)!;
    t.like(cliAudit, { exitStatus: 0, argv: ['iptables', '-D', 'FORWARD', '-p', 'tcp', '--dport', '7', '-j', 'DROP'] });
    const peer = cliAudit.peer as { pid: number; uid: number };
    t.true(peer.pid > 0 && peer.pid !== process.pid && peer.pid !== pid && peer.uid === 0, JSON.stringify(cliAudit));

    // The syslog copy: RFC 5424 messages from the router's pid, local1 (17), info (6) / notice (5) for audit lines.
    const syslog = () => readIf(syslogOut).split(/(?=<\d{1,3}>1 )/);
    t.true(await waitFor(() => syslog().some((m) => m.includes('"argv":["iptables","-D"')), 10_000), readIf(syslogOut).slice(0, 2000));
    t.true(syslog().some((m) => new RegExp(`^<${17 * 8 + 6}>1 \\S+ \\S+ xtr ${pid} - - xtr running `).test(m)), syslog().slice(0, 5).join('\n'));
    t.true(syslog().some((m) => new RegExp(`^<${17 * 8 + 5}>1 \\S+ \\S+ xtr ${pid} - - audit \\{"audit":true,"argv":\\["iptables","-D"`).test(m)));
    t.true(syslog().some((m) => m.startsWith(`<${17 * 8 + 3}>1 `) && m.includes('configuration reload refused')), 'the refused reload at err');
  } finally {
    for (const b of bgs) await b.kill('SIGKILL');
    if (router) await router.stop();
    await nss.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
});
