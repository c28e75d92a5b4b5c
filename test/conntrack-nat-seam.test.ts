/**
 * The NAT seam (router/conntrack/nat.ts): a binding set on an unconfirmed
 * entry re-keys its reply tuple so replies to the translated address find
 * the flow, clashes are refused, the per-packet hook is called exactly for
 * the hook/direction pairs nf_nat_packet rewrites, and without bindings
 * nothing changes.
 */
import test from 'ava';
import { CtState, Hook, Verdict, type PacketContext } from '../xt/packet.js';
import { ConnStatus } from '../xt/conn.js';
import { Conntrack, ConnEntry, NatBind, NatManip, formatEntry, isReplyDir, natTargetTuple, type NatHook } from '../router/conntrack.js';
import { parseIpv4, parseIpv6 } from '../dataplane/addr.js';
import { ctxOf, icmpMsg, ip4, ip6, tcpSeg, udpDgram } from './modules-fixtures.js';

const SYN = 0x02, ACK = 0x10;
const CLIENT = '10.0.0.1';
const SERVER = '198.51.100.7';
const PUBLIC = '192.0.2.1';
const v4 = (s: string) => Uint32Array.of(parseIpv4(s), 0, 0, 0);
const entryOf = (p: PacketContext) => p.ct as ConnEntry;
const HOOKS = [Hook.PREROUTING, Hook.INPUT, Hook.FORWARD, Hook.OUTPUT, Hook.POSTROUTING];

/** A NatHook that records its calls and rewrites nothing. */
class RecordingNat implements NatHook {
  calls: string[] = [];
  translate(pkt: PacketContext, entry: ConnEntry, manip: NatManip, reply: boolean): number {
    const to = natTargetTuple(entry, reply);
    this.calls.push(`${manip === NatManip.SRC ? 'SRC' : 'DST'} ${reply ? 'reply' : 'orig'} hook=${pkt.hook} ->${manip === NatManip.SRC ? to.dport : to.sport}`);
    return Verdict.ACCEPT;
  }
}

/** conntrack's half of the pipeline for one packet, stopping before confirm. */
function enter(ct: Conntrack, bytes: Buffer, now: number): PacketContext {
  const p = ctxOf(bytes, now);
  t_assert(ct.in(p) === Verdict.ACCEPT);
  return p;
}
function t_assert(ok: boolean): void {
  if (!ok) throw new Error('conntrack refused the packet');
}
/** Every hook's nat() call for a packet, as the engine will make them. */
function natAllHooks(ct: Conntrack, p: PacketContext): number[] {
  return HOOKS.map((h) => {
    p.hook = h;
    return ct.nat(h, p);
  });
}

test('without bindings nothing changes: reply tuple is orig inverted, no NAT bits, the hook is never called', (t) => {
  const plain = new Conntrack();
  const hooked = new Conntrack();
  const rec = new RecordingNat();
  hooked.setNatHook(rec);
  const packets = [
    ip4(CLIENT, SERVER, udpDgram(1000, 53)),
    ip4(SERVER, CLIENT, udpDgram(53, 1000)),
    ip4(CLIENT, SERVER, tcpSeg(40000, 80, SYN)),
    ip4(SERVER, CLIENT, tcpSeg(80, 40000, SYN | ACK, { seq: 5000, ack: 1001 })),
    ip4(CLIENT, SERVER, tcpSeg(40000, 80, ACK, { seq: 1001, ack: 5001 })),
    ip6('2001:db8::1', '2001:db8::2', icmpMsg(128, 0, [0, 7, 0, 1], [], true)),
    ip4(SERVER, CLIENT, icmpMsg(3, 3, [0, 0, 0, 0], [...ip4(CLIENT, SERVER, udpDgram(1000, 53)).subarray(0, 28)])),
  ];
  let now = 1000;
  for (const b of packets) {
    const states: number[] = [];
    for (const ct of [plain, hooked]) {
      const p = ctxOf(b, now);
      t.is(ct.in(p), Verdict.ACCEPT);
      t.deepEqual(natAllHooks(ct, p), [1, 1, 1, 1, 1]);
      t.is(ct.confirm(p), Verdict.ACCEPT);
      states.push(p.ctState);
      // nat() gives a first packet the null binding (issue 8, alloc_null_binding): *_NAT_DONE set, nothing translated.
      if (p.ct !== null) t.is(p.ct.status & (ConnStatus.SRC_NAT | ConnStatus.DST_NAT), 0);
    }
    t.is(states[0], states[1]);
    now += 10;
  }
  t.deepEqual(rec.calls, []);
  t.is(hooked.list(now), plain.list(now));
  for (const e of hooked.entries(now)) {
    t.deepEqual([...e.repl.src], [...e.orig.dst]);
    t.deepEqual([...e.repl.dst], [...e.orig.src]);
  }
  t.is(hooked.insertFailed, 0);
});

