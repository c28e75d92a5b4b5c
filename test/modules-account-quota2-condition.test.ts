/**
 * ACCOUNT, quota2 and condition through the module harness (test/helpers/xt-harness.ts):
 * tables of option words, byte-fixture packets and what the tables, counters
 * and proc files hold afterwards; the 128-table and name limits; persistence
 * through the engine's saveState/restoreState; read-and-flush between packets.
 * Facts: ../shared/spec/targets-facts.md §1, matches-facts.md §3 and §13.
 */
import test from 'ava';
import { XtHarness } from './helpers/xt-harness.js';
import { ip4, ip6, udpDgram } from './modules-fixtures.js';
import ACCOUNT, { accountCommand, type AccountTable } from '../modules/ACCOUNT.js';
import quota2 from '../modules/quota2.js';
import condition from '../modules/condition.js';
import { XT_CONTINUE } from '../xt/extension.js';
import type { StateLookup } from '../xt/state.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { restoreState, saveState } from '../router/netfilter/index.js';

const udp = (n: number) => udpDgram(1000, 53, new Array(n).fill(0x61));
/** An IPv4 UDP packet of exactly `len` bytes (IP length). */
const u4 = (src: string, dst: string, len = 100) => ip4(src, dst, udp(len - 28));
const u6 = (src: string, dst: string, len = 100) => ip6(src, dst, udp(len - 48));

function run(h: XtHarness, args: string[]): string {
  return accountCommand.run(args, h.state as unknown as StateLookup);
}

// ---------------------------------------------------------------------------
// ACCOUNT

interface AccountRow {
  name: string;
  family?: 4 | 6;
  addr: string;
  packets: Buffer[];
  /** What `account read` prints: "ADDR SP SB DP DB" per line. */
  read: string[];
}

const ACCOUNT_ROWS: AccountRow[] = [
  {
    name: '/24: source and destination counted separately, both for inside-to-inside, outside ignored',
    addr: '10.1.2.0/24',
    packets: [u4('10.1.2.5', '192.0.2.1', 100), u4('10.1.2.5', '192.0.2.1', 60), u4('192.0.2.1', '10.1.2.9', 1000), u4('10.1.2.5', '10.1.2.9', 40), u4('192.0.2.1', '198.51.100.1', 80)],
    read: ['10.1.2.5 3 200 0 0', '10.1.2.9 0 0 2 1040'],
  },
  {
    name: 'host bits of --addr masked off; /16 orders by address across blocks',
    addr: '10.1.2.3/16',
    packets: [u4('10.1.200.1', '8.8.8.8', 50), u4('10.1.0.7', '8.8.8.8', 70), u4('8.8.8.8', '10.1.200.1', 30), u4('10.2.0.1', '8.8.8.8', 30)],
    read: ['10.1.0.7 1 70 0 0', '10.1.200.1 1 50 1 30'],
  },
  {
    name: '/8 (the largest): three octets of host',
    addr: '10.0.0.0/8',
    packets: [u4('10.255.255.255', '1.1.1.1', 40), u4('10.0.0.1', '1.1.1.1', 40), u4('11.0.0.1', '10.0.0.1', 44)],
    read: ['10.0.0.1 1 40 1 44', '10.255.255.255 1 40 0 0'],
  },
  {
    name: '/32: one address',
    addr: '192.0.2.7',
    packets: [u4('192.0.2.7', '1.1.1.1', 40), u4('192.0.2.8', '1.1.1.1', 40)],
    read: ['192.0.2.7 1 40 0 0'],
  },
  {
    name: '/0: everything as source traffic of 0.0.0.0',
    addr: '0.0.0.0/0',
    packets: [u4('10.0.0.1', '1.1.1.1', 40), u4('1.1.1.1', '10.0.0.1', 60)],
    read: ['0.0.0.0 2 100 0 0'],
  },
  {
    name: 'non-contiguous mask: inside by the whole mask, stored by its leading run',
    addr: '10.0.5.0/255.0.255.0',
    packets: [u4('10.9.5.1', '1.1.1.1', 40), u4('10.9.6.1', '1.1.1.1', 40)],
    read: ['10.9.5.1 1 40 0 0'],
  },
  {
    name: 'IPv6 /104: same layout over the low 24 bits',
    family: 6,
    addr: '2001:db8::/104',
    packets: [u6('2001:db8::5', '2001:db8:1::1', 100), u6('2001:db8:1::1', '2001:db8::ab:cdef', 60), u6('2001:db8::1:0:5', '2001:db8::5', 80)],
    read: ['2001:db8::5 1 100 1 80', '2001:db8::ab:cdef 0 0 1 60'],
  },
  {
    name: 'IPv6 /0',
    family: 6,
    addr: '::/0',
    packets: [u6('2001:db8::5', '2001:db8:1::1', 100)],
    read: [':: 1 100 0 0'],
  },
];

