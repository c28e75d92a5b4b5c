/**
 * `-m knockcode` (encrypted knocks over a port span) through the module
 * harness. Knock sequences are sealed here with Node's ChaCha20-Poly1305
 * following the format in modules/knockcode.ts' header (nonce8 || ct7 ||
 * tag16, AAD "xtr-knockcode/1" || source address), not with xtr-knock.
 */
import test from 'ava';
import { createCipheriv } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { XtHarness } from './helpers/xt-harness.js';
import { ip4, ip6, udpDgram, tcpSeg } from './modules-fixtures.js';
import knockcode from '../modules/knockcode.js';

const dir = mkdtempSync(join(tmpdir(), 'xw4-kc-'));
const KEY = Buffer.alloc(32, 7);
const KEYFILE = join(dir, 'key');
writeFileSync(KEYFILE, KEY.toString('hex') + '\n');
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const PLACE = { table: 'filter', chain: 'INPUT', proto: 'udp' } as const;
const SERVER = '192.0.2.1';

function seal(key: Buffer, src: Buffer, port: number, flags: number, expiry: number, nonce: Buffer): Buffer {
  const plain = Buffer.from([port >> 8, port & 255, flags, expiry >>> 24, (expiry >>> 16) & 255, (expiry >>> 8) & 255, expiry & 255]);
  const c = createCipheriv('chacha20-poly1305', key, Buffer.concat([Buffer.alloc(4), nonce]), { authTagLength: 16 });
  c.setAAD(Buffer.concat([Buffer.from('xtr-knockcode/1'), src]), { plaintextLength: 7 });
  return Buffer.concat([nonce, c.update(plain), c.final(), c.getAuthTag()]);
}

/** 8 bits per knock over 20000:20127 + 30000:30127 (256 ports, two ranges). */
function ports(wire: Buffer): number[] {
  return [...wire].map((b) => (b < 128 ? 20000 + b : 30000 + b - 128));
}

const v4 = (a: string) => Buffer.from(a.split('.').map(Number));

function setup() {
  const h = new XtHarness();
  const knock = h.match(knockcode, `--name KC --span 20000:20127 --span 30000:30127 --key-file ${KEYFILE}`, PLACE);
  const check = h.match(knockcode, '--name KC --granted', { ...PLACE, proto: 'tcp' });
  const send = (src: string, list: number[]) => {
    for (const p of list) knock.match(h.packet(ip4(src, SERVER, udpDgram(1000, p))));
  };
  const may = (src: string, port: number, proto: 'tcp' | 'udp' = 'tcp') =>
    check.match(h.packet(ip4(src, SERVER, proto === 'tcp' ? tcpSeg(1000, port, 2) : udpDgram(1000, port))));
  const expiry = () => Math.floor(h.services.wallClock / 1000) + 60;
  return { h, send, may, expiry };
}

test('opens exactly the encoded port for exactly its address; the proc shows the grant', (t) => {
  const s = setup();
  s.send('10.0.0.2', ports(seal(KEY, v4('10.0.0.2'), 22, 1, s.expiry(), Buffer.alloc(8, 1))));
  t.true(s.may('10.0.0.2', 22));
  t.false(s.may('10.0.0.2', 23), 'another port');
  t.false(s.may('10.0.0.2', 22, 'udp'), 'another protocol');
  t.false(s.may('10.0.0.3', 22), 'another address');
  t.is(s.h.readProc('net/xt_knockcode/KC'), 'src=10.0.0.2 port=22 proto=tcp expires_in=60\n');
  t.like(s.h.services.events.at(-1), { kind: 'knockcode.open', fields: { ip: '10.0.0.2', port: 22 } });
  s.h.advance(61_000);
  t.false(s.may('10.0.0.2', 22), 'expired');
  t.is(s.h.readProc('net/xt_knockcode/KC'), '');
});