test('SNAT binding on an unconfirmed entry re-keys the reply tuple: a reply to the translated address finds the flow', (t) => {
  const ct = new Conntrack();
  const p = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 1000);
  t.is(ct.setBinding(entryOf(p), NatManip.SRC, v4(PUBLIC), 2000, 1000), NatBind.OK);
  t.is(ct.confirm(p), Verdict.ACCEPT);
  const e = entryOf(p);
  t.is(e.status & (ConnStatus.SRC_NAT | ConnStatus.SRC_NAT_DONE | ConnStatus.DST_NAT | ConnStatus.DST_NAT_DONE), ConnStatus.SRC_NAT | ConnStatus.SRC_NAT_DONE);
  t.is(formatEntry(e, 1000), `udp      17 30 src=${CLIENT} dst=${SERVER} sport=1000 dport=80 [UNREPLIED] src=${SERVER} dst=${PUBLIC} sport=80 dport=2000 mark=0 use=1`);

  const reply = enter(ct, ip4(SERVER, PUBLIC, udpDgram(80, 2000)), 1010);
  t.is(reply.ct, e);
  t.is(reply.ctState, CtState.ESTABLISHED);
  t.true(reply.ctReply);
  // The untranslated reverse tuple is no longer the flow's.
  const stray = enter(ct, ip4(SERVER, CLIENT, udpDgram(80, 1000)), 1020);
  t.not(stray.ct, e);
  // The original direction still finds it by the untranslated tuple.
  const again = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 1030);
  t.is(again.ct, e);
  t.false(again.ctReply);
});

test('DNAT on IPv6 TCP: the SYN/ACK from the translated server answers the flow', (t) => {
  const ct = new Conntrack();
  const p = enter(ct, ip6('2001:db8::1', '2001:db8:f::80', tcpSeg(40000, 80, SYN)), 0);
  t.is(ct.setBinding(entryOf(p), NatManip.DST, parseIpv6('2001:db8:1::5'), 8080, 0), NatBind.OK);
  ct.confirm(p);
  const synack = enter(ct, ip6('2001:db8:1::5', '2001:db8::1', tcpSeg(8080, 40000, SYN | ACK, { seq: 5000, ack: 1001 })), 10);
  t.is(synack.ct, p.ct);
  t.is(synack.ctState, CtState.ESTABLISHED);
  t.true(synack.ctReply);
  t.is(entryOf(synack).tcpState, 2 /* SYN_RECV */);
  t.regex(formatEntry(entryOf(p), 10), / src=2001:db8:1::5 dst=2001:db8::1 sport=8080 dport=40000 /);
});

test('SNAT and DNAT on one flow, and the ICMP echo id as the SRC port', (t) => {
  const ct = new Conntrack();
  const p = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 0);
  t.is(ct.setBinding(entryOf(p), NatManip.DST, v4('10.9.9.9'), 8080, 0), NatBind.OK);
  t.is(ct.setBinding(entryOf(p), NatManip.SRC, v4(PUBLIC), 2000, 0), NatBind.OK);
  ct.confirm(p);
  t.is(enter(ct, ip4('10.9.9.9', PUBLIC, udpDgram(8080, 2000)), 1).ct, p.ct);

  const ping = enter(ct, ip4(CLIENT, SERVER, icmpMsg(8, 0, [0x12, 0x34, 0, 1])), 2);
  t.is(ct.setBinding(entryOf(ping), NatManip.SRC, v4(PUBLIC), 0x4321, 2), NatBind.OK);
  ct.confirm(ping);
  const pong = enter(ct, ip4(SERVER, PUBLIC, icmpMsg(0, 0, [0x43, 0x21, 0, 1])), 3);
  t.is(pong.ct, ping.ct);
  t.is(pong.ctState, CtState.ESTABLISHED);
  t.regex(formatEntry(entryOf(ping), 3), /src=198\.51\.100\.7 dst=192\.0\.2\.1 type=0 code=0 id=17185 /);
});

