/**
 * The conntrack side of nf_ct_attach: a packet the router built as the
 * answer to another (REJECT's RST or ICMP error, the router's own ICMP
 * errors) reaches conntrack's in() already carrying the answered packet's
 * entry, RELATED, in the opposite direction. It keeps all three, is not
 * looked up or tracked, and never confirms the flow; UNTRACKED stays
 * untracked. (The emitting side is router/forward.ts's; these drive
 * conntrack directly.)
 */
import test from 'ava';
import { CtState, Hook, Verdict, type PacketContext } from '../xt/packet.js';
import { ConnStatus } from '../xt/conn.js';
import { Conntrack, ConnEntry, NatBind, NatManip, TcpCt } from '../router/conntrack.js';
import { parseIpv4 } from '../dataplane/addr.js';
import { ctxOf, icmpMsg, ip4, tcpSeg, udpDgram } from './modules-fixtures.js';

const SYN = 0x02, ACK = 0x10, RST = 0x04;
const A = '10.0.0.1';
const B = '10.0.0.2';
const entryOf = (p: PacketContext) => p.ct as ConnEntry;

/** One packet through conntrack as the pipeline runs it: in, then confirm if accepted. */
function pass(ct: Conntrack, p: PacketContext): PacketContext {
  if (ct.in(p) === Verdict.ACCEPT) ct.confirm(p);
  return p;
}
/** What the router's emit with ctFrom gives the answer's context (nf_ct_attach). */
function attached(bytes: Buffer, from: PacketContext, now: number): PacketContext {
  const p = ctxOf(bytes, now);
  p.ct = from.ct;
  p.ctState = CtState.RELATED;
  p.ctReply = !from.ctReply;
  p.ctAttached = true;
  return p;
}

test('REJECT answering a NEW SYN: the RST keeps the unconfirmed entry, RELATED reply, and confirms nothing', (t) => {
  const ct = new Conntrack();
  const syn = ctxOf(ip4(A, B, tcpSeg(40000, 22, SYN)), 0);
  t.is(ct.in(syn), Verdict.ACCEPT);
  t.is(syn.ctState, CtState.NEW);
  // The rules reject the SYN (it is dropped, never confirmed); the RST goes out through OUTPUT/POSTROUTING.
  const rst = attached(ip4(B, A, tcpSeg(22, 40000, RST | ACK, { seq: 0, ack: 1001 })), syn, 1);
  pass(ct, rst);
  t.is(rst.ct, syn.ct);
  t.is(rst.ctState, CtState.RELATED);
  t.true(rst.ctReply);
  t.is(rst.ct!.status & ConnStatus.CONFIRMED, 0, 'the RST does not confirm the flow it answers');
  t.is(ct.count(1), 0, 'nothing entered the table');
  t.is(entryOf(rst).tcpState, TcpCt.SYN_SENT, 'the RST was not run through the TCP tracker');
});

test('an attached RST on an established flow leaves the flow ESTABLISHED (not tracked, not looked up)', (t) => {
  const ct = new Conntrack();
  pass(ct, ctxOf(ip4(A, B, tcpSeg(40000, 22, SYN)), 0));
  pass(ct, ctxOf(ip4(B, A, tcpSeg(22, 40000, SYN | ACK, { seq: 5000, ack: 1001 })), 1));
  const ack = pass(ct, ctxOf(ip4(A, B, tcpSeg(40000, 22, ACK, { seq: 1001, ack: 5001 })), 2));
  const e = entryOf(ack);
  t.is(e.tcpState, TcpCt.ESTABLISHED);
  const expires = e.expires;
  const rst = attached(ip4(B, A, tcpSeg(22, 40000, RST | ACK, { seq: 5001, ack: 1001 })), ack, 3);
  pass(ct, rst);
  t.is(rst.ct, e);
  t.is(rst.ctState, CtState.RELATED);
  t.true(rst.ctReply);
  t.is(e.tcpState, TcpCt.ESTABLISHED);
  t.is(e.expires, expires);
  // The same RST not attached is tracked: it closes the flow.
  pass(ct, ctxOf(ip4(B, A, tcpSeg(22, 40000, RST | ACK, { seq: 5001, ack: 1001 })), 4));
  t.is(e.tcpState, TcpCt.CLOSE);
});

