/**
 * The router's side of RouterServices (router/services.ts, router/forward.ts):
 * emit() with each EmitOptions field, dup() as nf_dup_ipv4/6 (TTL per hook,
 * on-link gateways only, no hooks, never cloned again), icmpError()'s source
 * and flow attachment, and the route()/iface() facts, on the in-memory lab of
 * test/router-packets.ts (eth0 TUN, eth1 TAP, eth2 TUN MTU 1280, a host
 * interface). Hook-level facts come from a recording Netfilter; conntrack
 * state from the real engine and conntrack, read back from rule counters.
 */
import test from 'ava';
import { Conntrack } from '../router/conntrack.js';
import type { Netfilter } from '../router/forward.js';
import { createNetfilter, netfilterCommands } from '../router/netfilter/index.js';
import { splitLine } from '../router/netfilter/commands.js';
import { Hook, HOOK_NAMES, Verdict, type PacketContext } from '../xt/packet.js';
import { RouteKind, type EmitOptions } from '../xt/services.js';
import { ETH1_MAC, SERVER_MAC, arp, eth, get16, ip4, ip6, ipv4HeaderOk, macAt, makeLab, ndp, udp4, udp6, type Lab } from './router-packets.js';

/** Resolves the server on eth1 (TAP) the normal way, so sending there needs no resolution afterwards. */
function learnServer(lab: Lab): void {
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '203.0.113.2' }));
  lab.eth0.inject(udp6({ src: '2001:db8:c::2', dst: '2001:db8:5::2' }));
  lab.pump();
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x0806, arp(2, SERVER_MAC, '203.0.113.2', ETH1_MAC, '203.0.113.1')));
  lab.eth1.inject(eth(ETH1_MAC, SERVER_MAC, 0x86dd, ndp(136, '2001:db8:5::2', '2001:db8:5::1', '2001:db8:5::2', SERVER_MAC, 0x60)));
  lab.pump();
  lab.eth1.takeSent();
}

function words4(a: string): Uint32Array {
  return Uint32Array.of(ip4(a));
}

/** What a hook saw of a packet. */
interface Seen {
  hook: string;
  out: string | null;
  mark: number;
  notrack: boolean;
  ttl: number;
}

/**
 * A Netfilter that accepts everything, records what each hook saw of
 * packets to `dport`, and calls `onHook` (which may use the services).
 */
function recordingLab(dport: number, onHook: (lab: Lab, hook: Hook, ctx: PacketContext) => void = () => undefined) {
  const seen: Seen[] = [];
  let lab: Lab | null = null;
  const nf: Netfilter = {
    hook(hook, ctx) {
      if (ctx.dport === dport) seen.push({ hook: HOOK_NAMES[hook], out: ctx.outIf?.name ?? null, mark: ctx.mark, notrack: ctx.notrack, ttl: ctx.ttl });
      onHook(lab!, hook, ctx);
      return Verdict.ACCEPT;
    },
  };
  lab = makeLab({ netfilter: nf });
  return { lab, seen };
}

/** The real engine and conntrack behind a wrapper that calls `onHook` after each accepted hook. */
async function engineLab(rules: string[], onHook: (lab: Lab, hook: Hook, ctx: PacketContext) => number | void = () => undefined) {
  const lab = makeLab();
  const conntrack = new Conntrack({ max: 1024 });
  const nf = await createNetfilter({ services: lab.router.services, conntrack });
  const wrapped: Netfilter = {
    hook(hook, ctx) {
      const v = nf.hook(hook, ctx);
      if (v !== Verdict.ACCEPT) return v;
      return onHook(lab, hook, ctx) ?? v;
    },
    conntrackInUse: (f) => nf.conntrackInUse?.(f) ?? false,
  };
  lab.router.setNetfilter(wrapped);
  const commands = netfilterCommands(nf);
  const run = async (line: string) => {
    const w = splitLine(line, 0);
    const r = await commands[w[0]](w.slice(1), null);
    if (r.status !== 0) throw new Error(`${line}: ${r.stderr}`);
    return r.stdout;
  };
  for (const line of rules) await run(line);
  /** Packet counters of the table's rules, in order. */
  const counts = async (table: string) =>
    (await run(`iptables-save -c -t ${table}`))
      .split('\n')
      .filter((l) => l.startsWith('['))
      .map((l) => Number(l.slice(1, l.indexOf(':'))));
  return { lab, conntrack, counts };
}

