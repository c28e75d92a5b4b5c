/**
 * The port-knocking script of seed 001 run through `xtr iptables` and then
 * driven with packets built from bytes, at the engine level (PREROUTING ->
 * INPUT with the real conntrack, recent and REJECT): the right sequence
 * opens port 22 for that client only; wrong order, an interleaved wrong
 * port, or a too-slow sequence does not. (The lab test with real clients
 * lives with the acceptance tests.)
 */
import test from 'ava';
import { Conntrack } from '../router/conntrack.js';
import { Hook, Verdict } from '../xt/packet.js';
import { packet, testEngine } from '../router/netfilter/testkit.js';
import { restoreState, saveState } from '../router/netfilter/index.js';

const EXT = 'eth0';
const SCRIPT = `
iptables -F
iptables -t nat -F
iptables -X
iptables -t nat -X
iptables -P INPUT DROP
iptables -P FORWARD DROP
iptables -P OUTPUT DROP
iptables -I INPUT 1 -i ! lo -j DROP
iptables -I FORWARD 1 -i ! lo -j DROP
iptables -I OUTPUT 1 -o ! lo -j DROP
iptables -A INPUT -i lo -j ACCEPT
iptables -A OUTPUT -o lo -j ACCEPT
iptables -A INPUT -s 10.0.0.0/8 -i ${EXT} -j DROP
iptables -A INPUT -s 127.0.0.0/8 -i ${EXT} -j DROP
iptables -A INPUT -s 172.16.0.0/12 -i ${EXT} -j DROP
iptables -A INPUT -s 192.168.0.0/16 -i ${EXT} -j DROP
iptables -A OUTPUT -p tcp -m state --state ESTABLISHED,RELATED -j ACCEPT
iptables -A OUTPUT -o eth0 -j ACCEPT
iptables -N icmp-packets
iptables -A icmp-packets -p icmp --icmp-type echo-request -j ACCEPT
iptables -N syn-flood
iptables -A syn-flood -m limit --limit 1/s --limit-burst 4 -j RETURN
iptables -A syn-flood -j DROP
iptables -N port-knocking
iptables -N knocking-okey
iptables -N knocking-oops
iptables -A port-knocking -p tcp --dport 1223 -m recent --rcheck --hitcount 1 -j knocking-oops
iptables -A port-knocking -p tcp --dport 1223 -m recent --set -j REJECT --reject-with host-prohib
iptables -A port-knocking -p tcp --dport 569 -m recent --rcheck --hitcount 2 -j knocking-oops
iptables -A port-knocking -p tcp --dport 569 -m recent --update --hitcount 1 -j REJECT --reject-with host-prohib
iptables -A port-knocking -p tcp --dport 715 -m recent --rcheck --hitcount 3 -j knocking-oops
iptables -A port-knocking -p tcp --dport 715 -m recent --update --hitcount 2 -j REJECT --reject-with host-prohib
iptables -A port-knocking -p tcp -m recent --remove
iptables -A knocking-okey -m state --state NEW -p tcp -m recent --remove -j ACCEPT
iptables -A knocking-oops -m state --state NEW -p tcp -m recent --remove
iptables -A INPUT -i ${EXT} -p icmp -j icmp-packets
iptables -A INPUT -p tcp -m state --state ESTABLISHED,RELATED -j ACCEPT
iptables -A INPUT -i ${EXT} -p tcp --syn -j syn-flood
iptables -A INPUT -i ${EXT} -p tcp --dport 22 -m state --state NEW -m recent --rcheck --seconds 20 --hitcount 3 -j knocking-okey
iptables -A INPUT -i ${EXT} -p tcp -j port-knocking
iptables -D INPUT 1
iptables -D FORWARD 1
iptables -D OUTPUT 1
`;

async function router() {
  const ct = new Conntrack({ max: 1024 });
  const e = await testEngine([], ct);
  const refused: string[] = [];
  for (const line of SCRIPT.trim().split('\n')) {
    const r = await e.run(line);
    if (r.status !== 0) refused.push(`${r.status} ${line}`);
  }
  let clock = 1_000_000;
  let sport = 30000;
  /** One SYN from `src` to the router's port at `now` ms; returns the INPUT verdict. */
  const syn = (src: string, dport: number, advanceMs = 1000): Verdict => {
    clock += advanceMs;
    e.services.clock = clock;
    const p = packet({ src, dst: '203.0.113.1', proto: 'tcp', sport: sport++, dport, flags: 0x02 }, EXT);
    p.now = clock;
    if (e.nf.hook(Hook.PREROUTING, p) !== Verdict.ACCEPT) return Verdict.DROP;
    return e.nf.hook(Hook.INPUT, p);
  };
  return { e, refused, syn };
}

