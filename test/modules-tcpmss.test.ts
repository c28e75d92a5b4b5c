/**
 * TCPMSS through the real engine: rules as users type them, packets as bytes.
 *
 * The packet table is test/fixtures/tcpmss/cases.json (make-cases.py): each
 * "after" packet is built from scratch by scapy as the kernel's xt_TCPMSS
 * leaves it, so lengths and every checksum are checked by full computation.
 * The option, check and save/print tables hold iptables-legacy 1.8.9's own
 * words and kernel refusals, measured in a namespace on this machine.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { Hook, PacketContext, Verdict, type Family } from '../xt/packet.js';
import { RouteKind } from '../xt/services.js';
import { parsePacket } from '../dataplane/parse.js';
import { iface, testEngine } from '../router/netfilter/testkit.js';
import { XT_CONTINUE } from '../xt/extension.js';
import TCPMSS from '../modules/TCPMSS.js';
import TCP from '../modules/tcp.js';
import { XtHarness } from './helpers/xt-harness.js';
import { ip4, tcpSeg } from './modules-fixtures.js';

interface PacketCase {
  name: string;
  family: Family;
  rule: string;
  hook: 'FORWARD' | 'POSTROUTING' | 'OUTPUT';
  /** prefix -> route MTU (services.route answers). */
  routes: Record<string, number>;
  tailroom: number;
  verdict: 'ACCEPT' | 'DROP';
  before: string;
  after: string;
}

const HOOKS = { FORWARD: Hook.FORWARD, POSTROUTING: Hook.POSTROUTING, OUTPUT: Hook.OUTPUT } as const;

/** A context over the bytes with `tailroom` spare bytes after them, as the router's read slots leave. */
function contextOf(hex: string, tailroom: number): PacketContext {
  const bytes = Buffer.from(hex, 'hex');
  const buf = Buffer.alloc(bytes.length + tailroom, 0xee);
  bytes.copy(buf, 0);
  const ctx = new PacketContext();
  const r = parsePacket(ctx, buf, 0, bytes.length);
  if (r !== 0) throw new Error(`fixture does not parse: ${r}`);
  ctx.tailroom = tailroom;
  ctx.inIf = iface('lan0', 1);
  ctx.outIf = iface('wan0', 2);
  return ctx;
}

const cases = JSON.parse(readFileSync(new URL('./fixtures/tcpmss/cases.json', import.meta.url), 'utf8')) as PacketCase[];

for (const c of cases) {
  test(`packet: ${c.name}`, async (t) => {
    const e = await testEngine();
    const cmd = c.family === 4 ? 'iptables' : 'ip6tables';
    const r = await e.run(`${cmd} ${c.rule}`);
    t.is(r.status, 0, r.stderr);
    for (const [prefix, mtu] of Object.entries(c.routes)) {
      e.services.addRoute(prefix, { kind: RouteKind.UNICAST, oif: null, gateway: null, mtu, hopLimit: 64 });
    }
    const ctx = contextOf(c.before, c.tailroom);
    const verdict = e.nf.hook(HOOKS[c.hook], ctx);
    t.is(verdict, c.verdict === 'ACCEPT' ? Verdict.ACCEPT : Verdict.DROP);
    t.is(ctx.buf.subarray(ctx.l3off, ctx.l3off + ctx.l3len).toString('hex'), c.after);
    // The context follows the bytes: parsing them again gives the same lengths.
    const again = new PacketContext();
    t.is(parsePacket(again, ctx.buf, ctx.l3off, ctx.l3len), 0);
    t.is(again.l4len, ctx.l4len);
    t.is(ctx.tailroom, c.tailroom - (ctx.l3len - c.before.length / 2));
    // The rule counted the packet once whatever it did (the target continues or drops); a non-SYN is not matched.
    const save = await e.run(`${cmd}-save -c -t mangle`);
    const counted = c.name.includes('not matched') ? 0 : 1;
    t.regex(save.stdout, new RegExp(`\\[${counted}:\\d+\\] -A (FORWARD|POSTROUTING) .* -j TCPMSS`));
  });
}