// ---------------------------------------------------------------- emit

const REPLY = udp4({ src: '192.0.2.2', dst: '198.51.100.2', sport: 9, dport: 7777 });

interface EmitRow {
  name: string;
  how: Omit<EmitOptions, 'family'>;
  /** Device the packet must leave by, or null for none. */
  sentOn: 'eth0' | 'eth1' | 'eth2' | null;
  /** [hook, out-interface] as the hooks saw the packet. */
  hooks: [string, string | null][];
  mark?: number;
  notrack?: boolean;
  /** Destination MAC of the frame (TAP). */
  mac?: number;
}

const EMIT_ROWS: EmitRow[] = [
  { name: 'plain: routed by destination before OUTPUT, out-interface set in OUTPUT and POSTROUTING', how: {}, sentOn: 'eth0', hooks: [['OUTPUT', 'eth0'], ['POSTROUTING', 'eth0']] },
  { name: 'mark: the packet starts with it', how: { mark: 0x2a }, sentOn: 'eth0', hooks: [['OUTPUT', 'eth0'], ['POSTROUTING', 'eth0']], mark: 0x2a },
  { name: 'untracked: conntrack told to skip it', how: { untracked: true }, sentOn: 'eth0', hooks: [['OUTPUT', 'eth0'], ['POSTROUTING', 'eth0']], notrack: true },
  { name: 'oif: leaves by eth2 although the route says eth0 (destination taken as on-link there)', how: { oif: 'eth2' }, sentOn: 'eth2', hooks: [['OUTPUT', 'eth2'], ['POSTROUTING', 'eth2']] },
  { name: 'oif naming no link: refused', how: { oif: 'eth9' }, sentOn: null, hooks: [] },
  {
    name: 'gateway on the TAP link: framed to that neighbour, hooks see eth1',
    how: { gateway: words4('203.0.113.2') },
    sentOn: 'eth1',
    hooks: [['OUTPUT', 'eth1'], ['POSTROUTING', 'eth1']],
    mac: SERVER_MAC,
  },
  { name: 'gateway not on-link (reached through another gateway): no route, dropped', how: { gateway: words4('10.1.2.3') }, sentOn: null, hooks: [] },
  { name: 'gateway + oif that does not reach it: dropped', how: { gateway: words4('203.0.113.2'), oif: 'eth2' }, sentOn: null, hooks: [] },
  { name: 'duplicate: no hook at all', how: { duplicate: true }, sentOn: 'eth0', hooks: [] },
  { name: 'duplicate to a gateway: no hook, framed to the gateway', how: { duplicate: true, gateway: words4('203.0.113.2') }, sentOn: 'eth1', hooks: [], mac: SERVER_MAC },
];

for (const row of EMIT_ROWS) {
  test(`emit: ${row.name}`, (t) => {
    const { lab, seen } = recordingLab(7777);
    learnServer(lab);
    seen.length = 0;
    const ok = lab.router.services.emit(REPLY, 0, REPLY.length, { family: 4, ...row.how });
    t.is(ok, row.name.includes('refused') ? false : true);
    t.deepEqual(
      seen.map((s) => [s.hook, s.out]),
      row.hooks,
    );
    for (const s of seen) {
      t.is(s.mark, row.mark ?? 0);
      t.is(s.notrack, row.notrack ?? false);
    }
    const sent = { eth0: lab.eth0.takeSent(), eth1: lab.eth1.takeSent(), eth2: lab.eth2.takeSent() };
    for (const dev of ['eth0', 'eth1', 'eth2'] as const) {
      t.is(sent[dev].length, dev === row.sentOn ? 1 : 0, `${dev} sent`);
    }
    if (row.sentOn === 'eth1') {
      const f = sent.eth1[0];
      t.is(macAt(f, 0), row.mac!);
      t.deepEqual(Buffer.from(f.subarray(14)), REPLY, 'the packet unchanged behind the frame header');
    } else if (row.sentOn !== null) {
      t.deepEqual(Buffer.from(sent[row.sentOn][0]), REPLY);
    }
    if (row.sentOn === null && !row.name.includes('refused')) t.is(lab.router.status().drops.no_route, 1);
  });
}