test('a replay from the same address, the same knocks from another address, a wrong key, an expired or far-future expiry do nothing', (t) => {
  const s = setup();
  const wire = seal(KEY, v4('10.0.0.2'), 22, 0, s.expiry(), Buffer.alloc(8, 2));
  s.send('10.0.0.2', ports(wire));
  t.true(s.may('10.0.0.2', 22));
  s.send('10.0.0.2', ports(wire));
  t.like(s.h.services.events.at(-1), { kind: 'knockcode.refused', fields: { reason: 'replay' } });
  s.send('10.0.0.9', ports(wire));
  t.false(s.may('10.0.0.9', 22));
  t.like(s.h.services.events.at(-1), { kind: 'knockcode.failed', fields: { reason: 'decrypt', ip: '10.0.0.9' } });
  s.send('10.0.0.3', ports(seal(Buffer.alloc(32, 8), v4('10.0.0.3'), 22, 0, s.expiry(), Buffer.alloc(8, 3))));
  t.false(s.may('10.0.0.3', 22), 'wrong key');
  s.send('10.0.0.3', ports(seal(KEY, v4('10.0.0.3'), 22, 0, s.expiry() - 120, Buffer.alloc(8, 4))));
  s.send('10.0.0.3', ports(seal(KEY, v4('10.0.0.3'), 22, 0, s.expiry() + 7200, Buffer.alloc(8, 5))));
  t.false(s.may('10.0.0.3', 22), 'expiry outside (now, now + max-open]');
  // A lost knock: the tag fails.
  const lost = ports(seal(KEY, v4('10.0.0.4'), 22, 0, s.expiry(), Buffer.alloc(8, 6)));
  lost.splice(10, 1);
  s.send('10.0.0.4', lost);
  t.false(s.may('10.0.0.4', 22));
  t.deepEqual(s.h.services.events.map((e) => `${e.kind}/${e.fields.reason ?? ''}`), [
    'knockcode.open/',
    'knockcode.refused/replay',
    'knockcode.failed/decrypt',
    'knockcode.failed/decrypt',
    'knockcode.refused/expiry',
    'knockcode.refused/expiry',
  ]);
  t.is(s.h.readProc('net/xt_knockcode/KC'), 'src=10.0.0.2 port=22 proto=any expires_in=60\nsrc=10.0.0.4 queued=30\n');
  s.h.advance(6000);
  t.is(s.h.readProc('net/xt_knockcode/KC'), 'src=10.0.0.2 port=22 proto=any expires_in=54\n', 'partial queues expire after --time');
});

test('IPv6 sources; 12 bits per knock over one range', (t) => {
  const h = new XtHarness();
  const place = { ...PLACE, family: 6 } as const;
  const knock = h.match(knockcode, `--name K6 --span 40000:44095 --key-file ${KEYFILE}`, place);
  const check = h.match(knockcode, '--name K6 --granted', { ...place, proto: 'tcp' });
  const src = Buffer.from('20010db8000c00000000000000000002', 'hex');
  const wire = seal(KEY, src, 443, 1, Math.floor(h.services.wallClock / 1000) + 30, Buffer.alloc(8, 9));
  const bits = [...wire].map((b) => b.toString(2).padStart(8, '0')).join('').padEnd(252, '0');
  const list: number[] = [];
  for (let i = 0; i < bits.length; i += 12) list.push(40000 + parseInt(bits.slice(i, i + 12), 2));
  t.is(list.length, 21);
  for (const p of list) knock.match(h.packet(ip6('2001:db8:c::2', '2001:db8::1', udpDgram(1, p))));
  t.true(check.match(h.packet(ip6('2001:db8:c::2', '2001:db8::1', tcpSeg(1, 443, 2)))));
  t.false(check.match(h.packet(ip6('2001:db8:c::3', '2001:db8::1', tcpSeg(1, 443, 2)))));
});

test('option errors', (t) => {
  const h = new XtHarness();
  const bad: [string, RegExp][] = [
    [`--name A --span 1:3 --key-file ${KEYFILE}`, /power of two/],
    [`--name A --span 1:4 --span 3:6 --key-file ${KEYFILE}`, /spans overlap/],
    ['--name A --span 1:4', /give --span and --key-file/],
    [`--span 1:4 --key-file ${KEYFILE}`, /--name NAME is required/],
    ['--name A --granted --span 1:4', /--granted takes only --name/],
    [`--name A --span 4:1 --key-file ${KEYFILE}`, /--span "4:1"/],
    [`--name A --span 1:4 --key-file ${KEYFILE} --time 0`, /Bad value for "--time"/],
  ];
  for (const [words, re] of bad) t.throws(() => h.parse(knockcode, words, PLACE), { message: re }, words);
  t.throws(() => h.parse(knockcode, `--name A --span 1:4 --key-file ${KEYFILE}`, { ...PLACE, proto: 'icmp' }), { message: /needs `-p tcp' or `-p udp'/ });
  writeFileSync(join(dir, 'short'), 'abcd\n');
  t.throws(() => h.match(knockcode, `--name A --span 1:4 --key-file ${join(dir, 'short')}`, PLACE), { message: /64 hex digits/ });
  t.throws(() => h.match(knockcode, `--name A --span 1:4 --key-file ${join(dir, 'nope')}`, PLACE), { message: /ENOENT/ });
});
