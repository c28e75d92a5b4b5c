/**
 * New-flow shedding under overload (router/forward.ts, Router.synBudget):
 * while a device stays backlogged, pure SYNs beyond a per-batch budget are
 * dropped before PREROUTING (counted as new_flow_shed) and every other
 * packet still goes through; without a backlog nothing is shed, and the
 * budget grows back once the device is drained again. MemDevice makes the
 * backlog exact: no timing involved.
 */
import test from 'ava';
import { MemDevice } from '../dataplane/memdev.js';
import { validateConfig } from '../router/config.js';
import { Router } from '../router/forward.js';
import { silentLogger } from '../router/log.js';
import { csum, ip4 } from './router-packets.js';

/** Batches one wake-up reads at most (forward.ts MAX_ROUNDS) times the batch size. */
const WAKEUP = 16 * 64;

function tcp4(src: number, sport: number, flags: number): Buffer {
  const b = Buffer.alloc(40);
  b[0] = 0x45;
  b.writeUInt16BE(40, 2);
  b[8] = 64;
  b[9] = 6;
  b.writeUInt32BE(src >>> 0, 12);
  b.writeUInt32BE(ip4('192.0.2.2'), 16);
  b.writeUInt16BE(csum(b, 0, 20), 10);
  b.writeUInt16BE(sport, 20);
  b.writeUInt16BE(80, 22);
  b.writeUInt32BE(1000, 24);
  b[32] = 0x50;
  b[33] = flags;
  b.writeUInt16BE(64240, 34);
  const pseudo = (src >>> 16) + (src & 0xffff) + (ip4('192.0.2.2') >>> 16) + (ip4('192.0.2.2') & 0xffff) + 6 + 20;
  b.writeUInt16BE(csum(b, 20, 20, pseudo), 36);
  return b;
}
const SYN = 0x02;
const ACK = 0x10;
const SYN_ACK = 0x12;

function makeRouter() {
  const config = validateConfig({
    hostInterface: { name: 'xtr0' },
    interfaces: [
      { name: 'eth0', mode: 'tun', addresses: ['198.51.100.1/24'] },
      { name: 'eth2', mode: 'tun', addresses: ['192.0.2.1/24'] },
    ],
  });
  const eth0 = new MemDevice('eth0', { rxQueueLimit: 100_000 });
  const eth2 = new MemDevice('eth2');
  const router = new Router({ config, devices: new Map([['eth0', eth0], ['eth2', eth2]]), host: new MemDevice('xtr0'), logger: silentLogger(), tickMs: 3_600_000 });
  router.start();
  const ri = router.interfaces[1];
  const shed = () => router.status().drops['new_flow_shed'] ?? 0;
  return { router, eth0, eth2, drain: () => router.drain(ri), shed };
}

/** `count` packets: every `every`-th an ACK of an established flow (sport 1), the rest SYNs from distinct sources. */
function inject(eth0: MemDevice, count: number, every: number, flags = SYN): void {
  for (let i = 0; i < count; i++) eth0.inject(i % every === every - 1 ? tcp4(ip4('198.51.100.2'), 1, ACK) : tcp4((0x0a000000 + i) >>> 0, 1024 + (i % 60000), flags));
}

test('no backlog: a wake-up that empties the device sheds nothing', (t) => {
  const r = makeRouter();
  inject(r.eth0, WAKEUP - 1, 1000);
  r.drain();
  t.is(r.eth0.pending, 0);
  t.is(r.shed(), 0);
  t.is(r.eth2.takeSent().length, WAKEUP - 1);
});

test('backlogged: SYNs over the budget are shed, every other packet is forwarded, the budget regrows once drained', (t) => {
  const r = makeRouter();
  // One wake-up's worth plus more waiting: the first wake-up ends backlogged (nothing shed yet).
  inject(r.eth0, WAKEUP + 64, 8);
  r.drain();
  t.is(r.shed(), 0);
  t.is(r.eth2.takeSent().length, WAKEUP);
  // Keep it backlogged: the budget loses a quarter each time (64 -> 48 -> 36 ...), SYNs get shed, ACKs never.
  let acks = 0;
  let sent = 0;
  const count = (out: Buffer[]) => {
    sent += out.length;
    acks += out.filter((p) => p[33] === ACK).length;
  };
  for (let k = 0; k < 6; k++) {
    inject(r.eth0, WAKEUP, 8);
    r.drain();
    count(r.eth2.takeSent());
  }
  t.true(r.shed() > 0, 'SYNs were shed');
  // Drain what is left: the wake-ups that empty the device let the budget grow back to the batch size.
  for (let k = 0; k < 200 && r.eth0.pending > 0; k++) {
    r.drain();
    count(r.eth2.takeSent());
  }
  t.is(r.eth0.pending, 0);
  t.is(acks, 6 * (WAKEUP / 8) + 8, 'every ACK was forwarded');
  t.is(sent + r.shed(), 6 * WAKEUP + 64, 'every packet read was forwarded or shed');
  for (let k = 0; k < 64; k++) {
    inject(r.eth0, 10, 1000);
    r.drain();
  }
  r.eth2.takeSent();
  const before = r.shed();
  inject(r.eth0, 64, 1000);
  r.drain();
  t.is(r.shed(), before, 'a full batch after recovery sheds nothing');
  t.is(r.eth2.takeSent().length, 64);
});

test('only pure SYNs are shed: SYN/ACKs pass a backlogged router untouched', (t) => {
  const r = makeRouter();
  inject(r.eth0, 2 * WAKEUP, 1000); // two wake-ups of SYNs: the budget is down after the first
  r.drain();
  r.drain();
  t.true(r.shed() > 0);
  r.eth2.takeSent();
  const before = r.shed();
  inject(r.eth0, WAKEUP + 64, 1000, SYN_ACK);
  r.drain();
  t.is(r.shed(), before, 'SYN/ACKs are never shed');
  t.is(r.eth2.takeSent().length, WAKEUP);
});