test('emit ctFrom: attached to the answered flow as RELATED in the reply direction, not looked up again; -o matches in OUTPUT', async (t) => {
  const reply = udp4({ src: '192.0.2.2', dst: '198.51.100.2', sport: 9, dport: 40000 });
  const { lab, conntrack, counts } = await engineLab(
    [
      'iptables -t mangle -A OUTPUT -m state --state RELATED -o eth0',
      'iptables -t mangle -A OUTPUT -m state --state NEW,ESTABLISHED,INVALID,UNTRACKED',
      'iptables -t mangle -A OUTPUT -m conntrack --ctdir REPLY',
      'iptables -t mangle -A POSTROUTING -m conntrack --ctstate RELATED -o eth0',
    ],
    (l, hook, ctx) => {
      if (hook === Hook.FORWARD && ctx.dport === 9) {
        l.router.services.emit(reply, 0, reply.length, { family: 4, ctFrom: ctx });
        return Verdict.DROP; // the answered packet goes no further: its entry stays unconfirmed
      }
    },
  );
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', sport: 40000, dport: 9 }));
  lab.pump();
  t.deepEqual(lab.eth0.takeSent(), [reply]);
  t.is(lab.eth2.takeSent().length, 0);
  t.deepEqual(await counts('mangle'), [1, 0, 1, 1]);
  t.is(conntrack.count(), 0, 'the attached answer does not confirm the flow it belongs to');
});

test('emit: without ctFrom the same answer is looked up (ESTABLISHED once the flow exists); untracked skips conntrack', async (t) => {
  const reply = udp4({ src: '192.0.2.2', dst: '198.51.100.2', sport: 9, dport: 40000 });
  const { lab, conntrack, counts } = await engineLab([
    'iptables -t mangle -A OUTPUT -m state --state ESTABLISHED',
    'iptables -t mangle -A OUTPUT -m state --state UNTRACKED',
    'iptables -t mangle -A OUTPUT -m state --state NEW,RELATED,INVALID',
  ]);
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', sport: 40000, dport: 9 }));
  lab.pump();
  t.is(lab.eth2.takeSent().length, 1);
  t.is(conntrack.count(), 1);
  t.true(lab.router.services.emit(reply, 0, reply.length, { family: 4 }));
  t.true(lab.router.services.emit(reply, 0, reply.length, { family: 4, untracked: true }));
  t.is(lab.eth0.takeSent().length, 2);
  t.deepEqual(await counts('mangle'), [1, 1, 0]);
});

// ---------------------------------------------------------------- dup

interface DupRow {
  name: string;
  hook: Hook;
  /** The original packet and the interface it comes in on. */
  from: 'eth0' | 'host';
  pkt: Buffer;
  gateway: Uint32Array;
  oif?: string;
  /** Whether dup() reports the clone sent, where it leaves, and the clone's TTL / hop limit. */
  sent: boolean;
  cloneOn?: 'eth1' | 'eth2';
  cloneTtl?: number;
}

const V4 = udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 9, ttl: 64 });
const V4_LOCAL = udp4({ src: '198.51.100.2', dst: '198.51.100.1', dport: 9, ttl: 64 });
const V4_FROM_HOST = udp4({ src: '198.51.100.1', dst: '192.0.2.2', dport: 9, ttl: 64 });
const V6 = udp6({ src: '2001:db8:c::2', dst: '2001:db8:6::2', hop: 64 });

