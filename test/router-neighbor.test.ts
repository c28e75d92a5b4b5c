import test from 'ava';
import { DEFAULT_NEIGHBOR_TIMERS, NeighborCache, NudState, type NeighborIO } from '../router/neighbor.js';
import { arp, get16, get32, ip4, ip6, l4v6Ok, mac, macAt, ndp } from './router-packets.js';

const OWN = mac('02:00:00:00:00:01');
const PEER = mac('02:00:00:00:00:02');
const PEER2 = mac('02:00:00:00:00:03');

function setup(timers = DEFAULT_NEIGHBOR_TIMERS) {
  const frames: Buffer[] = [];
  const released: [Buffer, number][] = [];
  const failed: Buffer[] = [];
  const io: NeighborIO = {
    sendFrame: (b, off, len) => frames.push(Buffer.from(b.subarray(off, off + len))),
    release: (pkt, len, m) => released.push([Buffer.from(pkt.subarray(0, len)), m]),
    unresolved: (pkt, len) => failed.push(Buffer.from(pkt.subarray(0, len))),
  };
  const nc = new NeighborCache(OWN, [{ addr: ip4('10.0.0.1'), len: 24 }], [{ addr: ip6('2001:db8::1'), len: 64 }], io, timers);
  return { nc, frames, released, failed };
}

const state4 = (nc: NeighborCache, a: string) => nc.list().find((e) => e.family === 4 && e.address[0] === ip4(a))?.state;

test('ARP: a request from an off-link sender is answered but not learned', (t) => {
  const { nc, frames } = setup();
  const req = arp(1, PEER, '10.9.9.9', 0, '10.0.0.1');
  t.true(nc.handleArp(req, 0, req.length, 0));
  t.is(frames.length, 1);
  t.is(nc.list().length, 0);
});

test('ARP: malformed payloads are refused (counted by the caller)', (t) => {
  const { nc, frames } = setup();
  const short = Buffer.alloc(20);
  t.false(nc.handleArp(short, 0, short.length, 0));
  const wrongHw = arp(1, PEER, '10.0.0.2', 0, '10.0.0.1');
  wrongHw[1] = 6; // IEEE 802 hardware type
  t.false(nc.handleArp(wrongHw, 0, wrongHw.length, 0));
  t.is(frames.length, 0);
});

test('ARP: a request for another address teaches nothing new and is not answered', (t) => {
  const { nc, frames } = setup();
  const req = arp(1, PEER, '10.0.0.2', 0, '10.0.0.7');
  nc.handleArp(req, 0, req.length, 0);
  t.is(frames.length, 0);
  t.is(nc.list().length, 0);
});

test('ARP: a gratuitous update changes the MAC of a known neighbour and marks it STALE', (t) => {
  const { nc } = setup();
  nc.handleArp(arp(1, PEER, '10.0.0.2', 0, '10.0.0.1'), 0, 28, 0);
  t.is(state4(nc, '10.0.0.2'), NudState.STALE);
  t.is(nc.lookup4(ip4('10.0.0.2'), 1), PEER);
  nc.handleArp(arp(1, PEER2, '10.0.0.2', 0, '10.0.0.2'), 0, 28, 2);
  t.is(nc.list()[0].mac, PEER2);
});

test('queue holds at most queueLength packets per neighbour, oldest dropped', (t) => {
  const { nc, frames, released } = setup({ ...DEFAULT_NEIGHBOR_TIMERS, queueLength: 3 });
  for (let i = 0; i < 5; i++) nc.enqueue4(ip4('10.0.0.5'), Buffer.from([0x45, i]), 0, 2, 0);
  t.is(frames.length, 1, 'one request while INCOMPLETE');
  t.is(nc.counters.queueDrops, 2);
  nc.handleArp(arp(2, PEER, '10.0.0.5', OWN, '10.0.0.1'), 0, 28, 10);
  t.deepEqual(
    released.map(([p, m]) => [p[1], m]),
    [
      [2, PEER],
      [3, PEER],
      [4, PEER],
    ],
  );
  t.is(state4(nc, '10.0.0.5'), NudState.REACHABLE);
});

