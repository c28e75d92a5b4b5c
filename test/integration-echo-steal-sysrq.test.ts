/**
 * ECHO, STEAL and SYSRQ with real traffic through xtr's lab (client, router,
 * server namespaces; test/helpers/netns.ts startLab):
 *
 *  - ECHO: socat in the client namespace gets its datagram back from xtr,
 *    IPv4 and IPv6, for the router's own address (INPUT) and for a server
 *    behind it (FORWARD), and the rule counts it;
 *  - STEAL: the datagram or SYN vanishes: the server's listener receives
 *    nothing and the client gets no answer at all (where the same port
 *    without the rule answers "Connection refused"), the rule counts it;
 *  - SYSRQ: the xtables-addons man page's sha1sum + socat snippet, taken from
 *    the seed file as printed with only `req`, `ipaddr` and `password` set,
 *    triggers `s` (the state file then holds the request's seqno); a
 *    replayed request, an old seqno, a wrong password and a request hashed
 *    for another destination are refused and counted; scripts/xtr-sysrq
 *    sends `t` over IPv6, `u` (conntrack flushed), `b` (xtr restarts and
 *    keeps the seqno: the request is refused when replayed to the new
 *    process; SHA-256 after the restart), then `o` (xtr stops).
 *
 * Namespaces are `xw1b…-`, removed by lab.stop() in `after.always`; every
 * tool runs with a time limit.
 */
import test from 'ava';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { REPO_ROOT, sleep, startLab, uniquePrefix, waitFor, type Lab } from './helpers/netns.js';
import { xtrPrerequisiteProblem } from './helpers/kernel-router.js';

const PASSWORD = 'lab-sysrq-pass';
const A4 = { client: '198.51.100.2', router: '198.51.100.1', server: '203.0.113.2' };
const A6 = { client: '2001:db8:c::2', router: '2001:db8:c::1', server: '2001:db8:5::2' };

let lab: Lab | null = null;
/** A router process started by xtr's own restart (SysRq b), killed at the end if still there. */
let restartedPid: number | null = null;

test.before(async () => {
  if (xtrPrerequisiteProblem()) return;
  lab = await startLab({
    prefix: uniquePrefix('xw1b'),
    patch: (doc) => {
      doc.extensions = { SYSRQ: { password: PASSWORD, debug: true } };
    },
  });
});

