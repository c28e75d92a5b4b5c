/**
 * Cluster mode without a network (issue 15, docs/cluster.md): two gateways'
 * engines (module harnesses with real SharedState) each with a ClusterLink
 * that is never connected; records go from A's outbox to B's receive() by
 * hand. Covers each shared state's conflict rule, echo and other-cluster
 * refusal, the outbox bound and parking of records for undeclared keys.
 */
import test from 'ava';
import recent from '../modules/recent.js';
import quota2 from '../modules/quota2.js';
import pknock from '../modules/pknock.js';
import ACCOUNT, { accountCommand } from '../modules/ACCOUNT.js';
import DNETMAP from '../modules/DNETMAP.js';
import psd from '../modules/psd.js';
import type { NatService } from '../xt/nat.js';
import { Verdict } from '../xt/packet.js';
import { ipv4ToString } from '../dataplane/addr.js';
import { udpDgram } from './modules-fixtures.js';
import { createHmac } from 'node:crypto';
import { Hook } from '../xt/packet.js';
import { ClusterLink, keyPart, type ClusterRecord } from '../router/cluster/link.js';
import { validateClusterConfig, type ClusterConfig } from '../router/cluster/config.js';
import { XtHarness } from './helpers/xt-harness.js';
import { icmpMsg, ip4, tcpSeg } from './modules-fixtures.js';

function gateway(name: string, more: Record<string, unknown> = {}): { h: XtHarness; link: ClusterLink } {
  const h = new XtHarness();
  const cfg = validateClusterConfig({ name: 'lab', gateway: name, servers: ['nats://127.0.0.1:4222'], shared: ['recent', 'quota2', 'pknock'], ...more }) as ClusterConfig;
  const link = new ClusterLink(cfg, { now: () => h.services.now(), wallNow: () => h.services.wallNow() });
  h.state.setCluster(link);
  return { h, link };
}

/** Moves A's outbox into B (as the bucket's watch would), returning the records. */
function ship(a: ClusterLink, b: ClusterLink): ClusterRecord[] {
  a.collect();
  const out: ClusterRecord[] = [];
  for (const [, v] of a.outboxEntries()) {
    out.push(JSON.parse(Buffer.from(v).toString()) as ClusterRecord);
    b.receive(v);
  }
  return out;
}

const fwd = { hook: Hook.FORWARD, inIf: 'eth0', outIf: 'eth1' } as const;
const ping = (src: string) => ip4(src, '203.0.113.2', icmpMsg(8, 0));

test('recent: a --set on A appears on B with its stamp; B merges its own stamps; a removal on A removes on B', (t) => {
  const A = gateway('gwA');
  const B = gateway('gwB');
  const setA = A.h.match(recent, '--name BAN --set', { chain: 'FORWARD' });
  const checkB = B.h.match(recent, '--name BAN --rcheck --seconds 60', { chain: 'FORWARD' });
  const setB = B.h.match(recent, '--name BAN --set', { chain: 'FORWARD' });
  t.false(checkB.match(B.h.packet(ping('10.0.0.1'), fwd)));
  setA.match(A.h.packet(ping('10.0.0.1'), fwd));
  const recs = ship(A.link, B.link);
  t.is(recs.length, 1);
  t.like(recs[0], { c: 'lab', g: 'gwA', k: 'recent:BAN', i: '10.0.0.1' });
  t.true(checkB.match(B.h.packet(ping('10.0.0.1'), fwd)), 'B now matches the address A set');
  t.regex(B.h.readProc('net/xt_recent/BAN'), /^src=10\.0\.0\.1 ttl: \d+ last_seen: \d+ oldest_pkt: 1 \d+\n$/);
  // B sets it too 5 s later, then A's second stamp arrives: B keeps the union (3 stamps).
  B.h.advance(5000);
  A.h.advance(10_000);
  setB.match(B.h.packet(ping('10.0.0.1'), fwd));
  B.link.collect(); // B's own record (not shipped here)
  setA.match(A.h.packet(ping('10.0.0.1'), fwd));
  ship(A.link, B.link);
  t.regex(B.h.readProc('net/xt_recent/BAN'), /oldest_pkt: 3 \d+, \d+, \d+\n$/);
  // A record applied again (a redelivery) adds nothing.
  const again = A.link.outboxEntries();
  for (const [, v] of again) B.link.receive(v);
  t.regex(B.h.readProc('net/xt_recent/BAN'), /oldest_pkt: 3 \d+, \d+, \d+\n$/);
  // Removal through A's proc file.
  A.h.advance(1000);
  B.h.advance(1000);
  A.h.writeProc('net/xt_recent/BAN', '-10.0.0.1');
  const rm = ship(A.link, B.link);
  t.true(rm.some((r) => typeof (r.d as { rm?: number }).rm === 'number'));
  t.is(B.h.readProc('net/xt_recent/BAN'), '');
});