test('FAILED entries restart resolution on new traffic, and are forgotten after gcStaleMs', (t) => {
  const { nc, frames, failed } = setup();
  nc.enqueue4(ip4('10.0.0.6'), Buffer.from([0x45, 1]), 0, 2, 0);
  for (let now = 1000; now <= 3000; now += 1000) nc.tick(now);
  t.is(state4(nc, '10.0.0.6'), NudState.FAILED);
  t.is(failed.length, 1);
  t.is(frames.length, 3);
  nc.enqueue4(ip4('10.0.0.6'), Buffer.from([0x45, 2]), 0, 2, 3500);
  t.is(state4(nc, '10.0.0.6'), NudState.INCOMPLETE);
  t.is(frames.length, 4);
  for (let now = 4500; now <= 6500; now += 1000) nc.tick(now);
  t.is(state4(nc, '10.0.0.6'), NudState.FAILED);
  nc.tick(6500 + 60_000);
  t.is(nc.list().length, 0);
  t.is(nc.lookup4(ip4('10.0.0.6'), 70_000), -1);
});

test('many neighbours: the address index grows and finds every entry', (t) => {
  const { nc } = setup();
  for (let i = 2; i < 250; i++) nc.handleArp(arp(1, PEER + i, `10.0.0.${i}`, 0, '10.0.0.1'), 0, 28, 0);
  let ok = 0;
  for (let i = 2; i < 250; i++) if (nc.lookup4(ip4(`10.0.0.${i}`), 1) === PEER + i) ok++;
  t.is(ok, 248);
});

test('NDP: NS from :: (duplicate address detection) is answered to all-nodes without the solicited flag', (t) => {
  const { nc, frames } = setup();
  const ns = ndp(135, '::', 'ff02::1:ff00:1', '2001:db8::1', PEER);
  // a DAD probe carries no source link-layer option: strip it
  ns.writeUInt16BE(24, 4);
  const dad = ns.subarray(0, 64);
  fixChecksum(dad);
  t.true(nc.handleNdp(dad, 0, 40, 24, PEER, 0));
  const [na] = frames;
  t.is(macAt(na, 0), 0x333300000001);
  const ip = na.subarray(14);
  t.is(ip[24], 0xff);
  t.is(ip[44] & 0x40, 0, 'not solicited');
  t.true(l4v6Ok(ip));
});

test('NDP: invalid NS (hop limit not 255, bad checksum, truncated options) is refused', (t) => {
  const { nc, frames } = setup();
  const hop = ndp(135, '2001:db8::2', 'ff02::1:ff00:1', '2001:db8::1', PEER);
  hop[7] = 64;
  t.false(nc.handleNdp(hop, 0, 40, 32, PEER, 0));
  const sum = ndp(135, '2001:db8::2', 'ff02::1:ff00:1', '2001:db8::1', PEER);
  sum[60] ^= 1;
  t.false(nc.handleNdp(sum, 0, 40, 32, PEER, 0));
  const opt = ndp(135, '2001:db8::2', 'ff02::1:ff00:1', '2001:db8::1', PEER);
  opt[65] = 0; // option length 0
  fixChecksum(opt);
  t.false(nc.handleNdp(opt, 0, 40, 32, PEER, 0));
  t.is(frames.length, 0);
});

test('NDP: NS for an address that is not ours is ignored; unsolicited NA creates no entry', (t) => {
  const { nc, frames } = setup();
  const ns = ndp(135, '2001:db8::2', 'ff02::1:ff00:9', '2001:db8::9', PEER);
  t.true(nc.handleNdp(ns, 0, 40, 32, PEER, 0));
  const na = ndp(136, '2001:db8::2', 'ff02::1', '2001:db8::2', PEER, 0x20);
  t.true(nc.handleNdp(na, 0, 40, 32, PEER, 0));
  t.is(frames.length, 0);
  t.is(nc.list().length, 0);
});