const DUP_ROWS: DupRow[] = [
  { name: 'PREROUTING: TTL decremented (not yet routed), sent to the TAP gateway', hook: Hook.PREROUTING, from: 'eth0', pkt: V4, gateway: words4('203.0.113.2'), sent: true, cloneOn: 'eth1', cloneTtl: 63 },
  { name: 'INPUT: TTL decremented', hook: Hook.INPUT, from: 'eth0', pkt: V4_LOCAL, gateway: words4('203.0.113.2'), sent: true, cloneOn: 'eth1', cloneTtl: 63 },
  { name: 'FORWARD: the forward path already decremented it, no second decrement', hook: Hook.FORWARD, from: 'eth0', pkt: V4, gateway: words4('203.0.113.2'), sent: true, cloneOn: 'eth1', cloneTtl: 63 },
  { name: 'POSTROUTING: as it leaves', hook: Hook.POSTROUTING, from: 'eth0', pkt: V4, gateway: words4('203.0.113.2'), sent: true, cloneOn: 'eth1', cloneTtl: 63 },
  { name: 'OUTPUT: a local packet keeps its TTL', hook: Hook.OUTPUT, from: 'host', pkt: V4_FROM_HOST, gateway: words4('203.0.113.2'), sent: true, cloneOn: 'eth1', cloneTtl: 64 },
  { name: 'TUN gateway: out of the link that reaches it', hook: Hook.PREROUTING, from: 'eth0', pkt: V4, gateway: words4('192.0.2.50'), sent: true, cloneOn: 'eth2', cloneTtl: 63 },
  { name: 'oif given and reaching the gateway', hook: Hook.PREROUTING, from: 'eth0', pkt: V4, gateway: words4('192.0.2.50'), oif: 'eth2', sent: true, cloneOn: 'eth2', cloneTtl: 63 },
  { name: 'oif that does not reach the gateway: lost', hook: Hook.PREROUTING, from: 'eth0', pkt: V4, gateway: words4('192.0.2.50'), oif: 'eth1', sent: false },
  { name: 'gateway behind another gateway (not on-link): lost', hook: Hook.PREROUTING, from: 'eth0', pkt: V4, gateway: words4('10.9.9.9'), sent: false },
  { name: "gateway that is xtr's own address: lost", hook: Hook.PREROUTING, from: 'eth0', pkt: V4, gateway: words4('203.0.113.1'), sent: false },
  { name: 'IPv6 PREROUTING: hop limit decremented, to the TAP gateway', hook: Hook.PREROUTING, from: 'eth0', pkt: V6, gateway: ip6('2001:db8:5::2'), sent: true, cloneOn: 'eth1', cloneTtl: 63 },
  { name: 'IPv6 POSTROUTING: hop limit as forwarded', hook: Hook.POSTROUTING, from: 'eth0', pkt: V6, gateway: ip6('2001:db8:5::2'), sent: true, cloneOn: 'eth1', cloneTtl: 63 },
];

for (const row of DUP_ROWS) {
  test(`dup: ${row.name}`, (t) => {
    const results: boolean[] = [];
    let armed = false;
    const { lab, seen } = recordingLab(9, (l, hook, ctx) => {
      if (armed && hook === row.hook && ctx.dport === 9) results.push(l.router.services.dup(ctx, { gateway: row.gateway, oif: row.oif }));
    });
    learnServer(lab);
    seen.length = 0;
    armed = true;
    (row.from === 'eth0' ? lab.eth0 : lab.host).inject(row.pkt);
    lab.pump();
    t.deepEqual(results, [row.sent], 'dup called once (the clone is never offered to a hook, so never cloned again)');
    t.is(seen.filter((s) => s.hook === HOOK_NAMES[row.hook]).length, 1, 'the clone went through no hook');
    const v6 = row.pkt[0] >> 4 === 6;
    const sent1 = lab.eth1.takeSent();
    const sent2 = lab.eth2.takeSent();
    if (!row.sent) {
      t.is(sent1.length, 0);
      t.is(lab.router.status().drops.dup_not_on_link, 1);
      return;
    }
    // the original is transmitted first (on eth2, or to the host for INPUT), the clone after it
    if (row.hook !== Hook.INPUT) t.is(sent2[0][v6 ? 7 : 8], row.from === 'host' ? 64 : 63, 'the original sent as usual');
    const clones = row.cloneOn === 'eth1' ? sent1 : sent2.slice(1);
    t.is(clones.length, 1);
    const ip = row.cloneOn === 'eth1' ? clones[0].subarray(14) : clones[0];
    if (row.cloneOn === 'eth1') {
      t.is(macAt(clones[0], 0), SERVER_MAC);
      t.is(get16(clones[0], 12), v6 ? 0x86dd : 0x0800);
    }
    t.is(ip[v6 ? 7 : 8], row.cloneTtl!);
    if (!v6) t.true(ipv4HeaderOk(ip), 'IPv4 header checksum of the clone');
    // everything but TTL/hop limit (and the IPv4 checksum) is the original's
    const a = Buffer.from(row.pkt);
    const b = Buffer.from(ip);
    for (const x of [a, b]) {
      x[v6 ? 7 : 8] = 0;
      if (!v6) x[10] = x[11] = 0;
    }
    t.deepEqual(b, a);
  });
}