for (const row of ACCOUNT_ROWS) {
  test(`ACCOUNT ${row.name}`, (t) => {
    const h = new XtHarness();
    const tg = h.target(ACCOUNT, `--addr ${row.addr} --tname T`, { family: row.family ?? 4, chain: 'FORWARD' });
    for (const p of row.packets) t.is(tg.target(h.packet(p, { hook: 2 })), XT_CONTINUE);
    t.deepEqual(run(h, ['read', 'T']).split('\n').filter(Boolean), row.read);
    // A plain read leaves the counters; read-flush returns them and starts from zero.
    t.deepEqual(run(h, ['read-flush', 'T']).split('\n').filter(Boolean), row.read);
    t.is(run(h, ['read', 'T']), '');
  });
}

test('ACCOUNT: tables shared by name with the same prefix, refused with another; slots reused lowest first', (t) => {
  const h = new XtHarness();
  const place = { chain: 'FORWARD' } as const;
  const a1 = h.target(ACCOUNT, '--addr 10.0.0.0/24 --tname a', place);
  h.target(ACCOUNT, '--addr 10.0.0.0/24 --tname a', place);
  h.target(ACCOUNT, '--addr 10.0.1.0/24 --tname b', place);
  const err = t.throws(() => h.target(ACCOUNT, '--addr 10.0.0.0/16 --tname a', place));
  t.is(err?.message, 'ACCOUNT: Table a found, but IP/netmask mismatch. IP/netmask found: 10.0.0.0/255.255.255.0\nACCOUNT: Table insert problem. Aborting');
  t.is(run(h, ['names']), 'a\nb\n');
  a1.target(h.packet(u4('10.0.0.1', '1.1.1.1', 40), { hook: 2 }));
  t.is(run(h, ['read', 'a']), '10.0.0.1 1 40 0 0\n');
  t.is(h.state.refs('ACCOUNT:a'), 2);
  t.throws(() => run(h, ['read', 'nosuch']), { message: 'ACCOUNT: table "nosuch" not found' });
  t.throws(() => run(h, ['read']), { message: 'bad arguments "read"' });
  t.is(run(h, ['handles']), '0\n');
});

test('ACCOUNT: 128 tables, the 129th refused with the kernel line, nothing of the others lost; a freed slot is reused', (t) => {
  const h = new XtHarness();
  const place = { chain: 'FORWARD' } as const;
  const insts = [];
  for (let i = 0; i < 128; i++) insts.push(h.target(ACCOUNT, `--addr 10.${i}.0.0/24 --tname t${i}`, place));
  insts[5].target(h.packet(u4('10.5.0.9', '1.1.1.1', 40), { hook: 2 }));
  const err = t.throws(() => h.target(ACCOUNT, '--addr 10.200.0.0/24 --tname one-too-many', place));
  t.is(err?.message, 'ACCOUNT: No free table slot found (max: 128). Use max_tables_limit module parameter.');
  t.is(h.state.refs('ACCOUNT:one-too-many'), 0);
  t.is(run(h, ['names']).split('\n').filter(Boolean).length, 128);
  t.is(run(h, ['read', 't5']), '10.5.0.9 1 40 0 0\n');
  insts[3].destroy?.();
  h.target(ACCOUNT, '--addr 10.200.0.0/24 --tname late', place);
  const names = run(h, ['names']).split('\n').filter(Boolean);
  t.is(names[3], 'late');
  // The limit is upstream's module parameter, from the config's extension settings.
  const small = new XtHarness({ settings: { ACCOUNT: { max_tables_limit: 2 } } });
  small.target(ACCOUNT, '--addr 10.0.0.0/24 --tname x', place);
  small.target(ACCOUNT, '--addr 10.0.0.0/24 --tname y', place);
  t.throws(() => small.target(ACCOUNT, '--addr 10.0.0.0/24 --tname z', place), { message: /max: 2/ });
});