test('quota2: each gateway publishes its running total; B subtracts only the difference; a new epoch starts from 0', (t) => {
  const A = gateway('gwA');
  const B = gateway('gwB');
  const qa = A.h.match(quota2, '--name Q --quota 100 --packets', { chain: 'FORWARD' });
  B.h.match(quota2, '--name Q --quota 100 --packets', { chain: 'FORWARD' });
  for (let i = 0; i < 30; i++) qa.match(A.h.packet(ping('10.0.0.1'), fwd));
  const r1 = ship(A.link, B.link);
  t.is(r1.length, 1, 'thirty changes, one record (coalesced)');
  t.deepEqual((r1[0].d as { total: number }).total, 30);
  t.is(B.h.readProc('net/xt_quota/Q'), '70\n');
  for (let i = 0; i < 10; i++) qa.match(A.h.packet(ping('10.0.0.1'), fwd));
  const r2 = ship(A.link, B.link);
  t.is(B.h.readProc('net/xt_quota/Q'), '60\n');
  for (const r of [...r1, ...r2]) B.link.receive(Buffer.from(JSON.stringify(r)));
  t.is(B.h.readProc('net/xt_quota/Q'), '60\n', 'old and repeated records change nothing');
  // A restarted: a new epoch whose total starts again.
  B.link.receive(Buffer.from(JSON.stringify({ ...r2[0], d: { epoch: 'new', total: 5 } })));
  t.is(B.h.readProc('net/xt_quota/Q'), '55\n');
});

test('quota2 (bytes): the rest an exhaustion on A throws away counts as consumed, so B reaches 0 too', (t) => {
  const A = gateway('gwA');
  const B = gateway('gwB');
  const qa = A.h.match(quota2, '--name QB --quota 100', { chain: 'FORWARD' });
  B.h.match(quota2, '--name QB --quota 100', { chain: 'FORWARD' });
  // 28-byte echo requests: three fit (84), the fourth finds 16 and empties the counter.
  const passed = [1, 2, 3, 4].map(() => qa.match(A.h.packet(ping('10.0.0.1'), fwd)));
  t.deepEqual(passed, [true, true, true, false]);
  ship(A.link, B.link);
  t.is(A.h.readProc('net/xt_quota/QB'), '0\n');
  t.is(B.h.readProc('net/xt_quota/QB'), '0\n');
});

test('pknock: the last knock on A makes the peer ALLOWED on B; knock progress is not shared', (t) => {
  const A = gateway('gwA');
  const B = gateway('gwB');
  const rule = '--knockports 4002,4001 --time 5 --name KN';
  const ka = A.h.match(pknock, rule, { chain: 'FORWARD', proto: 'tcp' });
  B.h.match(pknock, rule, { chain: 'FORWARD', proto: 'tcp' });
  const knock = (port: number) => ka.match(A.h.packet(ip4('10.0.0.9', '203.0.113.2', tcpSeg(40000, port, 0x02)), fwd));
  knock(4002);
  t.is(ship(A.link, B.link).length, 0, 'a first knock is local');
  knock(4001);
  t.regex(A.h.readProc('net/xt_pknock/KN'), /status=ALLOWED/);
  ship(A.link, B.link);
  t.regex(B.h.readProc('net/xt_pknock/KN'), /^src=10\.0\.0\.9 proto=TCP status=ALLOWED/);
});