// [command, status, stderr] as iptables-legacy 1.8.9 prints them (with "(legacy)" read "(xtr)").
const R = '-t mangle -A FORWARD -p tcp --tcp-flags SYN,RST SYN -j TCPMSS';
const HINT = "Try `iptables -h' or 'iptables --help' for more information.\n";
const OPTION_ERRORS: [string, number, string][] = [
  [`iptables ${R} --set-mss 65516`, 2, `iptables v1.8.9 (xtr): TCPMSS: bad value for option "--set-mss", or out of range (0-65515).\n\n${HINT}`],
  [`ip6tables ${R} --set-mss 65496`, 2, `ip6tables v1.8.9 (xtr): TCPMSS: bad value for option "--set-mss", or out of range (0-65495).\n\n${HINT.replace(/iptables/g, 'ip6tables')}`],
  [`iptables ${R} --set-mss abc`, 2, `iptables v1.8.9 (xtr): TCPMSS: bad value for option "--set-mss", or out of range (0-65515).\n\n${HINT}`],
  [`iptables ${R} --set-mss -1`, 2, `iptables v1.8.9 (xtr): TCPMSS: bad value for option "--set-mss", or out of range (0-65515).\n\n${HINT}`],
  [`iptables ${R}`, 2, `iptables v1.8.9 (xtr): TCPMSS target: At least one parameter is required\n${HINT}`],
  [`iptables ${R} --set-mss 1 --set-mss 2`, 2, `iptables v1.8.9 (xtr): TCPMSS: option "--set-mss" can only be used once.\n\n${HINT}`],
  [`iptables ${R} --clamp-mss-to-pmtu --clamp-mss-to-pmtu`, 2, `iptables v1.8.9 (xtr): TCPMSS: option "--clamp-mss-to-pmtu" can only be used once.\n\n${HINT}`],
];

for (const [line, status, stderr] of OPTION_ERRORS) {
  test(`option error: ${line.replace(R, '...')}`, async (t) => {
    const e = await testEngine();
    const r = await e.run(line);
    t.is(r.status, status);
    t.is(r.stderr, stderr);
  });
}

// Rules the kernel refuses (EINVAL; dmesg line) and ones it takes, measured with iptables-legacy.
const EINVAL = "Invalid argument. Run `dmesg' for more information.";
const KERNEL_CHECKS: [string, string | null][] = [
  ['-t mangle -A FORWARD -p tcp -j TCPMSS --set-mss 1400', 'xt_TCPMSS: Only works on TCP SYN packets'],
  ['-t mangle -A FORWARD -p tcp ! --syn -j TCPMSS --set-mss 1400', 'xt_TCPMSS: Only works on TCP SYN packets'],
  ['-t mangle -A PREROUTING -p tcp ! --tcp-flags SYN SYN -j TCPMSS --set-mss 1000', 'xt_TCPMSS: Only works on TCP SYN packets'],
  ['-t mangle -A FORWARD -p udp -j TCPMSS --set-mss 1400', 'x_tables: ip_tables: TCPMSS target: only valid for protocol 6'],
  ['-t mangle -A FORWARD -j TCPMSS --set-mss 1400', 'x_tables: ip_tables: TCPMSS target: only valid for protocol 6'],
  ['-t mangle -A FORWARD ! -p tcp -j TCPMSS --set-mss 1000', 'x_tables: ip_tables: TCPMSS target: only valid for protocol 6'],
  ['-t mangle -A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu', 'xt_TCPMSS: path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING hooks'],
  ['-t mangle -A INPUT -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu', 'xt_TCPMSS: path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING hooks'],
  ['-t raw -A PREROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu', 'xt_TCPMSS: path-MTU clamping only supported in FORWARD, OUTPUT and POSTROUTING hooks'],
  ['-t mangle -A FORWARD -p tcp --syn -j TCPMSS --set-mss 1400', null],
  ['-t mangle -A FORWARD -p tcp --tcp-flags SYN SYN,ACK -j TCPMSS --set-mss 1400', null],
  ['-t mangle -A FORWARD -p tcp --tcp-flags ACK SYN -j TCPMSS --set-mss 1400', null],
  ['-t mangle -A FORWARD -p tcp --tcp-flags NONE SYN -j TCPMSS --set-mss 1400', null],
  ['-t mangle -A PREROUTING -p tcp --syn -j TCPMSS --set-mss 1000', null],
  ['-A FORWARD -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu', null],
  ['-t nat -A POSTROUTING -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu', null],
  ['-t mangle -A FORWARD -p tcp -m tcp --dport 80 -m tcp --syn -j TCPMSS --set-mss 1', null],
  ['-t mangle -A FORWARD -p 6 --syn -j TCPMSS --set-mss 1000', null],
];

for (const [rule, dmesg] of KERNEL_CHECKS) {
  test(`kernel check: ${rule}`, async (t) => {
    const e = await testEngine();
    const r = await e.run(`iptables ${rule}`);
    if (dmesg === null) {
      t.is(r.status, 0, r.stderr);
      return;
    }
    t.is(r.status, 1);
    t.is(r.stderr.split('\n')[0], `iptables: ${EINVAL}`);
    t.true(r.stderr.includes(dmesg), r.stderr);
  });
}