test('ACCOUNT: kernel-side refusals (prefix wider than /8 or /104, empty name)', (t) => {
  const h = new XtHarness();
  t.throws(() => h.target(ACCOUNT, '--addr 10.0.0.0/7 --tname x', { chain: 'FORWARD' }), { message: /largest prefix a table can count is \/8/ });
  t.throws(() => h.target(ACCOUNT, '--addr 2001:db8::/64 --tname x', { family: 6, chain: 'FORWARD' }), { message: /\/104/ });
  t.throws(() => h.target(ACCOUNT, ['--addr', '10.0.0.0/8', '--tname', ''], { chain: 'FORWARD' }), { message: /empty --tname/ });
  t.is(run(h, ['names']), '');
});

test('ACCOUNT option errors in libxt_ACCOUNT words', (t) => {
  const h = new XtHarness();
  const rows: [string, string][] = [
    ['', 'ACCOUNT: needs --addr and --tname'],
    ['--addr 10.0.0.0/8', 'ACCOUNT: needs --addr and --tname'],
    ['--tname x', 'ACCOUNT: needs --addr and --tname'],
    ['--addr 10.0.0.0/8 --addr 10.0.0.0/8 --tname x', "Can't specify --addr twice"],
    ['--addr 10.0.0.0/8 --tname x --tname y', "Can't specify --tname twice"],
    ['--addr 10.0.0.0/8 --tname abcdefghijklmnopqrstuvwxyz123456', 'Maximum table name length 31 for --tname'],
    ['--addr 10.0.0.0/33 --tname x', "invalid mask `33' specified"],
    ['--addr foo.invalid --tname x', "host/network `foo.invalid' not found"],
  ];
  for (const [words, msg] of rows) t.throws(() => h.parse(ACCOUNT, words, { chain: 'FORWARD' }), { message: msg }, words);
  // 31 bytes is the longest name.
  t.is(h.parse(ACCOUNT, '--addr 10.0.0.0/8 --tname abcdefghijklmnopqrstuvwxyz12345', { chain: 'FORWARD' }).name.length, 31);
});

test('ACCOUNT read-and-flush between packets: every packet in exactly one read', (t) => {
  const h = new XtHarness();
  const tg = h.target(ACCOUNT, '--addr 10.0.0.0/16 --tname f', { chain: 'FORWARD' });
  const sent = new Map<string, number>();
  let reads = new Map<string, number>();
  const add = (m: Map<string, number>, k: string, n: number) => m.set(k, (m.get(k) ?? 0) + n);
  for (let i = 0; i < 5000; i++) {
    const src = `10.0.${i % 7}.${i % 13}`;
    tg.target(h.packet(u4(src, '1.1.1.1', 40 + (i % 50)), { hook: 2 }));
    add(sent, src, 1);
    if (i % 333 === 0) for (const line of run(h, ['read-flush', 'f']).split('\n').filter(Boolean)) add(reads, line.split(' ')[0], Number(line.split(' ')[1]));
  }
  for (const line of run(h, ['read-flush', 'f']).split('\n').filter(Boolean)) add(reads, line.split(' ')[0], Number(line.split(' ')[1]));
  reads = new Map([...reads].sort());
  t.deepEqual(reads, new Map([...sent].sort()));
});