test('records of another cluster or of this gateway are not applied; malformed ones are counted', (t) => {
  const A = gateway('gwA');
  const B = gateway('gwB');
  const setA = A.h.match(recent, '--name BAN --set', { chain: 'FORWARD' });
  B.h.match(recent, '--name BAN --rcheck', { chain: 'FORWARD' });
  setA.match(A.h.packet(ping('10.0.0.1'), fwd));
  A.link.collect();
  const [[, bytes]] = A.link.outboxEntries();
  const rec = JSON.parse(Buffer.from(bytes).toString()) as ClusterRecord;
  B.link.receive(Buffer.from(JSON.stringify({ ...rec, c: 'other' })));
  B.link.receive(Buffer.from(JSON.stringify({ ...rec, g: 'gwB' })));
  B.link.receive(Buffer.from('not json'));
  B.link.receive(Buffer.from(JSON.stringify({ ...rec, i: 'not-an-address' })));
  t.is(B.h.readProc('net/xt_recent/BAN'), '');
  const st = B.link.status();
  t.is(st.refused, 1);
  t.is(st.malformed, 2);
  t.is(st.applied, 0);
});

test('outbox bound: a change of an item not yet queued is dropped and counted; a queued one is replaced', (t) => {
  const A = gateway('gwA', { outboxMax: 2 });
  const setA = A.h.match(recent, '--name BAN --set', { chain: 'FORWARD' });
  for (const src of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) setA.match(A.h.packet(ping(src), fwd));
  t.is(A.link.status().dropped, 1, 'the dirty set holds 2 items');
  A.link.collect();
  t.is(A.link.outboxEntries().length, 2);
  setA.match(A.h.packet(ping('10.0.0.1'), fwd));
  A.link.collect();
  t.is(A.link.outboxEntries().length, 2, 'a queued key is replaced, not added');
  t.is(A.link.status().dropped, 1);
  setA.match(A.h.packet(ping('10.0.0.4'), fwd));
  A.link.collect();
  t.is(A.link.status().dropped, 2);
  t.deepEqual(A.link.outboxEntries().map(([k]) => k).sort(), [`${keyPart('recent:BAN')}.${keyPart('10.0.0.1')}`, `${keyPart('recent:BAN')}.${keyPart('10.0.0.2')}`]);
});

test('records for a state no rule declared yet wait and are applied when a rule declares it', (t) => {
  const A = gateway('gwA');
  const B = gateway('gwB');
  const setA = A.h.match(recent, '--name LATE --set', { chain: 'FORWARD' });
  setA.match(A.h.packet(ping('10.0.0.7'), fwd));
  ship(A.link, B.link);
  t.is(B.link.status().parked, 1);
  B.h.match(recent, '--name LATE --rcheck', { chain: 'FORWARD' });
  t.regex(B.h.readProc('net/xt_recent/LATE'), /^src=10\.0\.0\.7 /);
  t.is(B.link.status().parked, 0);
});

test('cluster config: refused values name the key', (t) => {
  const bad: [unknown, RegExp][] = [
    [{ servers: ['nats://a:1'] }, /^cluster\.name: required/],
    [{ name: 'a b', servers: ['nats://a:1'] }, /^cluster\.name/],
    [{ name: 'x', servers: [] }, /^cluster\.servers/],
    [{ name: 'x', servers: ['http://a'] }, /^cluster\.servers: "http:\/\/a" is not nats/],
    [{ name: 'x', servers: ['nats://a:1'], shared: ['nope'] }, /^cluster\.shared: "nope"/],
    [{ name: 'x', servers: ['nats://a:1'], credentials: { user: 'u' } }, /^cluster\.credentials: exactly one/],
    [{ name: 'x', servers: ['nats://a:1'], flushMs: 0 }, /^cluster\.flushMs/],
    [{ name: 'x', servers: ['nats://a:1'], extra: 1 }, /^cluster\.extra: unknown key/],
  ];
  for (const [doc, re] of bad) t.throws(() => validateClusterConfig(doc), { message: re }, JSON.stringify(doc));
  t.is(validateClusterConfig(undefined), null);
  t.like(validateClusterConfig({ name: 'x', gateway: 'g', servers: ['nats://a:1'] }), { shared: ['recent', 'quota2'], flushMs: 20, outboxMax: 10000 });
});