test('a chain reached from PREROUTING refuses the clamp when the jump is added', async (t) => {
  const e = await testEngine();
  t.is((await e.run('iptables -t mangle -N clamp')).status, 0);
  t.is((await e.run('iptables -t mangle -A clamp -p tcp --syn -j TCPMSS --clamp-mss-to-pmtu')).status, 0);
  t.is((await e.run('iptables -t mangle -A FORWARD -j clamp')).status, 0);
  const r = await e.run('iptables -t mangle -A PREROUTING -j clamp');
  t.is(r.status, 1);
  t.true(r.stderr.includes('path-MTU clamping only supported'), r.stderr);
});

// iptables-save and -L lines, as iptables-legacy 1.8.9 printed them for the same rules.
const SAVES: [string, string, string, string][] = [
  ['--set-mss 1400', '-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1400', 'tcp flags:0x06/0x02 TCPMSS set 1400', 'tcp flags:SYN,RST/SYN TCPMSS set 1400'],
  ['--set-mss 65515', '-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 65515', 'tcp flags:0x06/0x02 TCPMSS set 65515', 'tcp flags:SYN,RST/SYN TCPMSS set 65515'],
  ['--set-mss 0x500', '-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1280', 'tcp flags:0x06/0x02 TCPMSS set 1280', 'tcp flags:SYN,RST/SYN TCPMSS set 1280'],
  ['--set-mss 010', '-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 8', 'tcp flags:0x06/0x02 TCPMSS set 8', 'tcp flags:SYN,RST/SYN TCPMSS set 8'],
  ['--clamp-mss-to-pmtu --set-mss 1000', '-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --set-mss 1000', 'tcp flags:0x06/0x02 TCPMSS set 1000', 'tcp flags:SYN,RST/SYN TCPMSS set 1000'],
  ['--set-mss 1000 --clamp-mss-to-pmtu', '-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu', 'tcp flags:0x06/0x02 TCPMSS clamp to PMTU', 'tcp flags:SYN,RST/SYN TCPMSS clamp to PMTU'],
];

for (const [opts, saved, listedNumeric, listed] of SAVES) {
  test(`save and list: ${opts}`, async (t) => {
    const e = await testEngine();
    t.is((await e.run(`iptables ${R} ${opts}`)).status, 0);
    const save = (await e.run('iptables-save -t mangle')).stdout;
    t.true(save.split('\n').includes(saved), save);
    const ln = (await e.run('iptables -t mangle -L FORWARD -n')).stdout.split('\n')[2] ?? '';
    t.true(ln.trimEnd().endsWith(listedNumeric), ln);
    const l = (await e.run('iptables -t mangle -L FORWARD')).stdout.split('\n')[2] ?? '';
    t.true(l.trimEnd().endsWith(listed), l);
    // The saved line loads back to the same rule.
    const e2 = await testEngine();
    t.is((await e2.run(`iptables -t mangle ${saved}`)).status, 0);
    t.true((await e2.run('iptables-save -t mangle')).stdout.split('\n').includes(saved));
  });
}

// The same target through the module harness (test/helpers/xt-harness.ts), without an engine: TCPMSS's
// check reads the rule's other matches, so the env the harness builds gets the rule's tcp match added.
test('harness: clamp answers from services.route, the invalid-MTU drop logs at most once a second', async (t) => {
  const h = new XtHarness();
  const place = { table: 'mangle', chain: 'FORWARD', proto: 'tcp' } as const;
  const params = h.parse(TCPMSS, '--clamp-mss-to-pmtu', place);
  const tcp = { ext: { name: 'tcp' }, params: h.parse(TCP, '--syn', place) };
  t.throws(() => TCPMSS.check(params, h.env(place)), { message: 'xt_TCPMSS: Only works on TCP SYN packets' });
  const target = TCPMSS.check(params, { ...h.env(place), ruleMatches: [tcp] });
  h.services.addRoute('0.0.0.0/0', { kind: RouteKind.UNICAST, oif: null, gateway: null, mtu: 1400, hopLimit: 64 });
  h.services.addRoute('10.0.1.0/24', { kind: RouteKind.UNICAST, oif: null, gateway: null, mtu: 40, hopLimit: 64 });
  const syn = (src: string) => h.packet(ip4(src, '192.0.2.1', tcpSeg(1000, 80, 0x02, { options: [2, 4, 5, 0xb4] })), { hook: Hook.FORWARD });
  const ok = syn('10.0.0.2');
  t.is(target.target(ok), XT_CONTINUE);
  t.is(ok.buf.readUInt16BE(ok.l4off + 22), 1360);
  // The route back to 10.0.1.2 has MTU 40: min(1400, 40) <= 40, so the kernel drops and logs (rate-limited).
  for (const now of [1000, 1500, 2100]) {
    h.services.clock = now;
    t.is(target.target(syn('10.0.1.2')), Verdict.DROP);
  }
  t.deepEqual(
    h.services.logged.map((l) => l.line),
    ['xt_TCPMSS: unknown or invalid path-MTU (40)', 'xt_TCPMSS: unknown or invalid path-MTU (40)'],
  );
});