test('ACCOUNT, quota2, condition: state saved by the engine and back after a restart', async (t) => {
  const a = await testEngine();
  for (const line of [
    'iptables -A FORWARD -j ACCOUNT --addr 10.0.0.0/24 --tname keep',
    'ip6tables -A FORWARD -j ACCOUNT --addr 2001:db8::/120 --tname keep6',
    'iptables -A FORWARD -m quota2 --name q --quota 1000',
    'iptables -A FORWARD -m quota2 --quota 500 --packets',
    'iptables -A FORWARD -m condition --condition c1',
  ]) t.is((await a.run(line)).status, 0, line);
  const h = new XtHarness();
  const hook = (bytes: Buffer) => {
    const ctx = h.packet(bytes, { hook: 2 });
    return a.nf.hook(2, ctx);
  };
  hook(u4('10.0.0.5', '1.1.1.1', 100));
  hook(u6('2001:db8::9', '2001:db8:1::1', 80));
  a.nf.proc.get('net/nf_condition/c1')!.write!('1\n');
  const text = saveState(a.nf);
  const b = await testEngine();
  restoreState(b.nf, text);
  const look = b.nf.state as unknown as StateLookup;
  t.is(accountCommand.run(['read', 'keep'], look), '10.0.0.5 1 100 0 0\n');
  t.is(accountCommand.run(['read', 'keep6'], look), '2001:db8::9 1 80 0 0\n');
  t.is(b.nf.proc.get('net/xt_quota/q')!.read(), '900\n');
  t.is(b.nf.proc.get('net/nf_condition/c1')!.read(), '1\n');
  // The anonymous quota comes back from the saved rule text (iptables-save prints what is left).
  t.regex((await b.run('iptables-save')).stdout, /-m quota2 --packets {2}--quota 499 \n/);
  t.is((b.nf.state.get('ACCOUNT:keep') as AccountTable).data.itemcount, 1);
});

// ---------------------------------------------------------------------------
// quota2

interface QuotaRow {
  name: string;
  words: string;
  family?: 4 | 6;
  /** IP lengths of the packets, in order. */
  lens: number[];
  matched: boolean[];
  /** The counter afterwards (iptables-save's --quota). */
  left: string;
}

const QUOTA_ROWS: QuotaRow[] = [
  { name: 'countdown in bytes: a packet larger than what is left empties it', words: '--quota 250', lens: [100, 100, 100, 40], matched: [true, true, false, false], left: '0' },
  { name: 'exactly enough matches', words: '--quota 200', lens: [100, 100, 28], matched: [true, true, false], left: '0' },
  { name: 'inverted: matches once the quota is spent', words: '! --quota 150', lens: [100, 100, 40], matched: [false, true, true], left: '0' },
  { name: '--packets counts packets', words: '--quota 2 --packets', lens: [1500, 1500, 40], matched: [true, true, false], left: '0' },
  { name: '--grow counts up and always matches (negation ignored)', words: '! --quota 10 --grow', lens: [100, 60], matched: [true, true], left: '170' },
  { name: '--grow --packets', words: '--grow --packets', lens: [100, 60, 28], matched: [true, true, true], left: '3' },
  { name: '--no-change: matches while enough, never spends or empties', words: '--quota 150 --no-change', lens: [100, 100, 200, 150], matched: [true, true, false, true], left: '150' },
  { name: '--grow --no-change: the counter stays', words: '--quota 7 --grow --no-change', lens: [100], matched: [true], left: '7' },
  { name: 'quota 0 never matches', words: '--quota 0', lens: [28], matched: [false], left: '0' },
  { name: 'IPv6: L3 length is 40 + payload', words: '--quota 100', family: 6, lens: [60, 48], matched: [true, false], left: '0' },
  { name: 'hex and octal initial values', words: '--quota 0x64', lens: [100, 28], matched: [true, false], left: '0' },
  { name: '-1 wraps to 2^64-1', words: '--quota -1', lens: [100], matched: [true], left: '18446744073709551515' },
  { name: 'grow wraps at 2^64', words: '--quota 18446744073709551615 --grow --packets', lens: [40], matched: [true], left: '0' },
];

