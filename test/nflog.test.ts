/**
 * NFLOG and the packet log without namespaces:
 *  - the target as a table through the harness: XT_CONTINUE, what it hands
 *    services.nflog (group, prefix, bytes cut by --nflog-size, the original
 *    length), --nflog-range and --nflog-threshold changing nothing;
 *  - the router's services: nothing built without a listener, a record per
 *    packet for a group's listeners, `nflog.packet` events for `xtr events`;
 *  - the capture formats against the real readers: `xtr nflog` (the CLI, over
 *    a control socket) writes pcap (LINKTYPE_NFLOG / RAW) and pcapng that
 *    tcpdump and tshark decode, with the prefix as nflog.prefix and as the
 *    pcapng packet comment; bad arguments exit 2.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import NFLOG from '../modules/NFLOG.js';
import { XT_CONTINUE } from '../xt/extension.js';
import { HOOK_NAMES, Hook } from '../xt/packet.js';
import { ControlServer } from '../router/control.js';
import { Services } from '../router/services.js';
import { nflogStream, type PacketLogRecord } from '../router/packet-log.js';
import { parseNflogArgs } from '../router/nflog-cli.js';
import { LINKTYPE_NFLOG, LINKTYPE_RAW, nflogMessage } from '../dataplane/pcap.js';
import { XtHarness } from './helpers/xt-harness.js';
import { icmpMsg, ip4, ip6, tcpSeg, udpDgram } from './modules-fixtures.js';
import { background, exec, REPO_ROOT, sleep, waitFor } from './helpers/netns.js';

const ECHO = ip4('198.51.100.2', '203.0.113.2', icmpMsg(8, 0, [0x12, 0x34, 0, 1], Array.from({ length: 56 }, (_, i) => i)));
const SYN = ip4('198.51.100.2', '203.0.113.2', tcpSeg(40000, 8080, 0x02, { seq: 1000, win: 64240 }));
const UDP6 = ip6('2001:db8:c::2', '2001:db8:5::2', udpDgram(5353, 53, [1, 2, 3, 4, 5, 6, 7, 8]), {});

interface Row {
  name: string;
  words: string;
  packet: Buffer;
  family?: 4 | 6;
  hook?: 'INPUT' | 'FORWARD' | 'OUTPUT' | 'PREROUTING' | 'POSTROUTING';
  group: number;
  prefix: string;
  /** Bytes of the packet handed over. */
  caplen: number;
}

const ROWS: Row[] = [
  { name: 'defaults: group 0, no prefix, the whole packet', words: '', packet: ECHO, group: 0, prefix: '', caplen: ECHO.length },
  { name: 'group and prefix', words: '--nflog-group 5 --nflog-prefix "ping "', packet: ECHO, hook: 'FORWARD', group: 5, prefix: 'ping ', caplen: ECHO.length },
  { name: '--nflog-size cuts the copy, the length stays', words: '--nflog-group 5 --nflog-size 28', packet: ECHO, group: 5, prefix: '', caplen: 28 },
  { name: '--nflog-size 0 copies nothing', words: '--nflog-size 0', packet: SYN, group: 0, prefix: '', caplen: 0 },
  { name: '--nflog-size larger than the packet: all of it', words: '--nflog-size 65535', packet: SYN, group: 0, prefix: '', caplen: SYN.length },
  { name: '--nflog-range never limited anything', words: '--nflog-range 20', packet: SYN, group: 0, prefix: '', caplen: SYN.length },
  { name: '--nflog-threshold only batches in the kernel', words: '--nflog-group 9 --nflog-threshold 10', packet: SYN, hook: 'OUTPUT', group: 9, prefix: '', caplen: SYN.length },
  { name: 'a 63-byte cut of a long prefix', words: `--nflog-prefix ${'p'.repeat(80)}`, packet: SYN, group: 0, prefix: 'p'.repeat(63), caplen: SYN.length },
  { name: 'IPv6', words: '--nflog-group 65535 --nflog-prefix v6', packet: UDP6, family: 6, hook: 'POSTROUTING', group: 65535, prefix: 'v6', caplen: UDP6.length },
];

for (const row of ROWS) {
  test(`NFLOG target: ${row.name}`, (t) => {
    const h = new XtHarness();
    const place = { family: row.family ?? 4, chain: row.hook ?? 'INPUT', table: row.hook === 'PREROUTING' || row.hook === 'POSTROUTING' ? ('mangle' as const) : ('filter' as const) };
    const before = Buffer.from(row.packet);
    t.is(h.verdict(NFLOG, row.words, row.packet, place), XT_CONTINUE);
    t.is(h.services.nflogged.length, 1);
    const call = h.services.nflogged[0]!;
    t.is(call.group, row.group);
    t.is(call.prefix, row.prefix);
    t.is(call.length, row.packet.length);
    t.deepEqual(call.bytes, row.packet.subarray(0, row.caplen));
    t.is(call.hook, HOOK_NAMES.indexOf(row.hook ?? 'INPUT'));
    t.deepEqual(row.packet, before, 'the packet is not changed');
  });
}