test('dup: packets after a clone are cloned too (the clone\'s state does not stay with the router)', (t) => {
  const results: boolean[] = [];
  let armed = false;
  const { lab } = recordingLab(9, (l, hook, ctx) => {
    if (armed && hook === Hook.PREROUTING && ctx.dport === 9) results.push(l.router.services.dup(ctx, { gateway: words4('192.0.2.50') }));
  });
  armed = true;
  for (let i = 0; i < 3; i++) {
    lab.eth0.inject(V4);
    lab.pump();
  }
  t.deepEqual(results, [true, true, true]);
  t.is(lab.eth2.takeSent().length, 6);
});

test('dup outside a hook still refuses a gateway that is not on-link and counts each loss', (t) => {
  const { lab } = recordingLab(9);
  const ctx = { family: 4, hook: Hook.FORWARD } as unknown as PacketContext;
  t.false(lab.router.services.dup(ctx, { gateway: words4('10.9.9.9') }));
  t.false(lab.router.services.dup(ctx, { gateway: words4('192.0.2.50'), oif: 'nope' }));
  t.is(lab.router.status().drops.dup_not_on_link, 2);
});

// ---------------------------------------------------------------- icmpError

test('icmpError: from the in-interface for a forwarded packet, from the contacted address for a local one; RELATED to the flow', async (t) => {
  const { lab, counts } = await engineLab(
    ['iptables -t mangle -A OUTPUT -m state --state RELATED -o eth0', 'iptables -t mangle -A OUTPUT -m state ! --state RELATED'],
    (l, hook, ctx) => {
      if ((hook === Hook.FORWARD || hook === Hook.INPUT) && ctx.dport === 9) {
        l.router.services.icmpError(ctx, 3, 3, 0);
        return Verdict.DROP;
      }
    },
  );
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 9 }));
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '203.0.113.1', dport: 9 }));
  lab.pump();
  const sent = lab.eth0.takeSent();
  t.is(sent.length, 2);
  t.deepEqual(
    sent.map((p) => [p[9], p[20], p[21], p.readUInt32BE(12), p.readUInt32BE(16)]),
    [
      [1, 3, 3, ip4('198.51.100.1'), ip4('198.51.100.2')],
      [1, 3, 3, ip4('203.0.113.1'), ip4('198.51.100.2')],
    ],
  );
  t.deepEqual(await counts('mangle'), [2, 0]);
  t.is(lab.router.status().icmpErrorsSent, 2);
});

test("the router's own errors are attached too (icmp_glue_bits): time exceeded for a flow never confirmed is RELATED, not INVALID", async (t) => {
  const { lab, conntrack, counts } = await engineLab([
    'iptables -t mangle -A OUTPUT -m state --state RELATED -o eth0',
    'iptables -t mangle -A OUTPUT -m state --state INVALID',
  ]);
  lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 10, ttl: 1 }));
  lab.pump();
  const sent = lab.eth0.takeSent();
  t.deepEqual(
    sent.map((p) => [p[20], p[21], p.readUInt32BE(12)]),
    [[11, 0, ip4('198.51.100.1')]],
  );
  t.deepEqual(await counts('mangle'), [1, 0]);
  t.is(conntrack.count(), 0);
});

test("icmpError shares the router's one rate limiter: a peer's burst of 6, then nothing within the second", (t) => {
  const { lab } = recordingLab(9, (l, hook, ctx) => {
    if (hook === Hook.FORWARD && ctx.dport === 9) l.router.services.icmpError(ctx, 3, 3, 0);
  });
  for (let i = 0; i < 4; i++) lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 9 }));
  // the router's own errors (TTL exceeded) draw on the same peer bucket
  for (let i = 0; i < 4; i++) lab.eth0.inject(udp4({ src: '198.51.100.2', dst: '192.0.2.2', dport: 10, ttl: 1 }));
  lab.pump();
  t.is(lab.eth0.takeSent().length, 6);
  const st = lab.router.status();
  t.is(st.icmpErrorsSent, 6);
  t.is(st.icmpRateLimited, 2);
});