test('recent: a busy address is re-exported at most once a second, and its last stamps still go out', (t) => {
  const A = gateway('gwA');
  const B = gateway('gwB');
  const setA = A.h.match(recent, '--name BAN --set', { chain: 'FORWARD' });
  B.h.match(recent, '--name BAN --rcheck', { chain: 'FORWARD' });
  setA.match(A.h.packet(ping('10.0.0.1'), fwd));
  t.is(ship(A.link, B.link).length, 1, 'a new address goes at the next flush');
  A.h.advance(100);
  setA.match(A.h.packet(ping('10.0.0.1'), fwd));
  A.link.collect();
  t.is(A.link.status().dirty, 1, 'a second change within the second waits (still dirty)');
  A.h.advance(1000);
  A.link.collect();
  t.is(A.link.status().dirty, 0);
  const [[, v]] = A.link.outboxEntries();
  B.link.receive(v);
  t.regex(B.h.readProc('net/xt_recent/BAN'), /oldest_pkt: 2 \d+, \d+\n$/);
});

test('ACCOUNT: each gateway shares its running totals; read-fleet sums them, read-flush stays local', (t) => {
  const A = gateway('gwA', { shared: ['account'] });
  const B = gateway('gwB', { shared: ['account'] });
  const ta = A.h.target(ACCOUNT, '--addr 10.0.0.0/24 --tname NET', { chain: 'FORWARD' });
  const tb = B.h.target(ACCOUNT, '--addr 10.0.0.0/24 --tname NET', { chain: 'FORWARD' });
  for (let i = 0; i < 3; i++) ta.target(A.h.packet(ping('10.0.0.1'), fwd));
  tb.target(B.h.packet(ping('10.0.0.1'), fwd));
  tb.target(B.h.packet(ping('10.0.0.2'), fwd));
  ship(A.link, B.link);
  const fleet = (h: XtHarness) => accountCommand.run(['read-fleet', 'NET'], h.state);
  t.is(fleet(B.h), '10.0.0.1 4 112 0 0\n10.0.0.2 1 28 0 0\n');
  t.is(accountCommand.run(['read', 'NET'], B.h.state), '10.0.0.1 1 28 0 0\n10.0.0.2 1 28 0 0\n', 'the local table is B\'s own');
  // A read-flush on A empties A's table, not its totals: the fleet view on B is unchanged.
  accountCommand.run(['read-flush', 'NET'], A.h.state);
  ta.target(A.h.packet(ping('10.0.0.1'), fwd));
  A.h.advance(1000);
  ship(A.link, B.link);
  t.is(fleet(B.h), '10.0.0.1 5 140 0 0\n10.0.0.2 1 28 0 0\n');
});

// ---- DNETMAP bindings (docs/cluster.md "DNETMAP")

/** A gateway sharing dnetmap with SNAT (POSTROUTING) and DNAT (PREROUTING) rules on 20.0.0.0/30; NAT calls recorded as "side>addr". */
function dnGateway(name: string) {
  const g = gateway(name, { shared: ['dnetmap'] });
  const nat: string[] = [];
  const service: NatService = {
    setup(_pkt, side, range) {
      nat.push(`${side}>${ipv4ToString(range.minAddr[0])}`);
      return Verdict.ACCEPT;
    },
  };
  Object.assign(g.h.services, { nat: service });
  const snat = g.h.target(DNETMAP, '--prefix 20.0.0.0/30 --ttl 60', { table: 'nat', chain: 'POSTROUTING' });
  const dnat = g.h.target(DNETMAP, '--prefix 20.0.0.0/30 --ttl 60', { table: 'nat', chain: 'PREROUTING' });
  const out = (src: string) => snat.target(g.h.packet(ip4(src, '192.0.2.1', udpDgram(1000, 53)), { hook: Hook.POSTROUTING }));
  const inb = (dst: string) => dnat.target(g.h.packet(ip4('192.0.2.1', dst, udpDgram(53, 1000)), { hook: Hook.PREROUTING }));
  const bound = () => g.h.readProc('net/xt_DNETMAP/20.0.0.0_30').split('\n').filter((l) => l !== '' && !l.startsWith('0.0.0.0')).map((l) => l.split(' --- ')[0]);
  return { ...g, nat, out, inb, bound };
}