test.after.always(async () => {
  if (restartedPid !== null) {
    try {
      process.kill(restartedPid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await lab?.stop();
});

function need(t: { fail: (m: string) => void }): Lab | null {
  const why = xtrPrerequisiteProblem();
  if (why || !lab) {
    t.fail(`not run: ${why ?? 'lab did not start'}`);
    return null;
  }
  return lab;
}

async function xtr(l: Lab, line: string): Promise<string> {
  const words = line.split(' ');
  const r = await l.xtr(words);
  if (r.status !== 0) throw new Error(`xtr ${line}: ${r.stderr}`);
  return r.stdout;
}

/** Packet counts of the rules of a chain whose target is `target`, in order. */
async function counts(l: Lab, family: 4 | 6, chain: string, target: string): Promise<number[]> {
  const out = await xtr(l, `${family === 4 ? 'iptables' : 'ip6tables'} -L ${chain} -v -n -x`);
  return out
    .split('\n')
    .map((s) => s.trim().split(/\s+/))
    .filter((w) => w[2] === target)
    .map((w) => Number(w[0]));
}

/** socat in the client namespace: sends `data` over UDP to host:port and prints what comes back within 2 s. */
async function udpExchange(l: Lab, family: 4 | 6, host: string, port: number, data: string) {
  const addr = family === 4 ? `UDP4:${host}:${port}` : `UDP6:[${host}]:${port}`;
  return l.exec('c', ['socat', '-t', '2', '-T', '3', '-', addr], { input: data, timeoutMs: 10_000 });
}

test.serial('ECHO: socat in the client gets its datagram back from the router and from a server behind it, IPv4 and IPv6', async (t) => {
  const l = need(t);
  if (!l) return;
  for (const line of [
    'iptables -A INPUT -p udp --dport 7 -j ECHO',
    'ip6tables -A INPUT -p udp --dport 7 -j ECHO',
    `iptables -A FORWARD -p udp -d ${A4.server} --dport 7 -j ECHO`,
    `ip6tables -A FORWARD -p udp -d ${A6.server} --dport 7 -j ECHO`,
    // The reply crosses OUTPUT attached to the datagram's flow as nf_ct_attach leaves it: RELATED (reply direction), not NEW.
    'iptables -A OUTPUT -p udp --sport 7 -m conntrack --ctstate RELATED -j ACCEPT',
    'iptables -A OUTPUT -p udp --sport 7 -j DROP',
    'ip6tables -A OUTPUT -p udp --sport 7 -m conntrack --ctstate RELATED -j ACCEPT',
    'ip6tables -A OUTPUT -p udp --sport 7 -j DROP',
  ]) {
    await xtr(l, line);
  }
  // A connected UDP socket takes only replies from the address and port it sent to: the swap is checked by the kernel.
  for (const [family, host] of [
    [4, A4.router],
    [6, A6.router],
    [4, A4.server],
    [6, A6.server],
  ] as const) {
    const data = `echo-${family}-${host}-${'x'.repeat(300)}`;
    const r = await udpExchange(l, family, host, 7, data);
    t.is(r.stdout, data, `${host}: ${r.stderr}`);
  }
  t.deepEqual(await counts(l, 4, 'INPUT', 'ECHO'), [1]);
  t.deepEqual(await counts(l, 6, 'INPUT', 'ECHO'), [1]);
  t.deepEqual(await counts(l, 4, 'FORWARD', 'ECHO'), [1]);
  t.deepEqual(await counts(l, 6, 'FORWARD', 'ECHO'), [1]);
  // Both replies to the router's own address, and both from the server's (locally generated too), went out as RELATED.
  t.deepEqual(await counts(l, 4, 'OUTPUT', 'ACCEPT'), [2]);
  t.deepEqual(await counts(l, 4, 'OUTPUT', 'DROP'), [0]);
  t.deepEqual(await counts(l, 6, 'OUTPUT', 'ACCEPT'), [2]);
  t.deepEqual(await counts(l, 6, 'OUTPUT', 'DROP'), [0]);
  // No ECHO for another port: the server's kernel answers port unreachable, socat says so.
  const other = await udpExchange(l, 4, A4.server, 8, 'nobody');
  t.regex(other.stderr, /Connection refused/);
});

test.serial('STEAL: the packet vanishes: no delivery, no reply of any kind, counted by the rule', async (t) => {
  const l = need(t);
  if (!l) return;
  const listener = l.background('s', ['timeout', '60', 'socat', '-u', 'UDP4-RECV:9999,reuseaddr', '-']);
  await sleep(300);
  // Baselines without the rule: delivered; a closed port answers (ICMP port unreachable / RST).
  t.is((await udpExchange(l, 4, A4.server, 9999, 'before-steal\n')).code, 0);
  t.true(await waitFor(() => listener.stdout().toString().includes('before-steal'), 3000));
  t.regex((await udpExchange(l, 4, A4.server, 9998, 'x')).stderr, /Connection refused/);
  t.regex((await udpExchange(l, 6, A6.server, 9998, 'x')).stderr, /Connection refused/);
  const tcpBase = await l.exec('c', ['socat', '-T', '3', '-', `TCP4:${A4.server}:9997,connect-timeout=2`], { input: 'x', timeoutMs: 10_000 });
  t.regex(tcpBase.stderr, /Connection refused/);

  await xtr(l, 'iptables -A FORWARD -p udp --dport 9998:9999 -j STEAL');
  await xtr(l, 'ip6tables -A FORWARD -p udp --dport 9998 -j STEAL');
  await xtr(l, 'iptables -A FORWARD -p tcp --dport 9997 -j STEAL');
  const stolen = await udpExchange(l, 4, A4.server, 9999, 'after-steal\n');
  t.is(stolen.code, 0, stolen.stderr);
  t.is(stolen.stdout, '');
  for (const [family, host] of [
    [4, A4.server],
    [6, A6.server],
  ] as const) {
    const r = await udpExchange(l, family, host, 9998, 'x');
    t.is(r.code, 0, `${host}: nothing came back, not even an ICMP error (${r.stderr})`);
    t.is(r.stdout, '');
  }
  const tcp = await l.exec('c', ['socat', '-T', '3', '-', `TCP4:${A4.server}:9997,connect-timeout=2`], { input: 'x', timeoutMs: 10_000 });
  t.regex(tcp.stderr, /timed out/i, 'the SYN vanished: no RST, no ICMP');
  await sleep(300);
  t.false(listener.stdout().toString().includes('after-steal'));
  await listener.kill();
  const stealCounts = await counts(l, 4, 'FORWARD', 'STEAL');
  t.is(stealCounts[0], 2, 'two datagrams stolen');
  t.true(stealCounts[1] >= 1, `the SYN (and its retransmissions) counted: ${stealCounts[1]}`);
  t.deepEqual(await counts(l, 6, 'FORWARD', 'STEAL'), [1]);
});

/** The man page's "To trigger SYSRQ from a remote host, just use socat:" snippet, as printed in the seed. */
function manPageSnippet(): string {
  const page = readFileSync(join(REPO_ROOT, '..', 'shared', 'seeds', '002_b25ef8ec09ca238e.txt'), 'utf8');
  const start = page.indexOf('To trigger SYSRQ from a remote host, just use socat:');
  const end = page.indexOf('See the Linux docs for possible sysrq keys.', start);
  if (start < 0 || end < 0) throw new Error('SYSRQ snippet not found in the man page seed');
  return page.slice(page.indexOf('\n', start) + 1, end).trim();
}

const SEEDS = join(REPO_ROOT, '..', 'shared', 'seeds', '002_b25ef8ec09ca238e.txt');

async function stats(l: Lab): Promise<Record<string, number>> {
  const text = await xtr(l, 'proc cat net/xt_SYSRQ/stats');
  return Object.fromEntries(text.trim().split('\n').map((s) => s.split(' ')).map(([k, v]) => [k, Number(v)]));
}

/** xtr-sysrq in the client namespace (password through the environment, never argv). */
async function client(l: Lab, args: string[], password = PASSWORD) {
  const r = await l.exec('c', ['env', `XTR_SYSRQ_PASSWORD=${password}`, join(REPO_ROOT, 'scripts', 'xtr-sysrq'), ...args], { timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`xtr-sysrq ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Sends exactly these bytes (a request, with the newline echo adds) from the client. */
async function sendRaw(l: Lab, family: 4 | 6, host: string, req: string): Promise<void> {
  const r = await l.exec('c', ['socat', '-u', '-', family === 4 ? `UDP4-SENDTO:${host}:9` : `UDP6-SENDTO:[${host}]:9`], { input: `${req}\n`, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`socat: ${r.stderr}`);
}

async function pidOf(l: Lab): Promise<number> {
  return (JSON.parse(await xtr(l, 'status --json')) as { pid: number }).pid;
}

test.serial('SYSRQ: the man page snippet triggers s; replay, old seqno, wrong password, other destination refused and counted; xtr-sysrq drives t, u, b and o', async (t) => {
  const l = need(t);
  if (!l) return;
  if (!existsSync(SEEDS)) {
    t.fail(`man page seed not found at ${SEEDS}`);
    return;
  }
  await xtr(l, 'iptables -A INPUT -p udp --dport 9 -j SYSRQ');
  await xtr(l, 'ip6tables -A INPUT -p udp --dport 9 -j SYSRQ');
  await xtr(l, 'iptables -A FORWARD -m conntrack --ctstate NEW,ESTABLISHED -j ACCEPT');
  const stateFile = join(String(l.config.stateDir), 'netfilter.json');
  const savedSeqno = () => {
    const m = /"SYSRQ:seqno":\s*\{\s*"seqno":\s*(\d+)/.exec(existsSync(stateFile) ? readFileSync(stateFile, 'utf8') : '');
    return m ? Number(m[1]) : null;
  };
  const startSeqno = Number((await xtr(l, 'proc cat net/xt_SYSRQ/seqno')).trim());
  t.true(Math.abs(startSeqno - Date.now() / 1000) < 30, 'the counter starts at the time of day');
  // The snippet's seqno is `date +%s`: it must be strictly greater than the counter, so let a second pass.
  await waitFor(() => Date.now() / 1000 >= startSeqno + 1.2, 3000);

  // 1. The man page's snippet as printed, with only req, ipaddr and password set before its req= line.
  const snippet = manPageSnippet();
  t.regex(snippet, /^sysrq_key="s"/);
  const additions = `req="$sysrq_key,$seqno,$salt"\nipaddr=${A4.router}\npassword=${PASSWORD}\n`;
  const script = snippet.replace(/^req="\$req,/m, `${additions}req="$req,`);
  t.is(script.split('\n').length, snippet.split('\n').length + 3, 'three lines added, nothing else');
  const sh = await l.exec('c', ['bash', '-c', script], { timeoutMs: 15_000 });
  t.is(sh.code, 0, sh.stderr);
  t.true(await waitFor(() => l.router.log().includes('xt_SYSRQ: SysRq s'), 5000), 'SysRq s logged');
  const tookSeqno = Number((await xtr(l, 'proc cat net/xt_SYSRQ/seqno')).trim());
  t.true(tookSeqno > startSeqno);
  t.true(await waitFor(() => savedSeqno() === tookSeqno, 5000), `s saved the state now: the state file holds seqno ${tookSeqno} (has ${savedSeqno()})`);
  t.is((await stats(l)).accepted, 1);

  // 2. Refusals, each counted, none moving the counter.
  const seq = tookSeqno + 10;
  const req = (await client(l, ['-n', '-s', String(seq), '--salt', 'fixedsalt', A4.router, 's'])).trim();
  await sendRaw(l, 4, A4.router, req);
  t.true(await waitFor(async () => (await stats(l)).accepted === 2, 5000), 'the request from xtr-sysrq taken');
  await sendRaw(l, 4, A4.router, req); // replayed byte for byte
  await client(l, ['-s', String(seq - 5), A4.router, 's']); // old seqno
  await client(l, ['-s', String(seq + 1), A4.router, 's'], 'not-the-password'); // wrong password
  await client(l, ['-s', String(seq + 2), '-a', '198.51.100.99', A4.router, 's']); // hashed for another destination
  const refused = await waitFor(async () => (await stats(l)).refused === 4, 5000);
  const s = await stats(l);
  t.true(refused, JSON.stringify(s));
  t.is(s['refused-old-seqno'], 2, 'the replay and the old seqno');
  t.is(s['refused-bad-digest'], 2, 'the wrong password and the other destination');
  t.is(Number((await xtr(l, 'proc cat net/xt_SYSRQ/seqno')).trim()), seq);

  // 3. t over IPv6 (the address hashed fully expanded): the status in the log.
  await client(l, ['-s', String(seq + 3), A6.router, 't']);
  t.true(await waitFor(() => /"msg":"status"/.test(l.router.log()), 5000), 'status written to the log');

  // 4. u: conntrack flushed (the client's flows were tracked).
  await udpExchange(l, 4, A4.server, 8, 'tracked');
  const before = Number((await xtr(l, 'conntrack -C')).trim());
  t.true(before > 0, `flows tracked before u (${before})`);
  await client(l, ['-s', String(seq + 4), A4.router, 'u']);
  t.true(await waitFor(() => l.router.log().includes('xt_SYSRQ: SysRq u'), 5000));
  t.true(await waitFor(async () => Number((await xtr(l, 'conntrack -C')).trim()) < before, 5000), 'conntrack flushed');

  // 5. b: xtr restarts. The config now asks for SHA-256, which the new process reads.
  const oldPid = await pidOf(l);
  const configFile = join(dirname(l.router.logFile), 'config.json');
  const config = JSON.parse(readFileSync(configFile, 'utf8'));
  config.extensions = { SYSRQ: { password: PASSWORD, hash: 'sha256', debug: true } };
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const future = seq + 100_000; // far beyond the time of day: only the persisted counter can refuse it after the restart
  const restartReq = (await client(l, ['-n', '-s', String(future), '--salt', 'restart', A4.router, 'b'])).trim();
  await sendRaw(l, 4, A4.router, restartReq);
  let newPid = 0;
  const restarted = await waitFor(
    async () => {
      try {
        newPid = await pidOf(l);
        return newPid !== oldPid;
      } catch {
        return false;
      }
    },
    30_000,
    200,
  );
  t.true(restarted, 'xtr came back under a new process');
  if (!restarted) return;
  restartedPid = newPid;
  t.is(Number((await xtr(l, 'proc cat net/xt_SYSRQ/seqno')).trim()), future, 'the counter survived the restart');
  t.regex(await xtr(l, 'iptables-save'), /-A INPUT -p udp -m udp --dport 9 -j SYSRQ/);
  // The same bytes again, to the new process: refused as old.
  await sendRaw(l, 4, A4.router, restartReq);
  t.true(await waitFor(async () => (await stats(l))['refused-old-seqno'] === 1, 5000), 'replay after the restart refused');
  // SHA-1 requests no longer do; SHA-256 ones do.
  await client(l, ['-s', String(future + 1), A4.router, 's']);
  t.true(await waitFor(async () => (await stats(l))['refused-short-digest'] === 1, 5000), 'a SHA-1 digest is short for SHA-256');
  await client(l, ['-H', 'sha256', '-s', String(future + 2), A4.router, 's']);
  t.true(await waitFor(async () => (await stats(l)).accepted === 1, 5000), 'SHA-256 request taken');

  // 6. o: xtr stops.
  await client(l, ['-H', 'sha256', '-s', String(future + 3), A4.router, 'o']);
  const gone = await waitFor(
    () => {
      try {
        process.kill(newPid, 0);
        return false;
      } catch {
        return true;
      }
    },
    20_000,
    200,
  );
  t.true(gone, 'xtr stopped');
  if (gone) restartedPid = null;
  t.regex(l.router.log(), /appliance action stop/);
});