for (const row of QUOTA_ROWS) {
  test(`quota2 ${row.name}`, (t) => {
    const h = new XtHarness();
    const family = row.family ?? 4;
    const place = { family, chain: 'FORWARD' } as const;
    const params = h.parse(quota2, row.words, place);
    const m = h.check(quota2, params, place);
    const got = row.lens.map((len) => m.match(h.packet(family === 4 ? u4('10.0.0.1', '10.0.0.2', len) : u6('2001:db8::1', '2001:db8::2', len), { hook: 2 })));
    t.deepEqual(got, row.matched);
    t.regex(quota2.save(params), new RegExp(` --quota ${row.left} $`));
  });
}

test('quota2 named: shared by name across families, proc read/write as /proc/net/xt_quota (v3)', (t) => {
  const h = new XtHarness();
  const m4 = h.match(quota2, '--name shared --quota 1000', { chain: 'FORWARD' });
  const m6 = h.match(quota2, '--name shared --quota 5', { family: 6, chain: 'FORWARD' });
  m4.match(h.packet(u4('10.0.0.1', '10.0.0.2', 100), { hook: 2 }));
  m6.match(h.packet(u6('2001:db8::1', '2001:db8::2', 100), { hook: 2 }));
  const path = 'net/xt_quota/shared';
  t.is(h.readProc(path), '800\n');
  const writes: [string, string][] = [
    ['5000\n', '5000'],
    ['+100\n', '5100'],
    ['-100\n', '5000'],
    ['-6000\n', '0'],
    ['+-5\n', '0'],
    ['0x10\n', '16'],
    ['010\n', '8'],
    ['--5\n', '13'],
    ['+-5\n', '8'],
    ['garbage\n', '0'],
    ['12abc\n', '12'],
    // Only 22 characters count; the kernel's strtoull wraps silently.
    ['1234567890123456789012345\n', String(BigInt.asUintN(64, 1234567890123456789012n))],
  ];
  for (const [data, want] of writes) {
    h.writeProc(path, data);
    t.is(h.readProc(path), `${want}\n`, JSON.stringify(data));
  }
  // Writing a new value re-enables a depleted countdown at once.
  h.writeProc(path, '0\n');
  t.false(m4.match(h.packet(u4('10.0.0.1', '10.0.0.2', 40), { hook: 2 })));
  h.writeProc(path, '40\n');
  t.true(m4.match(h.packet(u4('10.0.0.1', '10.0.0.2', 40), { hook: 2 })));
  t.is(h.readProc(path), '0\n');
  // The counter goes with its last rule.
  h.destroyAll();
  t.throws(() => h.readProc(path));
});

test('quota2 names: 14 bytes kept (longer names share a counter), "." and "/" refused by the kernel check, none = anonymous', (t) => {
  const h = new XtHarness();
  const place = { chain: 'FORWARD' } as const;
  const a = h.parse(quota2, '--name abcdefghijklmnXX --quota 10', place);
  t.is(a.name, 'abcdefghijklmn');
  h.check(quota2, a, place);
  h.match(quota2, '--name abcdefghijklmnYY --quota 99', place);
  t.is(h.readProc('net/xt_quota/abcdefghijklmn'), '10\n');
  t.throws(() => h.match(quota2, '--name .hidden', place), { message: 'xt_quota.3: illegal name' });
  t.throws(() => h.match(quota2, '--name a/b', place), { message: 'xt_quota.3: illegal name' });
  h.match(quota2, '--quota 5', place);
  h.match(quota2, ['--name', '', '--quota', '5'], place);
  t.deepEqual(h.proc.paths().sort(), ['net/xt_quota/abcdefghijklmn']);
});

