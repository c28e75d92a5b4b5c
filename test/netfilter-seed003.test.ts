/**
 * The four `recent` recipes of seed 003 through `xtr iptables` and packets
 * built from bytes, at the engine level: reverse pinhole (OUTPUT --rdest
 * opens INPUT), log clog (one LOG line per burst), auth port (an address
 * written into net/xt_recent/authok from outside), quick IDS (FORWARD).
 */
import test from 'ava';
import { Conntrack } from '../router/conntrack.js';
import { Hook, Verdict } from '../xt/packet.js';
import { packet, testEngine, type PacketSpec } from '../router/netfilter/testkit.js';

async function engine(lines: string[]) {
  const e = await testEngine([], new Conntrack({ max: 1024 }));
  for (const l of lines) {
    const r = await e.run(l);
    if (r.status !== 0) throw new Error(`${l}: ${r.stderr}`);
  }
  let clock = 5_000_000;
  let sport = 20000;
  const send = (hook: Hook, spec: Omit<PacketSpec, 'sport'>, inIf: string | null, outIf: string | null, advanceMs = 1000): Verdict => {
    clock += advanceMs;
    e.services.clock = clock;
    const p = packet({ ...spec, sport: sport++ }, inIf, outIf);
    p.now = clock;
    const first = hook === Hook.OUTPUT ? Hook.OUTPUT : Hook.PREROUTING;
    if (e.nf.hook(first, p) !== Verdict.ACCEPT) return Verdict.DROP;
    return hook === Hook.OUTPUT ? Verdict.ACCEPT : e.nf.hook(hook, p);
  };
  return { e, send };
}

const ME = '192.0.2.1';
const PEER = '198.51.100.7';

