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