test('Services.nflog: no listener, nothing built; a listener of the group gets a record; events subscribers an nflog.packet line', (t) => {
  const s = new Services({ injectLocal() {} }, { info() {} } as never);
  const h = new XtHarness();
  const inst = NFLOG.check(h.parse(NFLOG, '--nflog-group 5 --nflog-prefix "syn 8080" --nflog-size 40'), { ...h.env({ chain: 'FORWARD' }), services: s });
  const pkt = () => h.packet(SYN, { hook: Hook.FORWARD, inIf: 'eth0', outIf: 'eth1' });
  t.is(inst.target(pkt()), XT_CONTINUE);
  t.is(s.packetLog.delivered, 0);
  const got: PacketLogRecord[] = [];
  const other: PacketLogRecord[] = [];
  const off = s.packetLog.subscribe(5, (r) => got.push(r));
  s.packetLog.subscribe(6, (r) => other.push(r));
  const events: unknown[] = [];
  s.events.subscribe((e) => events.push(e));
  inst.target(pkt());
  t.is(got.length, 1);
  t.is(other.length, 0);
  const r = got[0]!;
  t.like(r, { group: 5, prefix: 'syn 8080', family: 4, hook: Hook.FORWARD, inName: 'eth0', outName: 'eth1', inIndex: 1, outIndex: 2, length: SYN.length });
  t.deepEqual(Buffer.from(r.data), SYN.subarray(0, 40));
  t.is(r.summary, `TCP 198.51.100.2:40000 > 203.0.113.2:8080 [S] len ${SYN.length}`);
  t.like(events[0], { kind: 'nflog.packet', fields: { group: 5, prefix: 'syn 8080', hook: 'FORWARD', in: 'eth0', out: 'eth1', len: SYN.length, caplen: 40 } });
  off();
  inst.target(pkt());
  t.is(got.length, 1, 'unsubscribed');
});

test('NFLOG message bytes: the kernel layout (header, TLVs in its order, 4-byte padding)', (t) => {
  const m = nflogMessage({ group: 5, prefix: 'hello world', family: 4, hook: 3, inIndex: 0, outIndex: 1, mark: 0, sec: 1, usec: 2, length: 5, data: Uint8Array.of(0x45, 1, 2, 3, 4), hwHeader: null });
  const hex = m.toString('hex');
  // family 2, version 0, group 5 | PACKET_HDR 0800 hook 3 | PREFIX "hello world\0" | OUTDEV 1 | TIMESTAMP 1 s 2 us | PAYLOAD 5 bytes + 3 pad
  t.is(
    hex,
    '02000005' + '08000100' + '08000300' + '10000a00' + Buffer.from('hello world\0').toString('hex') + '08000500' + '00000001' +
      '14000300' + '0000000000000001' + '0000000000000002' + '09000900' + '4501020304' + '000000',
  );
});

test('xtr nflog arguments', (t) => {
  t.like(parseNflogArgs(['-g', '5', '-w', 'x.pcap']), { groups: [5], file: 'x.pcap', pcapng: false, linktype: LINKTYPE_NFLOG });
  t.like(parseNflogArgs(['-w', 'x.pcapng', '-y', 'raw', '-c', '3']), { groups: [0], pcapng: true, linktype: LINKTYPE_RAW, count: 3 });
  t.is(parseNflogArgs(['-g', '65536']), '-g 65536: a group is 0-65535');
  t.is(parseNflogArgs(['-c', '0']), '-c 0: a positive count');
  t.is(parseNflogArgs(['-y', 'EN10MB']), '-y EN10MB: link type NFLOG or RAW');
  t.is(parseNflogArgs(['-w']), 'option -w needs a value');
  t.is(parseNflogArgs(['--bogus']), 'unknown argument "--bogus"');
  t.is(parseNflogArgs(['--help']), 'help');
});

const haveTools = spawnSync('tcpdump', ['--version']).status === 0 && spawnSync('tshark', ['--version']).status === 0;