test('reverse pinhole: an outbound connection (--rdest --set) opens the inbound port for that peer only', async (t) => {
  // As pasted, the rule has no --set/--rcheck/--update/--remove: iptables 1.8.9 refuses it, so does xtr.
  const pasted = await (await testEngine()).run('iptables -A OUTPUT -p tcp --dport 3306 -m recent --name dbout --rdest -j ACCEPT');
  t.is(pasted.status, 2);
  t.regex(pasted.stderr, /recent: you must specify one of `--set'/);
  const { send } = await engine([
    'iptables -P INPUT DROP',
    'iptables -A OUTPUT -p tcp --dport 3306 -m recent --name dbout --set --rdest -j ACCEPT',
    'iptables -A INPUT -p tcp --dport 3306 -m recent --name dbout --rcheck -j ACCEPT',
  ]);
  t.is(send(Hook.INPUT, { src: PEER, dst: ME, proto: 'tcp', dport: 3306 }, 'eth0', null), Verdict.DROP);
  t.is(send(Hook.OUTPUT, { src: ME, dst: PEER, proto: 'tcp', dport: 3306 }, null, 'eth0'), Verdict.ACCEPT);
  t.is(send(Hook.INPUT, { src: PEER, dst: ME, proto: 'tcp', dport: 3306 }, 'eth0', null), Verdict.ACCEPT);
  t.is(send(Hook.INPUT, { src: '198.51.100.8', dst: ME, proto: 'tcp', dport: 3306 }, 'eth0', null), Verdict.DROP);
});

test('log clog: the first NetBIOS datagram is logged, the rest of the burst is dropped silently', async (t) => {
  const { e, send } = await engine([
    'iptables -A INPUT -p udp --dport 138 -m recent --name udp-138 --rcheck --seconds 300 -j DROP',
    'iptables -A INPUT -p udp --dport 138 -m recent --name udp-138 --set',
    'iptables -A INPUT -j LOG --log-prefix INPUT-drop',
    'iptables -A INPUT -j DROP',
  ]);
  for (let i = 0; i < 5; i++) t.is(send(Hook.INPUT, { src: PEER, dst: ME, proto: 'udp', dport: 138 }, 'eth0', null), Verdict.DROP);
  t.is(e.services.logged.length, 1);
  t.regex(e.services.logged[0].line, /INPUT-drop/);
  t.regex(e.services.logged[0].line, /DPT=138/);
  // After the 300 s window the next one is logged again.
  send(Hook.INPUT, { src: PEER, dst: ME, proto: 'udp', dport: 138 }, 'eth0', null, 301_000);
  t.is(e.services.logged.length, 2);
});

test('auth port: writing an address into net/xt_recent/authok opens port 80 for it', async (t) => {
  const { e, send } = await engine([
    'iptables -P INPUT DROP',
    `iptables -A INPUT -d ${ME} -p tcp --dport 443 -j ACCEPT`,
    `iptables -A INPUT -d ${ME} -p tcp --dport 80 -m recent --name authok --rcheck -j ACCEPT`,
  ]);
  t.is(send(Hook.INPUT, { src: PEER, dst: ME, proto: 'tcp', dport: 80 }, 'eth0', null), Verdict.DROP);
  t.is(send(Hook.INPUT, { src: PEER, dst: ME, proto: 'tcp', dport: 443 }, 'eth0', null), Verdict.ACCEPT);
  // The blog's bare "echo IP >" is what 2.6-era kernels took; today's xt_recent wants "+IP".
  const bare = await e.run(`proc write /proc/net/xt_recent/authok ${PEER}`);
  t.is(bare.status, 1);
  t.regex(bare.stderr, /Need "\+ip", "-ip" or "\/"/);
  const w = await e.run(`proc write /proc/net/xt_recent/authok +${PEER}`);
  t.is(w.status, 0, w.stderr);
  t.regex((await e.run('proc cat net/xt_recent/authok')).stdout, new RegExp(`src=${PEER.replace(/\./g, '\\.')}`));
  t.is(send(Hook.INPUT, { src: PEER, dst: ME, proto: 'tcp', dport: 80 }, 'eth0', null), Verdict.ACCEPT);
  t.is(send(Hook.INPUT, { src: '198.51.100.9', dst: ME, proto: 'tcp', dport: 80 }, 'eth0', null), Verdict.DROP);
  t.is((await e.run(`proc write net/xt_recent/authok -${PEER}`)).status, 0);
  t.is(send(Hook.INPUT, { src: PEER, dst: ME, proto: 'tcp', dport: 80 }, 'eth0', null), Verdict.DROP);
  // The blog's "-j ALLOW" is not a target: refused as iptables refuses it, nothing added.
  const bad = await e.run(`iptables -A INPUT -d ${ME} -p tcp --dport 443 -j ALLOW`);
  t.is(bad.status, 2);
  t.regex(bad.stderr, /Couldn't load target `ALLOW'/);
});

test('quick IDS: a probe of 127/8 blacklists the source in FORWARD for 60 s from the probe', async (t) => {
  const { send } = await engine([
    'iptables -A FORWARD -m recent --name noplacelike --rcheck --seconds 60 -j DROP',
    'iptables -A FORWARD -i eth0 -d 127.0.0.0/8 -m recent --name noplacelike --set -j DROP',
    'iptables -A FORWARD -m recent --name noplacelike --update --seconds 60 -j DROP',
  ]);
  const fwd = (src: string, dst: string, advance = 1000) => send(Hook.FORWARD, { src, dst, proto: 'tcp', dport: 80 }, 'eth0', 'eth1', advance);
  t.is(fwd(PEER, '203.0.113.5'), Verdict.ACCEPT);
  t.is(fwd(PEER, '127.0.0.1'), Verdict.DROP);
  t.is(fwd(PEER, '203.0.113.5'), Verdict.DROP);
  t.is(fwd('198.51.100.99', '203.0.113.5'), Verdict.ACCEPT);
  t.is(fwd(PEER, '203.0.113.5', 50_000), Verdict.DROP, 'within 60 s of the probe');
  // The --rcheck rule matches first while the entry is fresh and does not refresh it; once it is
  // older than 60 s the --update rule (also --seconds 60) no longer matches either: free again.
  t.is(fwd(PEER, '203.0.113.5', 10_000), Verdict.ACCEPT, 'over 60 s after the probe');
});