test('the script is accepted and refused line by line as by iptables 1.8.9', async (t) => {
  const { refused } = await router();
  // 1.8.9 refuses the old "-i ! lo" form (status 2), so the later "-D ... 1" delete the lo rules instead.
  // (This copy leaves out the script's FORWARD rules, so its "-D FORWARD 1" finds nothing, as the kernel would.)
  t.deepEqual(refused, [
    '2 iptables -I INPUT 1 -i ! lo -j DROP',
    '2 iptables -I FORWARD 1 -i ! lo -j DROP',
    '2 iptables -I OUTPUT 1 -o ! lo -j DROP',
    '1 iptables -D FORWARD 1',
  ]);
});

test('right knock sequence opens 22 for that client only; wrong order, interleaved port and slow knocks do not', async (t) => {
  const { e, syn } = await router();
  const A = '198.51.100.10';
  const B = '198.51.100.20';
  t.is(syn(A, 22), Verdict.DROP, 'closed before knocking');
  for (const port of [1223, 569, 715]) t.is(syn(A, port), Verdict.DROP, `knock ${port} is rejected`);
  // REJECT's ICMP errors are the router's to send (services.icmpError, one rate limiter), so they are asked for, not emitted.
  t.deepEqual(e.services.icmpErrors.map((c) => `${c.type}/${c.code}`), ['3/10', '3/10', '3/10'], 'REJECT answered each knock (host-prohibited)');
  t.is(syn(B, 22), Verdict.DROP, 'a second client is unaffected');
  t.is(syn(A, 22), Verdict.ACCEPT, 'open for the knocker');
  t.is(syn(A, 22), Verdict.DROP, 'knocking-okey removed the entry: one connection per knock');

  // Wrong order.
  for (const port of [569, 1223, 715]) syn(A, port);
  t.is(syn(A, 22), Verdict.DROP, 'wrong order');
  // An interleaved wrong port clears the sequence.
  for (const port of [1223, 569, 4444, 715]) syn(A, port);
  t.is(syn(A, 22), Verdict.DROP, 'interleaved port');
  // Too slow: the last knock more than 20 s before the connection attempt.
  for (const port of [1223, 569, 715]) syn(A, port);
  t.is(syn(A, 22, 25_000), Verdict.DROP, 'too slow');
  // And the right sequence still works afterwards.
  for (const port of [1223, 569, 715]) syn(A, port);
  t.is(syn(A, 22), Verdict.ACCEPT);
  t.regex((await e.run('proc ls')).stdout, /net\/xt_recent\/DEFAULT/);
});

test('knock state survives iptables-restore of the same rules and a saveState/restoreState restart', async (t) => {
  const { e, syn } = await router();
  const A = '198.51.100.10';
  for (const port of [1223, 569]) syn(A, port);
  const before = (await e.run('proc cat net/xt_recent/DEFAULT')).stdout;
  t.regex(before, /src=198\.51\.100\.10/);
  // Reload the whole rule set: the new rules take the table before the old ones let go.
  const saved = (await e.run('iptables-save')).stdout;
  const r = await e.run('iptables-restore', saved);
  t.is(r.status, 0, r.stderr);
  t.is((await e.run('proc cat net/xt_recent/DEFAULT')).stdout, before);
  t.is(syn(A, 715), Verdict.DROP);
  t.is(syn(A, 22), Verdict.ACCEPT, 'the sequence begun before the reload completes after it');

  // Restart: a new engine restored from saveState keeps rules and the recent table.
  for (const port of [1223, 569, 715]) syn(A, port);
  const state = saveState(e.nf);
  const next = await testEngine([], new Conntrack({ max: 1024 }));
  restoreState(next.nf, state);
  t.is((await next.run('iptables-save')).stdout, (await e.run('iptables-save')).stdout);
  t.regex((await next.run('proc cat net/xt_recent/DEFAULT')).stdout, /src=198\.51\.100\.10/);
});