test('an ICMP error the router builds keeps the attached flow even when its quote would not find it', (t) => {
  const ct = new Conntrack();
  const dgram = pass(ct, ctxOf(ip4(A, B, udpDgram(1000, 53)), 0));
  // A quote cut to the IP header alone: looked up, this error would be INVALID.
  const quote = [...ip4(A, B, udpDgram(1000, 53)).subarray(0, 20)];
  const lookedUp = pass(ct, ctxOf(ip4(B, A, icmpMsg(3, 3, [0, 0, 0, 0], quote)), 1));
  t.is(lookedUp.ctState, CtState.INVALID);
  const err = attached(ip4(B, A, icmpMsg(3, 3, [0, 0, 0, 0], quote)), dgram, 1);
  pass(ct, err);
  t.is(err.ct, dgram.ct);
  t.is(err.ctState, CtState.RELATED);
  t.true(err.ctReply);
});

test('an answer to a reply-direction packet travels the original way (IP_CT_RELATED)', (t) => {
  const ct = new Conntrack();
  pass(ct, ctxOf(ip4(A, B, udpDgram(1000, 53)), 0));
  const reply = pass(ct, ctxOf(ip4(B, A, udpDgram(53, 1000)), 1));
  t.true(reply.ctReply);
  const err = attached(ip4(A, B, icmpMsg(3, 3, [0, 0, 0, 0], [...ip4(B, A, udpDgram(53, 1000)).subarray(0, 28)])), reply, 2);
  pass(ct, err);
  t.is(err.ct, reply.ct);
  t.false(err.ctReply);
  t.is(err.ctState, CtState.RELATED);
});

test('attached without an entry (the answered packet had none) is tracked like any packet', (t) => {
  const ct = new Conntrack();
  const p = ctxOf(ip4(B, A, tcpSeg(22, 40000, RST | ACK, { seq: 0, ack: 1001 })), 0);
  p.ct = null;
  p.ctState = CtState.RELATED;
  p.ctAttached = true;
  pass(ct, p);
  t.is(p.ct, null);
  t.is(p.ctState as CtState, CtState.INVALID, 'a RST opens nothing');
  const q = ctxOf(ip4(A, B, udpDgram(1000, 53)), 0);
  q.ctAttached = true;
  pass(ct, q);
  t.is(q.ctState, CtState.NEW);
  t.is(ct.count(0), 1);
});

test('UNTRACKED stays untracked; a packet seen again without being attached is looked up again', (t) => {
  const ct = new Conntrack();
  const u = ctxOf(ip4(A, B, udpDgram(1000, 53)), 0);
  u.notrack = true;
  pass(ct, u);
  t.is(u.ct, null);
  t.is(u.ctState, CtState.UNTRACKED);
  t.is(ct.count(0), 0);
  // Emitted untracked as the answer to an untracked packet: nothing to attach, still untracked.
  const v = ctxOf(ip4(B, A, udpDgram(53, 1000)), 0);
  v.notrack = true;
  v.ctAttached = true;
  pass(ct, v);
  t.is(v.ctState, CtState.UNTRACKED);
  // Not attached: a second traversal (a looped-back packet) is looked up afresh.
  const p = pass(ct, ctxOf(ip4(A, B, udpDgram(2000, 53)), 1));
  const first = p.ct;
  p.ctState = CtState.INVALID;
  pass(ct, p);
  t.is(p.ct, first);
  t.is(p.ctState as CtState, CtState.NEW);
});

test('an attached answer of a translated flow meets the NAT hook by its own direction', (t) => {
  const ct = new Conntrack();
  const calls: string[] = [];
  ct.setNatHook({
    translate: (_p, _e, manip, reply) => {
      calls.push(`${manip === NatManip.SRC ? 'SRC' : 'DST'} ${reply ? 'reply' : 'orig'}`);
      return Verdict.ACCEPT;
    },
  });
  const first = ctxOf(ip4(A, B, udpDgram(1000, 53)), 0);
  ct.in(first);
  t.is(ct.setBinding(entryOf(first), NatManip.SRC, Uint32Array.of(parseIpv4('192.0.2.1'), 0, 0, 0), 2000, 0), NatBind.OK);
  ct.confirm(first);
  const err = attached(ip4('192.0.2.254', A, icmpMsg(3, 3, [0, 0, 0, 0], [])), first, 1);
  pass(ct, err);
  for (const h of [Hook.OUTPUT, Hook.POSTROUTING]) {
    err.hook = h;
    ct.nat(h, err);
  }
  t.deepEqual(calls, ['DST reply'], 'a reply-direction packet of an SNATed flow: destination rewritten in OUTPUT');
});