// ---------------------------------------------------------------- route / iface

test('route(): kind, out-interface, next hop, MTU and hop limit as ip_route_output answers', (t) => {
  const { lab } = recordingLab(9);
  const s = lab.router.services;
  const row = (family: 4 | 6, dst: Uint32Array) => {
    const r = s.route(family, dst);
    return r && [r.kind, r.oif?.name ?? null, r.gateway ? [...r.gateway] : null, r.mtu, r.hopLimit];
  };
  t.deepEqual(row(4, words4('192.0.2.7')), [RouteKind.UNICAST, 'eth2', [ip4('192.0.2.7')], 1280, 64]);
  t.deepEqual(row(4, words4('8.8.8.8')), [RouteKind.UNICAST, 'eth1', [ip4('203.0.113.2')], 1500, 64]);
  t.deepEqual(row(4, words4('10.1.2.3')), [RouteKind.UNICAST, 'eth1', [ip4('203.0.113.2')], 1500, 64]);
  t.deepEqual(row(4, words4('198.51.100.1')), [RouteKind.LOCAL, null, null, 1500, 64]);
  t.deepEqual(row(4, words4('203.0.113.255')), [RouteKind.BROADCAST, 'eth1', null, 1500, 64]);
  t.deepEqual(row(4, words4('224.0.0.5')), [RouteKind.MULTICAST, null, null, 0, 64]);
  t.deepEqual(row(6, ip6('2001:db8:6::9')), [RouteKind.UNICAST, 'eth2', [...ip6('2001:db8:6::9')], 1280, 64]);
  t.deepEqual(row(6, ip6('2001:db8:ff::1')), [RouteKind.UNICAST, 'eth1', [...ip6('2001:db8:5::2')], 1500, 64]);
  t.deepEqual(row(6, ip6('2001:db8:5::1')), [RouteKind.LOCAL, null, null, 1500, 64]);
  // One scratch answer, as a codec view: the next call overwrites it (no allocation per packet).
  const first = s.route(4, words4('192.0.2.7'));
  t.is(s.route(6, ip6('2001:db8:ff::1')), first);
  t.is(first?.oif?.name, 'eth1');
  const bare = makeLab({ noDefault: true });
  t.is(bare.router.services.route(4, words4('8.8.8.8')), null);
  t.is(bare.router.services.route(6, ip6('2001:db8:ff::1')), null);
});

test('iface(): addresses, prefixes, MTU, MAC and flags from the device (TUN point-to-point/noarp, TAP broadcast)', (t) => {
  const { lab } = recordingLab(9);
  const s = lab.router.services;
  const e0 = s.iface('eth0')!;
  t.deepEqual([e0.name, e0.kind, e0.mtu, e0.mac, e0.addrs4, e0.prefixes4, e0.addrs6.map((a) => [...a]), e0.prefixes6], [
    'eth0',
    'tun',
    1500,
    null,
    [ip4('198.51.100.1')],
    [24],
    [[...ip6('2001:db8:c::1')]],
    [64],
  ]);
  t.is(e0.ref, lab.router.interfaces[1]);
  const flags = (n: string) => Object.entries(s.iface(n)!.flags).filter(([, v]) => v).map(([k]) => k).sort();
  t.deepEqual(flags('eth0'), ['lowerUp', 'multicast', 'noarp', 'pointopoint', 'running', 'up']);
  t.deepEqual(flags('eth1'), ['broadcast', 'lowerUp', 'multicast', 'running', 'up']);
  const e1 = s.iface('eth1')!;
  t.deepEqual([...e1.mac!], [2, 0, 0, 0, 1, 1]);
  t.is(e1.kind, 'tap');
  t.is(s.iface('eth2')!.mtu, 1280);
  t.is(s.iface('xtr0')!.kind, 'host');
  t.is(s.iface('eth9'), null);
  lab.eth2.close();
  t.deepEqual(flags('eth2'), ['multicast', 'noarp', 'pointopoint']);
});