const SRC = 0;
const DST = 1;

test('DNETMAP: a binding made on A is used on B both ways (DNAT back, SNAT of the same host); its refreshed expiry travels at most once a second', (t) => {
  const A = dnGateway('gwA');
  const B = dnGateway('gwB');
  A.out('10.0.0.1');
  t.deepEqual(A.nat, [`${SRC}>20.0.0.0`]);
  const recs = ship(A.link, B.link);
  t.is(recs.length, 1);
  t.like(recs[0], { k: 'DNETMAP:20.0.0.0_30', i: '20.0.0.0', d: { pre: '10.0.0.1', by: 'gwA' } });
  t.is((recs[0].d as { until: number }).until - (recs[0].d as { since: number }).since, 60_000);
  t.deepEqual(B.bound(), ['10.0.0.1 -> 20.0.0.0']);
  B.inb('20.0.0.0');
  B.out('10.0.0.1');
  t.deepEqual(B.nat, [`${DST}>10.0.0.1`, `${SRC}>20.0.0.0`], 'B DNATs the public address back and SNATs the host to the same one');
  t.is(B.link.outboxEntries().length, 0);
  B.link.collect();
  t.is(B.link.outboxEntries().length, 1, "B's refresh of A's binding is shared (by: gwA kept)");
  t.like(JSON.parse(Buffer.from(B.link.outboxEntries()[0][1]).toString()), { d: { pre: '10.0.0.1', by: 'gwA' } });
  // A refresh within the second waits; after it the later expiry goes out and B keeps the later one.
  A.h.advance(200);
  B.h.advance(200);
  const queued = A.link.outboxEntries()[0][1];
  A.out('10.0.0.1');
  A.link.collect();
  t.is(A.link.outboxEntries()[0][1], queued, 'the first record is still the one queued');
  t.is(A.link.status().dirty, 1);
  A.h.advance(30_000);
  B.h.advance(30_000);
  const later = ship(A.link, B.link);
  t.is(later.length, 1);
  t.regex(B.h.readProc('net/xt_DNETMAP/20.0.0.0_30'), /^10\.0\.0\.1 -> 20\.0\.0\.0 --- ttl: 30 /m, "A's refresh at 0.2 s (expiry 60.2 s) is later than B's own at 0 s (that one would show ttl: 29)");
  // Its expiry passed on both: an expired record changes nothing.
  A.h.advance(60_000);
  B.h.advance(60_000);
  for (const r of later) B.link.receive(Buffer.from(JSON.stringify(r)));
  B.nat.length = 0;
  B.inb('20.0.0.0');
  t.deepEqual(B.nat, [], 'expired: PREROUTING no longer DNATs');
});

