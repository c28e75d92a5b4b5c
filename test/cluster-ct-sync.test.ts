/**
 * Conntrack failover without a network (issue 15 item 3): table.ts
 * exportEntry/importEntry and router/cluster/ct-sync.ts over a stand-in for
 * the cluster link (the records it would publish are handed to the other
 * gateway's apply directly). The lab test with NATS, two gateways and a
 * killed one is test/integration-cluster-failover.test.ts.
 */
import test from 'ava';
import { CtState, Verdict, type PacketContext } from '../xt/packet.js';
import type { SharedSink, StateShared } from '../xt/state.js';
import { Conntrack, TCP_STATE_NAMES } from '../router/conntrack.js';
import { ConntrackSync } from '../router/cluster/ct-sync.js';
import type { ClusterLink } from '../router/cluster/link.js';
import { ctxOf, ip4, tcpSeg } from './modules-fixtures.js';

const C = '198.51.100.2';
const S = '203.0.113.2';

function seg(from: 'c' | 's', flags: number, seq: number, ack: number, len = 0): Buffer {
  const [src, dst, sp, dp] = from === 'c' ? [C, S, 40000, 80] : [S, C, 80, 40000];
  return ip4(src, dst, tcpSeg(sp, dp, flags, { seq: seq >>> 0, ack: ack >>> 0, win: 8192, payload: new Array(len).fill(0x78) }));
}

function pass(ct: Conntrack, bytes: Buffer, now: number): PacketContext {
  const p = ctxOf(bytes, now);
  if (ct.in(p) === Verdict.ACCEPT && p.ctState !== CtState.INVALID) ct.confirm(p);
  return p;
}

/** A gateway: its table, its sync, and what its link would have published (id -> latest data). */
function gateway(name: string) {
  const ct = new Conntrack({ max: 64 });
  let wall = 1_000_000;
  const clock = { now: () => 0, wallNow: () => wall };
  const sync = new ConntrackSync(ct, clock);
  const dirty = new Set<number>();
  const out = new Map<string, unknown>();
  let shared: StateShared<unknown, number> | null = null;
  const link = {
    config: { shared: ['conntrack'] },
    attach(_k: string, spec: { shared: StateShared<unknown, number> }, value: unknown) {
      shared = spec.shared;
      const sink: SharedSink<number> = { changed: (i) => dirty.add(i), record: (id, d) => out.set(id, d) };
      shared.attach(value, sink);
    },
  } as unknown as ClusterLink;
  sync.start(link);
  return {
    name,
    ct,
    sync,
    setWall: (w: number) => (wall = w),
    /** The link's flush: dirty slots -> records. */
    flush() {
      for (const s of dirty) {
        const r = shared!.export(sync, s, clock);
        if (r) out.set(r.id, r.data);
      }
      dirty.clear();
    },
    out,
    /** The peer's records arriving (the link's watch). */
    receive(from: { name: string; out: Map<string, unknown> }) {
      for (const [id, d] of from.out) shared!.apply(sync, id, d, from.name, clock);
    },
  };
}

test('a flow is sent once established, the standby imports it on commit and accepts mid-stream segments', (t) => {
  const a = gateway('gwA');
  const b = gateway('gwB');
  pass(a.ct, seg('c', 0x02, 1000, 0), 0);
  a.flush();
  t.is(a.out.size, 0, 'SYN_SENT: not synced');
  pass(a.ct, seg('s', 0x12, 5000, 1001), 1);
  pass(a.ct, seg('c', 0x10, 1001, 5001), 2);
  // 1 MB later on A: the windows A knows are far ahead of what the record carries.
  pass(a.ct, seg('c', 0x18, 1001, 5001, 1000), 3);
  a.flush();
  t.is(a.out.size, 1, 'ESTABLISHED: one record');
  b.receive(a);
  t.is(b.sync.status().cached, 1);
  t.is(b.ct.count(0), 0, 'nothing in the table before the commit');

  // Without the import, B picks a mid-stream segment up as NEW (dropped by "NEW only as SYN" rules).
  const probe = new Conntrack({ max: 64 });
  t.is(pass(probe, seg('c', 0x18, 1_001_001, 5001, 1000), 10).ctState, CtState.NEW);

  b.setWall(1_000_000 + 500);
  t.deepEqual(b.sync.commit(), { imported: 1, exists: 0, expired: 0, refused: 0 });
  const [e] = b.ct.entries(0);
  t.is(TCP_STATE_NAMES[e.tcpState], 'ESTABLISHED');
  // Exported after a data segment: the 300 s of data in flight, less the record's age.
  t.is(e.remaining(0), 299);
  // A segment 1 MB ahead of the exported window, and the server's ack of it: ESTABLISHED (be liberal).
  t.is(pass(b.ct, seg('c', 0x18, 1_001_001, 5001, 1000), 10).ctState, CtState.ESTABLISHED);
  t.is(pass(b.ct, seg('s', 0x10, 5001, 1_002_001), 11).ctState, CtState.ESTABLISHED);
  t.deepEqual(b.sync.commit(), { imported: 0, exists: 1, expired: 0, refused: 0 }, 'a second commit refuses the duplicate');
  // B now carries the flow: its own sync publishes it (for a failback to A).
  b.flush();
  t.is(b.out.size, 1);

  // The end of the flow on A is sent as a death: B forgets it.
  pass(a.ct, seg('c', 0x04, 2001, 0), 20);
  a.flush();
  t.is(TCP_STATE_NAMES[([...a.out.values()][0] as { e: { ts: number } }).e.ts], 'CLOSE', 'the state change is sent');
  t.is(a.ct.count(20 + 10_001), 0, 'expired on A');
  a.flush();
  t.deepEqual([...a.out.values()], [null], 'then its death');
  b.receive(a);
  t.is(b.sync.status().cached, 0);
});

test('importEntry refuses malformed and clashing records; expired records are skipped at commit', (t) => {
  const a = gateway('gwA');
  pass(a.ct, seg('c', 0x02, 1000, 0), 0);
  pass(a.ct, seg('s', 0x12, 5000, 1001), 1);
  pass(a.ct, seg('c', 0x10, 1001, 5001), 2);
  const exp = a.ct.exportEntry(a.ct.entries(2)[0].slot, 2)!;
  const b = new Conntrack({ max: 4 });
  t.is(b.importEntry({ ...exp, o: [1, 2] }, 0), 'malformed');
  t.is(b.importEntry({ ...exp, x: 0 }, 0), 'malformed');
  t.is(b.importEntry(exp, 0), 'ok');
  t.is(b.importEntry(exp, 0), 'exists');
  // A local flow with the same tuple wins over the import.
  const c = new Conntrack({ max: 4 });
  pass(c, seg('c', 0x02, 7000, 0), 0);
  pass(c, seg('s', 0x12, 9000, 7001), 1);
  t.is(c.importEntry(exp, 2), 'exists');

  const g = gateway('gwB');
  a.flush();
  g.receive(a);
  g.setWall(1_000_000 + 432_001_000);
  t.deepEqual(g.sync.commit(), { imported: 0, exists: 0, expired: 1, refused: 0 });

  // The refresh sends the synced flow again (its record's time left renewed).
  a.out.clear();
  a.sync.refresh();
  a.flush();
  t.is(a.out.size, 1);
});