test('a candidate whose reply tuple is taken is reported as a clash and leaves the entry unchanged', (t) => {
  const ct = new Conntrack();
  // A flow that already owns PUBLIC:2000 <-> SERVER:80 (the router's own, say).
  const own = enter(ct, ip4(PUBLIC, SERVER, udpDgram(2000, 80)), 0);
  ct.confirm(own);
  // A translated flow that owns PUBLIC:3000.
  const first = enter(ct, ip4('10.0.0.3', SERVER, udpDgram(1000, 80)), 0);
  t.is(ct.setBinding(entryOf(first), NatManip.SRC, v4(PUBLIC), 3000, 0), NatBind.OK);
  ct.confirm(first);

  const p = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 1);
  const e = entryOf(p);
  const before = formatEntry(e, 1);
  t.is(ct.setBinding(e, NatManip.SRC, v4(PUBLIC), 2000, 1), NatBind.CLASH, 'taken by an untranslated flow');
  t.is(ct.setBinding(e, NatManip.SRC, v4(PUBLIC), 3000, 1), NatBind.CLASH, 'taken by a translated flow');
  t.is(formatEntry(e, 1), before);
  t.is(e.status & (ConnStatus.SRC_NAT | ConnStatus.SRC_NAT_DONE), 0);
  // The next port of the range is free.
  t.is(ct.setBinding(e, NatManip.SRC, v4(PUBLIC), 2001, 1), NatBind.OK);
  t.is(ct.confirm(p), Verdict.ACCEPT);
  t.is(ct.count(1), 3);
  // Once the owner expires the tuple is free again.
  const late = enter(ct, ip4('10.0.0.4', SERVER, udpDgram(1000, 80)), 40_000);
  ct.setBinding(entryOf(late), NatManip.SRC, v4(PUBLIC), 9, 40_000);
  const later = enter(ct, ip4('10.0.0.5', SERVER, udpDgram(1000, 80)), 40_000);
  t.is(ct.setBinding(entryOf(later), NatManip.SRC, v4(PUBLIC), 2000, 40_000), NatBind.OK);
});

test('two unconfirmed flows bound to the same tuple: the second is refused at confirm (insert_failed), not inserted', (t) => {
  const ct = new Conntrack();
  const a = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 0);
  const b = enter(ct, ip4('10.0.0.3', SERVER, udpDgram(1000, 80)), 0);
  t.is(ct.setBinding(entryOf(a), NatManip.SRC, v4(PUBLIC), 2000, 0), NatBind.OK);
  t.is(ct.setBinding(entryOf(b), NatManip.SRC, v4(PUBLIC), 2000, 0), NatBind.OK, 'neither is in the table yet');
  t.is(ct.confirm(a), Verdict.ACCEPT);
  t.is(ct.confirm(b), Verdict.DROP);
  t.is(b.ct, null);
  t.is(ct.insertFailed, 1);
  t.is(ct.count(0), 1);
  t.is(enter(ct, ip4(SERVER, PUBLIC, udpDgram(80, 2000)), 1).ct, a.ct);
});

test('bindings only on unconfirmed entries, once per manip; a null binding changes nothing but is done', (t) => {
  const ct = new Conntrack();
  const p = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 0);
  const e = entryOf(p);
  t.is(ct.setBinding(e, NatManip.SRC, v4(CLIENT), 1000, 0), NatBind.OK);
  t.is(e.status & (ConnStatus.SRC_NAT | ConnStatus.SRC_NAT_DONE), ConnStatus.SRC_NAT_DONE);
  t.is(ct.setBinding(e, NatManip.SRC, v4(PUBLIC), 2000, 0), NatBind.ALREADY);
  t.is(ct.setBinding(e, NatManip.DST, v4(SERVER), -1, 0), NatBind.OK);
  ct.confirm(p);
  t.is(ct.setBinding(e, NatManip.DST, v4('10.9.9.9'), 80, 0), NatBind.CONFIRMED);
  t.regex(formatEntry(e, 0), new RegExp(`src=${SERVER} dst=${CLIENT} sport=80 dport=1000 `));
  // A null-bound flow has nothing to translate.
  const rec = new RecordingNat();
  ct.setNatHook(rec);
  natAllHooks(ct, p);
  t.deepEqual(rec.calls, []);
});