test('DNETMAP conflict: two hosts bound to the same public address on two gateways: the earlier binding wins on both, the later one is unbound', (t) => {
  const A = dnGateway('gwA');
  const B = dnGateway('gwB');
  A.out('10.0.0.1'); // t=0 on A: 10.0.0.1 -> 20.0.0.0
  A.link.collect();
  A.h.advance(5000);
  B.h.advance(5000);
  B.out('10.0.0.2'); // t=5 s on B, before A's record: 10.0.0.2 -> 20.0.0.0
  B.link.collect();
  const fromB = B.link.outboxEntries().map(([, v]) => v);
  for (const [, v] of A.link.outboxEntries()) B.link.receive(v);
  for (const v of fromB) A.link.receive(v);
  t.deepEqual(A.bound(), ['10.0.0.1 -> 20.0.0.0'], 'A keeps its own earlier binding');
  t.deepEqual(B.bound(), ['10.0.0.1 -> 20.0.0.0'], "B's later binding yields");
  t.true(B.h.services.logged.some((l) => /cluster: binding 10\.0\.0\.2 -> 20\.0\.0\.0 yields to 10\.0\.0\.1 -> 20\.0\.0\.0 of gwA/.test(l.line)));
  t.is(A.link.status().applied + B.link.status().applied, 2);
  // The loser's host gets a new address at its next packet on B, which A learns.
  B.nat.length = 0;
  B.out('10.0.0.2');
  t.deepEqual(B.nat, [`${SRC}>20.0.0.1`]);
  ship(B.link, A.link);
  t.deepEqual(A.bound(), ['10.0.0.1 -> 20.0.0.0', '10.0.0.2 -> 20.0.0.1']);
});

test('DNETMAP conflict: bindings made in the same ms: the lower gateway id wins on both; one host on two addresses: the earlier wins', (t) => {
  const A = dnGateway('gwA');
  const B = dnGateway('gwB');
  B.out('10.0.0.2');
  A.out('10.0.0.1');
  B.link.collect();
  A.link.collect();
  const fromB = B.link.outboxEntries().map(([, v]) => v);
  for (const [, v] of A.link.outboxEntries()) B.link.receive(v);
  for (const v of fromB) A.link.receive(v);
  t.deepEqual(A.bound(), ['10.0.0.1 -> 20.0.0.0']);
  t.deepEqual(B.bound(), ['10.0.0.1 -> 20.0.0.0']);
  // Same host, different addresses: A binds 10.0.0.3 first (20.0.0.1), B later to its LRU head.
  const C = dnGateway('gwC');
  const D = dnGateway('gwD');
  D.out('10.0.0.9'); // D's 20.0.0.0 taken by another host, so 10.0.0.3 lands on 20.0.0.1 there
  C.out('10.0.0.3'); // C: 10.0.0.3 -> 20.0.0.0 at t=0
  C.h.advance(1000);
  D.h.advance(1000);
  D.out('10.0.0.3'); // D: 10.0.0.3 -> 20.0.0.1 at t=1 s
  t.deepEqual(D.bound(), ['10.0.0.9 -> 20.0.0.0', '10.0.0.3 -> 20.0.0.1']);
  ship(C.link, D.link);
  // C's record claims 20.0.0.0 (held by 10.0.0.9 since t=0 on D, gwD > gwC: C's wins the tie) and 10.0.0.3 (D's later binding loses).
  t.deepEqual(D.bound(), ['10.0.0.3 -> 20.0.0.0']);
});

test('DNETMAP: static bindings stay local and win; malformed records are counted', (t) => {
  const A = dnGateway('gwA');
  const B = dnGateway('gwB');
  B.h.writeProc('net/xt_DNETMAP/20.0.0.0_30', '+10.0.0.7:20.0.0.0');
  B.link.collect();
  t.is(B.link.outboxEntries().length, 0, 'a static binding is not shared');
  A.out('10.0.0.1');
  ship(A.link, B.link);
  t.deepEqual(B.bound(), ['10.0.0.7 -> 20.0.0.0']);
  A.link.collect();
  const rec = JSON.parse(Buffer.from(A.link.outboxEntries()[0]?.[1] ?? Buffer.from('null')).toString()) as ClusterRecord | null;
  const base: ClusterRecord = rec ?? { c: 'lab', g: 'gwA', k: 'DNETMAP:20.0.0.0_30', i: '20.0.0.1', t: 0, d: {} };
  const before = B.link.status().malformed;
  for (const [i, d] of [
    ['20.0.0.9', { pre: '10.0.0.1', since: 0, until: 1e15, by: 'gwA' }],
    ['20.0.0.1', { pre: '20.0.0.2', since: 0, until: 1e15, by: 'gwA' }],
    ['20.0.0.1', { pre: 'x', since: 0, until: 1e15, by: 'gwA' }],
    ['20.0.0.1', { pre: '10.0.0.1', until: 1e15, by: 'gwA' }],
  ] as const) B.link.receive(Buffer.from(JSON.stringify({ ...base, k: 'DNETMAP:20.0.0.0_30', i, d })));
  t.is(B.link.status().malformed - before, 4);
  t.deepEqual(B.bound(), ['10.0.0.7 -> 20.0.0.0']);
});

