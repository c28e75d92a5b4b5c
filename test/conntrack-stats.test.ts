/**
 * Issue 12 §3: `xtr conntrack -S` in conntrack-tools 1.4.7's format (checked
 * against `conntrack -S` in a kernel namespace when the tool is there), what
 * each counter counts, the table's size and hash from the config
 * (`netfilter.conntrack.max` / `buckets`, refused with clear errors), and
 * the table in `xtr status`.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { Verdict, type PacketContext } from '../xt/packet.js';
import { Hook } from '../xt/packet.js';
import { NatRangeFlag, NatSide, newNatRange } from '../xt/nat.js';
import { Conntrack, conntrackCommands, conntrackReport, conntrackStatusLines, statsLine } from '../router/conntrack.js';
import { NatCore } from '../router/conntrack/nat-core.js';
import { parseConfigText } from '../router/config.js';
import { formatStatus, type StatusSnapshot } from '../router/control.js';
import { createNamespace, deleteNamespace, uniquePrefix } from './helpers/netns.js';
import { ctxOf, ip4, tcpSeg, udpDgram } from './modules-fixtures.js';

const SYN = 0x02;
const ACK = 0x10;

function pass(ct: Conntrack, bytes: Buffer, now: number): PacketContext {
  const p = ctxOf(bytes, now);
  if (ct.in(p) === Verdict.ACCEPT) ct.confirm(p);
  return p;
}

/** `conntrack -S`'s line as key order and shape: "cpu=N<spaces>\tk=v k=v ... \n" -> [k...]. */
function statKeys(line: string): string[] {
  const m = /^cpu=(\d+) *\t(.*) \n?$/.exec(line);
  if (!m) throw new Error(`not a conntrack -S line: ${JSON.stringify(line)}`);
  return m[2].split(' ').map((kv) => kv.split('=')[0]);
}

test('conntrack -S: the line of conntrack-tools 1.4.7 (cpu=%-4u, tab, the kernel counters in order, trailing space)', (t) => {
  const ct = new Conntrack({ max: 8 });
  const line = statsLine(ct);
  t.is(line, 'cpu=0   \tfound=0 invalid=0 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 search_restart=0 clash_resolve=0 chaintoolong=0 \n');
  const r = conntrackCommands(ct, () => 0).conntrack(['-S'], null) as { status: number; stdout: string };
  t.is(r.status, 0);
  t.is(r.stdout, line);
  t.is((conntrackCommands(ct, () => 0).conntrack(['--stats'], null) as { stdout: string }).stdout, line);
});

test('conntrack -S: same keys in the same order as the kernel\'s conntrack -S on this machine', async (t) => {
  if (spawnSync('conntrack', ['--version']).status !== 0) {
    t.pass('conntrack(8) not installed: format checked against the recorded line only');
    return;
  }
  const ns = `${uniquePrefix('ya')}ct`;
  try {
    await createNamespace(ns);
    const r = spawnSync('ip', ['netns', 'exec', ns, 'conntrack', '-S'], { encoding: 'utf8', timeout: 10_000 });
    t.is(r.status, 0, r.stderr);
    const kernelLines = r.stdout.split('\n').filter((l) => l !== '');
    t.true(kernelLines.length >= 1);
    t.deepEqual(statKeys(statsLine(new Conntrack())), statKeys(kernelLines[0] + '\n'));
    // The per-CPU prefix as conntrack-tools prints it: "cpu=%-4u\t".
    t.is(kernelLines[0].slice(0, 8), 'cpu=0   ');
    t.is(kernelLines[0][8], '\t');
  } finally {
    await deleteNamespace(ns);
  }
});