const xtrCli = (socket: string, args: string[]) => exec([process.execPath, '--import', 'tsx', join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', socket, 'nflog', ...args], { timeoutMs: 30_000 });

async function withRouterSide(fn: (x: { socket: string; dir: string; s: Services; log: (words: string, bytes: Buffer, hook?: Hook) => void }) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ye-nflog-'));
  const socket = join(dir, 'xtr.sock');
  const c = new ControlServer(socket, { info() {}, warn() {}, error() {} });
  const s = new Services({ injectLocal() {} }, { info() {} } as never);
  c.registerStream('nflog', nflogStream(s.packetLog));
  await c.listen();
  const h = new XtHarness();
  const log = (words: string, bytes: Buffer, hook = Hook.FORWARD) => {
    NFLOG.check(h.parse(NFLOG, words), { ...h.env({ chain: 'FORWARD' }), services: s }).target(h.packet(bytes, { hook, inIf: 'eth0', outIf: 'eth1' }));
  };
  try {
    await fn({ socket, dir, s, log });
  } finally {
    await c.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test.serial('the nflog stream request: bad arguments get one usage answer (status 2), good ones a subscribed line', async (t) => {
  await withRouterSide(async ({ socket, s }) => {
    const ask = (args: string[]) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        const sock = net.connect(socket);
        let buf = '';
        sock.on('connect', () => sock.write(JSON.stringify({ cmd: 'nflog', args }) + '\n'));
        sock.on('data', (d) => {
          buf += d.toString();
          const nl = buf.indexOf('\n');
          if (nl >= 0) {
            sock.destroy();
            resolve(JSON.parse(buf.slice(0, nl)));
          }
        });
        sock.on('error', reject);
      });
    for (const args of [['-g', 'x'], ['-g', '65536'], ['-g'], ['--bogus']]) {
      const r = await ask(args);
      t.is(r.status, 2, args.join(' '));
      t.regex(String(r.stderr), /^xtr nflog: (bad group|unknown argument) .*usage: xtr nflog/, args.join(' '));
    }
    t.deepEqual(await ask(['-g', '5', '--group', '7', '-g', '5']), { kind: 'nflog.subscribed', groups: [5, 7] });
    t.deepEqual(await ask([]), { kind: 'nflog.subscribed', groups: [0] });
    t.true(await waitFor(() => !s.packetLog.wanted(5) && !s.packetLog.wanted(0), 5000), 'closed streams unsubscribe');
  });
});

const run = (argv: string[]) => spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });

if (!haveTools) {
  test('xtr nflog files read by tcpdump and tshark', (t) => t.pass('skipped: tcpdump or tshark missing'));
} else {
  for (const [label, extra, file] of [
    ['pcap, link type NFLOG', [], 'cap.pcap'],
    ['pcapng, link type NFLOG', [], 'cap.pcapng'],
    ['pcap, link type RAW', ['-y', 'RAW'], 'raw.pcap'],
    ['pcapng, link type RAW', ['-y', 'RAW', '--pcapng'], 'raw.out'],
  ] as const) {
    test.serial(`xtr nflog -w (${label}): tcpdump sees exactly the logged packets, tshark their prefixes`, async (t) => {
      await withRouterSide(async ({ socket, dir, s, log }) => {
        const path = join(dir, file);
        const cli = xtrCli(socket, ['-g', '5', '-w', path, '-c', '3', ...extra]);
        t.true(await waitFor(() => s.packetLog.wanted(5), 15_000), 'the CLI subscribed');
        log('--nflog-group 6 --nflog-prefix other', ECHO);
        log('--nflog-group 5 --nflog-prefix "ping "', ECHO);
        log('--nflog-group 5 --nflog-prefix "syn 8080"', SYN);
        log('--nflog-group 5 --nflog-size 20', SYN);
        log('--nflog-group 5 --nflog-prefix late', SYN);
        const r = await cli;
        t.is(r.code, 0, r.stderr);
        t.regex(r.stderr, /listening on nflog:5, link-type (NFLOG|RAW)/);
        t.regex(r.stderr, /^3 packets captured$/m);
        const td = run(['tcpdump', '-n', '-r', path]);
        t.is(td.status, 0, td.stderr);
        const lines = td.stdout.trim().split('\n').map((l) => l.replace(/^\S+ /, ''));
        t.is(lines.length, 3, td.stdout);
        t.regex(lines[0]!, /IP 198\.51\.100\.2 > 203\.0\.113\.2: ICMP echo request, id 4660, seq 1, length 64/);
        t.regex(lines[1]!, /IP 198\.51\.100\.2\.40000 > 203\.0\.113\.2\.8080: Flags \[S\]/);
        // RAW: caplen 20 of 40; NFLOG: the payload TLV holds 20 of the IP header's 40 (tcpdump says so).
        t.regex(lines[2]!, /^IP (truncated-ip - 20 bytes missing! )?198\.51\.100\.2 > 203\.0\.113\.2: \[\|tcp\]$/, 'the packet cut to its IP header');
        const nflog = extra.length === 0;
        const pcapng = file !== 'cap.pcap' && file !== 'raw.pcap';
        const fields = ['-e', 'ip.src', '-e', 'frame.len', '-e', 'frame.cap_len', ...(nflog ? ['-e', 'nflog.prefix', '-e', 'nflog.res_id'] : []), ...(pcapng ? ['-e', 'frame.comment'] : [])];
        const ts = run(['tshark', '-r', path, '-T', 'fields', '-E', 'separator=|', ...fields]);
        t.is(ts.status, 0, ts.stderr);
        const rows = ts.stdout.trim().split('\n');
        const expect = [
          ['198.51.100.2', 'ping ', ECHO.length],
          ['198.51.100.2', 'syn 8080', SYN.length],
          ['198.51.100.2', '', 20],
        ].map(([src, prefix, cap], i) => {
          const lengths = nflog ? [] : [String([ECHO.length, SYN.length, SYN.length][i]), String(cap)];
          const row = [String(src), ...lengths];
          if (nflog) row.push(String(prefix), '5');
          if (pcapng) row.push(String(prefix));
          return row;
        });
        t.deepEqual(
          rows.map((l) => l.split('|').filter((_, k) => nflog ? k !== 1 && k !== 2 : true)),
          expect,
        );
      });
    });
  }

  test.serial('xtr nflog -w - into tcpdump -r -: a pipe fuller than its buffer waits, nothing is lost', async (t) => {
    await withRouterSide(async ({ socket, s, log }) => {
      const n = 300;
      const big = ip4('198.51.100.2', '203.0.113.2', udpDgram(5000, 6000, Array.from({ length: 1000 }, (_, i) => i & 0xff)));
      const xtr = [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', socket, 'nflog', '-g', '5', '-w', '-', '-c', String(n)];
      const pipeline = exec(['bash', '-c', `${xtr.map((w) => `'${w}'`).join(' ')} | tcpdump -n -r - 2>/dev/null | grep -c 'UDP, length 1000'`], { timeoutMs: 60_000 });
      t.true(await waitFor(() => s.packetLog.wanted(5), 15_000));
      for (let i = 0; i < n; i++) log('--nflog-group 5 --nflog-prefix bulk', big);
      const r = await pipeline;
      t.is(r.stdout.trim(), String(n), r.stderr);
    });
  });

  test.serial('xtr nflog ends on SIGINT with a complete file and status 0', async (t) => {
    await withRouterSide(async ({ socket, dir, s, log }) => {
      const path = join(dir, 'int.pcap');
      const cli = background([process.execPath, '--import', 'tsx', join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', socket, 'nflog', '-g', '5', '-w', path]);
      try {
        t.true(await waitFor(() => s.packetLog.wanted(5), 15_000));
        log('--nflog-group 5 --nflog-prefix one', ECHO);
        log('--nflog-group 5 --nflog-prefix two', SYN);
        t.true(await waitFor(() => /listening/.test(cli.stderr()), 5000));
        await sleep(300);
        cli.proc.kill('SIGINT');
        t.is(await cli.wait(10_000), 0);
        t.regex(cli.stderr(), /^2 packets captured$/m);
        const ts = run(['tshark', '-r', path, '-T', 'fields', '-e', 'nflog.prefix']);
        t.deepEqual(ts.stdout.trim().split('\n'), ['one', 'two']);
        t.false(s.packetLog.wanted(5), 'unsubscribed when the CLI went away');
      } finally {
        await cli.kill('SIGKILL');
      }
    });
  });

  test.serial('xtr nflog without -w prints text lines; bad arguments exit 2; a stopped router exits 1', async (t) => {
    await withRouterSide(async ({ socket, s, log }) => {
      const cli = xtrCli(socket, ['-g', '7', '-c', '1']);
      t.true(await waitFor(() => s.packetLog.wanted(7), 15_000));
      log('--nflog-group 7 --nflog-prefix "text "', UDP6 as Buffer, Hook.OUTPUT);
      const r = await cli;
      t.is(r.code, 0, r.stderr);
      t.regex(r.stdout, /^\d\d:\d\d:\d\d\.\d{6} group 7 OUTPUT IN=eth0 OUT=eth1 prefix "text " UDP \[2001:db8:c::2\]:5353 > \[2001:db8:5::2\]:53 len 56\n$/);
      const bad = await xtrCli(socket, ['-g', 'x']);
      t.is(bad.code, 2);
      t.regex(bad.stderr, /xtr nflog: -g x: a group is 0-65535/);
      const help = await xtrCli(socket, ['--help']);
      t.is(help.code, 0);
      t.regex(help.stdout, /^usage: xtr nflog/);
    });
    const gone = await xtrCli(join(tmpdir(), 'ye-no-such.sock'), ['-g', '1']);
    t.is(gone.code, 1);
    t.regex(gone.stderr, /router is not running/);
  });
}