test('NDP: resolution by NS, NA without override does not replace a known MAC', (t) => {
  const { nc, frames, released } = setup();
  nc.enqueue6(ip6('2001:db8::2'), Buffer.from([0x60, 7]), 0, 2, 0);
  const [ns] = frames;
  t.is(get16(ns, 12), 0x86dd);
  t.is(get32(ns, 14 + 24), 0xff020000);
  t.true(l4v6Ok(ns.subarray(14)));
  nc.handleNdp(ndp(136, '2001:db8::2', '2001:db8::1', '2001:db8::2', PEER, 0x60), 0, 40, 32, PEER, 5);
  t.deepEqual(released.map(([p, m]) => [p[1], m]), [[7, PEER]]);
  t.is(nc.lookup6(ip6('2001:db8::2'), 6), PEER);
  // solicited, no override, different MAC: entry becomes STALE, MAC kept (RFC 4861 7.2.5)
  nc.handleNdp(ndp(136, '2001:db8::2', '2001:db8::1', '2001:db8::2', PEER2, 0x40), 0, 40, 32, PEER2, 7);
  const e = nc.list()[0];
  t.is(e.mac, PEER);
  t.is(e.state, NudState.STALE);
});

function fixChecksum(b: Buffer): void {
  const plen = b.readUInt16BE(4);
  b.writeUInt16BE(0, 42);
  let s = 58 + plen;
  for (let i = 8; i < 40; i += 2) s += b.readUInt16BE(i);
  for (let i = 40; i + 1 < 40 + plen; i += 2) s += b.readUInt16BE(i);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  b.writeUInt16BE(~s & 0xffff, 42);
}

test('a full table collects unused STALE/FAILED entries, else refuses new neighbours', (t) => {
  const { nc } = setup({ ...DEFAULT_NEIGHBOR_TIMERS, maxEntries: 4 });
  for (let i = 2; i < 6; i++) t.true(nc.enqueue4(ip4(`10.0.0.${i}`), Buffer.from([0x45]), 0, 1, 0));
  // four INCOMPLETE entries with packets waiting: nothing can go
  t.false(nc.enqueue4(ip4('10.0.0.9'), Buffer.from([0x45]), 0, 1, 0));
  t.is(nc.counters.tableOverflows, 1);
  // let them fail: now they can be collected to make room
  for (let now = 1000; now <= 3000; now += 1000) nc.tick(now);
  t.true(nc.enqueue4(ip4('10.0.0.9'), Buffer.from([0x45]), 0, 1, 3500));
  t.deepEqual(nc.list().map((e) => e.address[0]), [ip4('10.0.0.9')]);
});

test('requests from a neighbour in DELAY do not postpone its probe', (t) => {
  const { nc, frames } = setup();
  nc.enqueue4(ip4('10.0.0.2'), Buffer.from([0x45]), 0, 1, 0);
  nc.handleArp(arp(2, PEER, '10.0.0.2', OWN, '10.0.0.1'), 0, 28, 0);
  nc.tick(30_000);
  t.is(state4(nc, '10.0.0.2'), NudState.STALE);
  t.is(nc.lookup4(ip4('10.0.0.2'), 30_000), PEER);
  t.is(state4(nc, '10.0.0.2'), NudState.DELAY);
  nc.handleArp(arp(1, PEER, '10.0.0.2', 0, '10.0.0.1'), 0, 28, 33_000);
  frames.length = 0;
  nc.tick(35_000);
  t.is(state4(nc, '10.0.0.2'), NudState.PROBE);
  t.is(macAt(frames[0], 0), PEER, 'unicast probe');
});