test('the counters: found, insert, invalid, error, early_drop, drop, insert_failed, clash_resolve', (t) => {
  const ct = new Conntrack({ max: 2 });
  const A = '10.0.0.1';
  const B = '10.0.0.2';
  pass(ct, ip4(A, B, tcpSeg(1000, 80, SYN)), 0);
  pass(ct, ip4(B, A, tcpSeg(80, 1000, SYN | ACK, { seq: 5000, ack: 1001 })), 1);
  pass(ct, ip4(A, B, tcpSeg(1000, 80, ACK, { seq: 1001, ack: 5001 })), 2); // ASSURED now
  t.is(ct.inserted, 1);
  t.is(ct.found, 2);
  // A lone RST opens nothing: INVALID; SYN+FIN is a flag combination tcp_error refuses: an error (and INVALID).
  pass(ct, ip4(A, B, tcpSeg(1001, 80, 0x04)), 3);
  t.is(ct.invalid, 1);
  t.is(ct.errors, 0);
  pass(ct, ip4(A, B, tcpSeg(1002, 80, SYN | 0x01)), 3);
  t.is(ct.errors, 1);
  t.is(ct.invalid, 2);
  // Fill: one more unassured flow fits; the next pushes it out (early_drop); with only assured
  // flows left a new flow is refused (drop).
  pass(ct, ip4(A, B, udpDgram(2000, 53)), 4);
  t.is(ct.count(4), 2);
  pass(ct, ip4(A, B, udpDgram(2001, 53)), 5);
  t.is(ct.earlyDrops, 1);
  pass(ct, ip4(B, A, udpDgram(53, 2001)), 6);
  pass(ct, ip4(A, B, udpDgram(2001, 53)), 2500); // a reply and still active after 2 s: assured
  const refused = ctxOf(ip4(A, B, udpDgram(2002, 53)), 2600);
  t.is(ct.in(refused), Verdict.DROP);
  t.is(ct.tableFullDrops, 1);
  // Two packets of one new flow both unconfirmed: the second confirm joins the first's entry.
  const big = new Conntrack();
  const p1 = ctxOf(ip4(A, B, udpDgram(7000, 53)), 0);
  const p2 = ctxOf(ip4(A, B, udpDgram(7000, 53)), 0);
  big.in(p1);
  big.in(p2);
  big.confirm(p1);
  big.confirm(p2);
  t.is(big.clashResolved, 1);
  t.is(p2.ct, p1.ct);
  // insert_failed: two unconfirmed flows SNATed onto the same tuple (the last candidate of an exhausted range).
  const n = new Conntrack();
  const core = new NatCore(n, () => 0);
  n.setNatHook(core);
  const r = newNatRange();
  r.flags = NatRangeFlag.MAP_IPS | NatRangeFlag.PROTO_SPECIFIED;
  r.minAddr[0] = r.maxAddr[0] = 0xc0000201;
  r.minPort = r.maxPort = 5000;
  const flows = [ctxOf(ip4('10.0.0.5', B, udpDgram(1, 53)), 0), ctxOf(ip4('10.0.0.6', B, udpDgram(1, 53)), 0)];
  for (const p of flows) {
    n.in(p);
    p.hook = Hook.POSTROUTING;
    core.setup(p, NatSide.SRC, r);
    n.nat(Hook.POSTROUTING, p);
  }
  t.is(n.confirm(flows[0]), Verdict.ACCEPT);
  t.is(n.confirm(flows[1]), Verdict.DROP);
  t.is(n.insertFailed, 1);
  t.regex(statsLine(n), / insert_failed=1 drop=1 /);
  t.regex(statsLine(ct), /^cpu=0   \tfound=\d+ invalid=2 insert=\d+ insert_failed=0 drop=1 early_drop=1 error=1 /);
});

test('netfilter.conntrack: max and buckets size the table; bad values are refused naming the key', (t) => {
  const base = 'interfaces:\n  - name: a\n    addresses: [10.0.0.1/24]\n';
  const cfg = parseConfigText(`${base}netfilter:\n  conntrack:\n    max: 1000\n    buckets: 300\n`);
  const ct = new Conntrack(cfg.netfilter.conntrack as object);
  t.is(ct.max, 1000);
  t.is(ct.buckets, 512, 'rounded up to a power of two');
  t.is(new Conntrack().max, 65536);
  t.is(new Conntrack().buckets, 16384, 'default: max / 4');
  const bad: [string, RegExp][] = [
    ['max: 0', /netfilter\.conntrack\.max.*0 must be an integer from 1 to 4194304/],
    ['max: 1.5', /netfilter\.conntrack\.max/],
    ['max: "lots"', /netfilter\.conntrack\.max/],
    ['max: 99999999', /netfilter\.conntrack\.max.*4194304/],
    ['buckets: -1', /netfilter\.conntrack\.buckets/],
    ['hashsize: 10', /netfilter\.conntrack\.hashsize.*unknown key \(allowed: max, buckets, timeouts\)/],
    ['timeouts: {udp: 0}', /netfilter\.conntrack\.timeouts\.udp/],
    ['timeouts: {tcp: [1, 2]}', /netfilter\.conntrack\.timeouts\.tcp.*expected 10/],
    ['timeouts: {sctp: 5}', /netfilter\.conntrack\.timeouts\.sctp.*unknown key/],
  ];
  for (const [line, re] of bad) {
    const e = t.throws(() => parseConfigText(`${base}netfilter:\n  conntrack:\n    ${line}\n`), undefined, line);
    t.regex(e!.message, re, line);
  }
  const timeouts = parseConfigText(`${base}netfilter:\n  conntrack:\n    timeouts: {udp: 5}\n`);
  const u = new Conntrack(timeouts.netfilter.conntrack as object);
  const p = pass(u, ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2)), 0);
  t.is(p.ct!.remaining(0), 5);
});

test('xtr status shows the table: entries against max, buckets, memory and the -S counters', (t) => {
  const ct = new Conntrack({ max: 100, buckets: 64 });
  pass(ct, ip4('10.0.0.1', '10.0.0.2', udpDgram(1, 2)), 0);
  const report = conntrackReport(ct);
  t.like(report, { count: 1, max: 100, buckets: 64, insert: 1, drop: 0, earlyDrop: 0, insertFailed: 0 });
  t.true(report.memoryBytes > 0 && report.memoryBytes === ct.bytes());
  const lines = conntrackStatusLines(report);
  t.regex(lines[0], /^conntrack: 1\/100 entries \(nf_conntrack_max\), 64 buckets, \d+\.\d MiB$/);
  t.regex(lines[1], /early_drop 0 {2}insert_failed 0 {2}drop 0/);
  const snap: StatusSnapshot = { version: 't', pid: 1, uptimeSeconds: 1, interfaces: [], drops: {}, conntrack: report };
  t.true(formatStatus(snap).includes(lines[0]));
});