// ---- pknock SPA replay cache (docs/cluster.md "pknock")

/** An SPA payload (facts sheet: HMAC-SHA256 over the address and the LE minute, hex, newline). */
function spaPayload(secret: string, src: string, minute: number): number[] {
  const m = Buffer.alloc(4);
  m.writeUInt32LE(minute);
  const hex = createHmac('sha256', Buffer.from(secret)).update(Buffer.concat([Buffer.from(src.split('.').map(Number)), m])).digest('hex');
  return [...Buffer.from(hex + '\n', 'ascii')];
}

function spaGateway(name: string) {
  const g = gateway(name);
  const udp = { table: 'filter', chain: 'INPUT', proto: 'udp' } as const;
  const knock = g.h.match(pknock, '--knockports 2000 --opensecret s3cret --closesecret cl0se --autoclose 60 --name SPA', udp);
  const check = g.h.match(pknock, '--checkip --name SPA', { table: 'filter', chain: 'INPUT', proto: 'tcp' });
  g.h.activateAll();
  const send = (src: string, payload: number[]) => knock.match(g.h.packet(ip4(src, '192.0.2.1', udpDgram(5000, 2000, payload))));
  const allowed = (src: string) => check.match(g.h.packet(ip4(src, '192.0.2.1', tcpSeg(1, 22, 0x02))));
  const minute = () => Math.floor(g.h.services.wallNow() / 60000);
  return { ...g, send, allowed, minute };
}

test('pknock SPA: a payload accepted on A (open, then close) is refused as a replay on B; the caches are a union, expired records ignored', (t) => {
  const A = spaGateway('gwA');
  const B = spaGateway('gwB');
  A.h.advance(10 * 60_000);
  B.h.advance(10 * 60_000);
  const m = A.minute();
  const open = spaPayload('s3cret', '10.0.0.2', m);
  A.send('10.0.0.2', open);
  t.true(A.allowed('10.0.0.2'));
  A.send('10.0.0.2', spaPayload('cl0se', '10.0.0.2', m));
  t.false(A.allowed('10.0.0.2'));
  const recs = ship(A.link, B.link);
  const spa = recs.filter((r) => r.i.startsWith('spa:'));
  t.is(spa.length, 2, 'one replay record per accepted payload (open and close)');
  t.deepEqual(spa[0].d, { replay: m });
  t.is(spa[0].i, `spa:${Buffer.from(open.slice(0, 64)).toString('ascii')}`);
  t.false(B.allowed('10.0.0.2'), 'the close reached B as well');
  // The captured open packet sent to B in the same minute: B has no peer for it (no rate limit); the shared cache refuses it.
  B.send('10.0.0.2', open);
  t.false(B.allowed('10.0.0.2'));
  t.like(B.h.services.events.at(-1), { kind: 'pknock.refused', fields: { reason: 'replay' } });
  // B's own accepted payload goes to A: a union, not a replacement.
  const other = spaPayload('s3cret', '10.0.0.3', m);
  B.send('10.0.0.3', other);
  t.true(B.allowed('10.0.0.3'));
  B.send('10.0.0.3', spaPayload('cl0se', '10.0.0.3', m));
  ship(B.link, A.link);
  t.false(A.allowed('10.0.0.3'), 'opened and closed on B');
  A.send('10.0.0.3', other);
  t.like(A.h.services.events.at(-1), { kind: 'pknock.refused', fields: { reason: 'replay' } });
  const cache = (h: XtHarness) => /replay_cache (\d+)/.exec(pknock.commands![0].run(['SPA'], h.state))?.[1];
  t.is(cache(A.h), '4', "A's two payloads and B's two");
  t.is(cache(B.h), '4');
  // Expired or malformed records: nothing, or counted.
  const C = spaGateway('gwC');
  C.h.advance(20 * 60_000);
  const before = C.link.status().malformed;
  for (const r of spa) C.link.receive(Buffer.from(JSON.stringify(r)));
  C.send('10.0.0.2', spaPayload('s3cret', '10.0.0.2', C.minute()));
  t.true(C.allowed('10.0.0.2'), 'a record of minute m is expired at m+10 and held nothing');
  C.link.receive(Buffer.from(JSON.stringify({ ...spa[0], i: 'spa:not hex!' })));
  C.link.receive(Buffer.from(JSON.stringify({ ...spa[0], d: { replay: 'x' } })));
  t.is(C.link.status().malformed - before, 2);
});