test('quota2 option errors and save text in libxt_quota2 words', (t) => {
  const h = new XtHarness();
  const errors: [string, string][] = [
    ['--name a --name b', 'quota: "--name" option may only be specified once'],
    ['--quota 1 --quota 2', 'quota: "--quota" option may only be specified once'],
    ['--grow --grow', 'quota: "--grow" option may only be specified once'],
    ['--packets --packets', 'quota: "--packets" option may only be specified once'],
    ['--no-change --no-change', 'quota: "--no-change" option may only be specified once'],
    ['! --name a', 'quota: "--name" option cannot be inverted'],
    ['! --grow', 'quota: "--grow" option cannot be inverted'],
    ['--quota 1x', 'quota match: invalid value for --quota'],
    ['--quota 0x', 'quota match: invalid value for --quota'],
    ['--quota 08', 'quota match: invalid value for --quota'],
  ];
  for (const [words, msg] of errors) t.throws(() => h.parse(quota2, words), { message: msg }, words);
  const saves: [string, string][] = [
    ['', ' --quota 0 '],
    ['--quota 99999999999999999999999', ' --quota 18446744073709551615 '],
    ['--name abc --quota 1000', ' --name abc  --quota 1000 '],
    ['--packets --no-change --grow ! --quota 5 --name abc', ' --grow  --no-change  --packets  --name abc  ! --quota 5 '],
  ];
  for (const [words, save] of saves) t.is(quota2.save(h.parse(quota2, words)), save, words);
  t.is(quota2.save(h.parse(quota2, ['--quota', ''])), ' --quota 0 ', 'empty --quota');
  t.is(quota2.print!(h.parse(quota2, '--name abc --quota 1000')), ' -m quota --name abc  --quota 1000 ');
});

// ---------------------------------------------------------------------------
// condition

test('condition: 0 at creation, flipped by the first byte of a proc write, shared by name across families, inverted', (t) => {
  const h = new XtHarness();
  const on = h.match(condition, '--condition gate', { chain: 'FORWARD' });
  const off = h.match(condition, '! --condition gate', { family: 6, chain: 'FORWARD' });
  const p4 = h.packet(u4('10.0.0.1', '10.0.0.2'), { hook: 2 });
  const p6 = h.packet(u6('2001:db8::1', '2001:db8::2'), { hook: 2 });
  const path = 'net/nf_condition/gate';
  const rows: [string | null, string, boolean][] = [
    [null, '0\n', false],
    ['1\n', '1\n', true],
    ['true\n', '1\n', true],
    ['0abc', '0\n', false],
    ['1abc', '1\n', true],
    ['', '1\n', true],
    ['x', '1\n', true],
    ['0', '0\n', false],
  ];
  for (const [write, read, matches] of rows) {
    if (write !== null) h.writeProc(path, write);
    t.is(h.readProc(path), read, String(write));
    t.is(on.match(p4), matches);
    t.is(off.match(p6), !matches);
  }
  h.destroyAll();
  t.deepEqual(h.proc.paths(), []);
});

test('condition option errors, kernel refusals and save text', (t) => {
  const h = new XtHarness();
  const errors: [string, string][] = [
    ['', 'Condition match: must specify --condition'],
    ['--condition a --condition b', "Can't specify multiple conditions"],
    ['--condition abcdefghijklmnopqrstuvwxyz12345', 'File name too long'],
  ];
  for (const [words, msg] of errors) t.throws(() => h.parse(condition, words), { message: msg }, words);
  t.is(h.parse(condition, '--condition abcdefghijklmnopqrstuvwxyz1234').name.length, 30);
  for (const bad of ['', '.', '..', 'a/b']) {
    t.throws(() => h.match(condition, ['--condition', bad]), { message: `xt_condition: name not allowed or too long: "${bad}"` }, bad);
  }
  t.notThrows(() => h.match(condition, '--condition .dot'));
  t.is(condition.save(h.parse(condition, '! --condition foo')), ' ! --condition "foo" ');
  t.is(condition.save(h.parse(condition, '--condition foo')), ' --condition "foo" ');
});