test('nat() calls the hook per hook and direction exactly where nf_nat_packet rewrites', (t) => {
  const rows: { name: string; manip: NatManip; calls: [string, string[]][] }[] = [
    {
      name: 'SNAT: originals rewritten in INPUT/POSTROUTING (source), replies in PREROUTING/OUTPUT (destination)',
      manip: NatManip.SRC,
      calls: [
        ['orig', ['SRC orig hook=1 ->2000', 'SRC orig hook=4 ->2000']],
        ['reply', ['DST reply hook=0 ->1000', 'DST reply hook=3 ->1000']],
      ],
    },
    {
      name: 'DNAT: originals rewritten in PREROUTING/OUTPUT (destination), replies in INPUT/POSTROUTING (source)',
      manip: NatManip.DST,
      calls: [
        ['orig', ['DST orig hook=0 ->2000', 'DST orig hook=3 ->2000']],
        ['reply', ['SRC reply hook=1 ->80', 'SRC reply hook=4 ->80']],
      ],
    },
  ];
  for (const row of rows) {
    const ct = new Conntrack();
    const rec = new RecordingNat();
    ct.setNatHook(rec);
    const p = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 0);
    t.is(ct.setBinding(entryOf(p), row.manip, v4(PUBLIC), 2000, 0), NatBind.OK);
    ct.confirm(p);
    const replyBytes = row.manip === NatManip.SRC ? ip4(SERVER, PUBLIC, udpDgram(80, 2000)) : ip4(PUBLIC, CLIENT, udpDgram(2000, 1000));
    const orig = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 1);
    const reply = enter(ct, replyBytes, 2);
    for (const [dir, want] of row.calls) {
      rec.calls = [];
      natAllHooks(ct, dir === 'orig' ? orig : reply);
      t.deepEqual(rec.calls, want, `${row.name}: ${dir}`);
    }
  }
  // A hook's verdict is nat()'s.
  const ct = new Conntrack();
  ct.setNatHook({ translate: () => Verdict.DROP });
  const p = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 0);
  ct.setBinding(entryOf(p), NatManip.SRC, v4(PUBLIC), 2000, 0);
  p.hook = Hook.POSTROUTING;
  t.is(ct.nat(Hook.POSTROUTING, p), Verdict.DROP);
  t.is(ct.nat(Hook.PREROUTING, p), Verdict.ACCEPT);
});

test('an ICMP error about a translated flow is RELATED in the direction it travels', (t) => {
  const ct = new Conntrack();
  const p = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 0);
  ct.setBinding(entryOf(p), NatManip.SRC, v4(PUBLIC), 2000, 0);
  ct.confirm(p);
  // The server's port unreachable quotes the translated datagram it got.
  const quoted = ip4(PUBLIC, SERVER, udpDgram(2000, 80)).subarray(0, 28);
  const err = enter(ct, ip4(SERVER, PUBLIC, icmpMsg(3, 3, [0, 0, 0, 0], [...quoted])), 1);
  t.is(err.ctState, CtState.RELATED);
  t.is(err.ct, p.ct);
  t.true(err.ctReply);
});

test('isReply (conntrack --ctdir) is the lookup direction, also once NAT has rewritten the packet', (t) => {
  const ct = new Conntrack();
  const p = enter(ct, ip4(CLIENT, SERVER, udpDgram(1000, 80)), 0);
  ct.setBinding(entryOf(p), NatManip.SRC, v4(PUBLIC), 2000, 0);
  ct.confirm(p);
  // What the context says after POSTROUTING's rewrite: PUBLIC:2000 -> SERVER:80.
  p.src4 = parseIpv4(PUBLIC);
  p.sport = 2000;
  t.true(isReplyDir(entryOf(p), p), 'the wire alone would call it a reply');
  t.false(p.ct!.isReply(p));
  const reply = enter(ct, ip4(SERVER, PUBLIC, udpDgram(80, 2000)), 1);
  t.true(reply.ct!.isReply(reply));
});

test('a new flow confirmed after the reverse flow took its tuple joins that flow in its reply direction', (t) => {
  const ct = new Conntrack();
  // Both ends send their first datagram before either is confirmed (simultaneous UDP).
  const a = ctxOf(ip4(CLIENT, SERVER, udpDgram(5000, 5001)), 0);
  const b = ctxOf(ip4(SERVER, CLIENT, udpDgram(5001, 5000)), 0);
  ct.in(a);
  ct.in(b);
  t.is(ct.confirm(a), Verdict.ACCEPT);
  t.is(ct.confirm(b), Verdict.ACCEPT);
  t.is(b.ct, a.ct);
  t.true(b.ctReply);
  t.true(b.ct!.isReply(b));
  t.is(ct.count(0), 1);
});