// ---- psd "flagged source" verdicts (opt-in; docs/cluster.md "psd")

function psdGateway(name: string, shared: string[] = ['psd']) {
  const g = gateway(name, { shared });
  const rule = g.h.match(psd, '', { table: 'filter', chain: 'INPUT', proto: 'tcp' });
  const syn = (src: string, port: number) => rule.match(g.h.packet(ip4(src, '203.0.113.2', tcpSeg(40000, port, 0x02))));
  return { ...g, syn };
}

test('psd (opt-in): a source flagged on A matches on B at its first new port, until the delay threshold passes; re-shared at most once a second', (t) => {
  const A = psdGateway('gwA');
  const B = psdGateway('gwB');
  // Defaults: threshold 21, privileged ports weigh 3: the 7th new port matches.
  const verdicts = [1, 2, 3, 4, 5, 6, 7].map((port) => A.syn('198.51.100.7', port));
  t.deepEqual(verdicts, [false, false, false, false, false, false, true]);
  const recs = ship(A.link, B.link);
  t.is(recs.length, 1);
  t.like(recs[0], { k: 'psd:ipv4', i: '198.51.100.7', d: { weight: 21 } });
  t.true(B.syn('198.51.100.7', 80), 'flagged on B at its first packet there');
  t.false(B.syn('198.51.100.8', 80), 'another source is not');
  t.regex(B.h.readProc('net/xt_psd/ipv4'), /^198\.51\.100\.7 weight=21 ports=0 /m);
  // A keeps matching: one record per second at most (the queued record is not replaced).
  const first = A.link.outboxEntries()[0][1];
  A.h.advance(100);
  B.h.advance(100);
  t.true(A.syn('198.51.100.7', 8));
  A.link.collect();
  t.is(A.link.outboxEntries()[0][1], first);
  A.h.advance(1000);
  B.h.advance(1000);
  t.true(A.syn('198.51.100.7', 9));
  const again = ship(A.link, B.link);
  t.not(A.link.outboxEntries()[0][1], first);
  t.like(again[0], { d: { weight: 21, flagged: (recs[0].d as { flagged: number }).flagged + 1100 } });
  // The delay threshold (3 s) counts from A's last flag (1.1 s), then from B's own matching packet; past it the entry is stale.
  B.h.advance(2999);
  t.true(B.syn('198.51.100.7', 82), 'within the delay threshold of the last shared flag');
  B.h.advance(3001);
  t.false(B.syn('198.51.100.7', 81), 'stale: a new source again');
  // Malformed records are counted.
  const before = B.link.status().malformed;
  B.link.receive(Buffer.from(JSON.stringify({ ...recs[0], i: 'nope' })));
  B.link.receive(Buffer.from(JSON.stringify({ ...recs[0], d: { flagged: 1, weight: -1 } })));
  t.is(B.link.status().malformed - before, 2);
});

test('psd is not shared unless cluster.shared names it', (t) => {
  const A = psdGateway('gwA', ['recent', 'quota2']);
  for (const port of [1, 2, 3, 4, 5, 6, 7]) A.syn('198.51.100.7', port);
  A.link.collect();
  t.is(A.link.outboxEntries().length, 0);
});
