/**
 * Every view against tshark's decoding of the same real frames
 * (test/fixtures/codec/packets.json), plus hand-written byte fixtures for
 * what the capture cannot produce (IPv6 routing/destination-options/AH
 * chains, odd TCP options).
 */
import test from 'ava';
import {
  ArpView,
  DhcpView,
  DropReason,
  EthernetView,
  Icmpv6View,
  IcmpView,
  Ipv4OptionCursor,
  Ipv4View,
  Ipv6ExtInfo,
  Ipv6View,
  NdpOptionCursor,
  TcpOptionCursor,
  TcpView,
  UdpView,
  ipv4ToString,
  ipv6ToString,
  macToString,
  parseIpv6,
  walkIpv6Ext,
} from '../dataplane/index.js';
import { allFrames, num, pick } from './fixtures/codec/load.js';

const eth = new EthernetView();
const arp = new ArpView();
const ip4 = new Ipv4View();
const ip6 = new Ipv6View();
const tcp = new TcpView();
const udp = new UdpView();
const icmp = new IcmpView();
const icmp6 = new Icmpv6View();
const dhcp = new DhcpView();
const ext = new Ipv6ExtInfo();
const w = new Uint32Array(4);

test('the fixture set covers every format the views read', (t) => {
  const has = (k: string) => allFrames.some((f) => f.ts[k] !== undefined);
  for (const k of ['arp.opcode', 'ip.opt.type', 'ipv6.fraghdr.offset', 'tcp.options.mss_val', 'udp.length', 'icmp.type', 'icmpv6.nd.na.target_address', 'dhcp.hw.mac_addr']) {
    t.true(has(k), k);
  }
  t.true(allFrames.length > 60);
});

for (const f of allFrames) {
  test(`${f.scenario}#${f.index}: views agree with tshark`, (t) => {
    const ts = f.ts;
    const b = f.bytes;
    eth.point(b, 0, b.length);
    t.is(eth.check(), DropReason.NONE);
    t.is(macToString(eth.dst), ts['eth.dst']);
    t.is(macToString(eth.src), ts['eth.src']);
    t.is(eth.ethertype, num(ts['eth.type']));
    const l3 = eth.payloadOffset;

    if (ts['arp.opcode']) {
      arp.point(b, l3, eth.payloadLength);
      t.is(arp.check(), DropReason.NONE);
      t.is(arp.oper, num(ts['arp.opcode']));
      t.is(macToString(arp.sha), ts['arp.src.hw_mac']);
      t.is(ipv4ToString(arp.spa), ts['arp.src.proto_ipv4']);
      t.is(macToString(arp.tha), ts['arp.dst.hw_mac']);
      t.is(ipv4ToString(arp.tpa), ts['arp.dst.proto_ipv4']);
      return;
    }

    let l4 = -1;
    let l4len = 0;
    let proto = -1;
    let nonFirstFragment = false;
    let fragment = false;
    if (ts['ip.version'] === '4') {
      ip4.point(b, l3, b.length - l3);
      t.is(ip4.check(), DropReason.NONE);
      t.true(ip4.verifyChecksum());
      t.is(ip4.version, 4);
      t.is(ip4.headerLength, num(ts['ip.hdr_len']));
      t.is(ip4.tos, num(ts['ip.dsfield']));
      t.is(ip4.totalLength, num(ts['ip.len']));
      t.is(ip4.ident, num(ts['ip.id']));
      t.is(ip4.dontFragment, ts['ip.flags.df'] === '1');
      t.is(ip4.moreFragments, ts['ip.flags.mf'] === '1');
      t.is(ip4.fragmentOffset, num(ts['ip.frag_offset']));
      t.is(ip4.ttl, num(ts['ip.ttl']));
      t.is(ip4.protocol, num(ts['ip.proto']));
      t.is(ip4.checksum, num(ts['ip.checksum']));
      t.is(ipv4ToString(ip4.src), ts['ip.src']);
      t.is(ipv4ToString(ip4.dst), ts['ip.dst']);
      if (ts['ip.opt.type']) {
        const c = new Ipv4OptionCursor().resetOn(ip4);
        t.true(c.next());
        t.is(c.type, num(ts['ip.opt.type']));
      } else {
        t.is(ip4.optionsLength, 0);
      }
      l4 = ip4.payloadOffset;
      l4len = ip4.payloadLength;
      proto = ip4.protocol;
      nonFirstFragment = ip4.fragmentOffset !== 0;
      fragment = ip4.isFragment;
    } else if (ts['ipv6.src']) {
      ip6.point(b, l3, b.length - l3);
      t.is(ip6.check(), DropReason.NONE);
      t.is(ip6.trafficClass, num(ts['ipv6.tclass']));
      t.is(ip6.flowLabel, num(ts['ipv6.flow']));
      t.is(ip6.payloadLength, num(ts['ipv6.plen']));
      t.is(ip6.nextHeader, num(ts['ipv6.nxt']));
      t.is(ip6.hopLimit, num(ts['ipv6.hlim']));
      ip6.readSrc(w);
      t.is(ipv6ToString(w), ts['ipv6.src']);
      ip6.readDst(w);
      t.is(ipv6ToString(w), ts['ipv6.dst']);
      t.true(walkIpv6Ext(b, l3, ip6.totalLength, ext));
      if (ts['ipv6.fraghdr.offset'] !== undefined) {
        t.true(ext.hasFragmentHeader);
        t.is(ext.fragmentOffset, num(ts['ipv6.fraghdr.offset']));
        t.is(ext.moreFragments, ts['ipv6.fraghdr.more'] === '1');
        t.is(ext.fragmentIdent, num(ts['ipv6.fraghdr.ident']));
      } else {
        t.false(ext.hasFragmentHeader);
      }
      l4 = ext.upperOffset;
      l4len = l3 + ip6.totalLength - l4;
      proto = ext.upperProto;
      nonFirstFragment = ext.fragmentOffset !== 0;
      fragment = ext.isFragment;
    }
    if (nonFirstFragment) return;

    if (proto === 6) {
      tcp.point(b, l4, l4len);
      t.is(tcp.check(), DropReason.NONE);
      t.is(tcp.srcPort, num(ts['tcp.srcport']));
      t.is(tcp.dstPort, num(ts['tcp.dstport']));
      t.is(tcp.seq, num(ts['tcp.seq_raw']));
      t.is(tcp.ack, num(ts['tcp.ack_raw']));
      t.is(tcp.headerLength, num(ts['tcp.hdr_len']));
      t.is(tcp.flags, num(ts['tcp.flags']) & 0xff);
      t.is(tcp.window, num(ts['tcp.window_size_value']));
      t.is(tcp.checksum, num(ts['tcp.checksum']));
      t.is(tcp.payloadLength, num(ts['tcp.len']));
      t.is(tcp.mss(), ts['tcp.options.mss_val'] ? num(ts['tcp.options.mss_val']) : -1);
      t.is(tcp.windowScale(), ts['tcp.options.wscale.shift'] ? num(ts['tcp.options.wscale.shift']) : -1);
      if (ts['ip.version'] === '4') t.true(tcp.verifyChecksum4(ip4.src, ip4.dst));
      else t.true(tcp.verifyChecksum6(b, ip6.srcOffset));
    } else if (proto === 17) {
      udp.point(b, l4, l4len);
      t.is(udp.check(), DropReason.NONE);
      t.is(udp.srcPort, num(ts['udp.srcport']));
      t.is(udp.dstPort, num(ts['udp.dstport']));
      t.is(udp.length, num(ts['udp.length']));
      t.is(udp.checksum, num(ts['udp.checksum']));
      if (ts['ip.version'] === '4') t.true(udp.verifyChecksum4(ip4.src, ip4.dst));
      else t.true(udp.verifyChecksum6(b, ip6.srcOffset));
      if (ts['dhcp.type']) {
        dhcp.point(b, udp.payloadOffset, udp.payloadLength);
        t.true(dhcp.checkLen());
        t.true(dhcp.isDhcp());
        t.is(dhcp.op, num(ts['dhcp.type']));
        t.is(dhcp.xid, num(ts['dhcp.id']));
        t.is(macToString(dhcp.chaddrMac), ts['dhcp.hw.mac_addr']);
        t.is(dhcp.messageType(), num(ts['dhcp.option.dhcp']));
      }
    } else if (proto === 1 && ts['ip.version'] === '4') {
      icmp.point(b, l4, l4len);
      t.is(icmp.check(), DropReason.NONE);
      t.is(icmp.type, num(ts['icmp.type']));
      t.is(icmp.code, num(ts['icmp.code']));
      t.is(icmp.checksum, num(ts['icmp.checksum']));
      if (icmp.type === 0 || icmp.type === 8) {
        t.is(icmp.ident, num(ts['icmp.ident']));
        t.is(icmp.seq, num(ts['icmp.seq']));
      }
      if (!fragment) t.true(icmp.verifyChecksum());
    } else if (proto === 58) {
      icmp6.point(b, l4, l4len);
      t.is(icmp6.check(), DropReason.NONE);
      t.is(icmp6.type, num(ts['icmpv6.type']));
      t.is(icmp6.code, num(ts['icmpv6.code']));
      t.is(icmp6.checksum, num(ts['icmpv6.checksum']));
      if (!fragment) t.true(icmp6.verifyChecksum(b, ip6.srcOffset));
      const target = ts['icmpv6.nd.ns.target_address'] ?? ts['icmpv6.nd.na.target_address'];
      if (target) {
        t.true(icmp6.checkNdp());
        icmp6.readTarget(w);
        t.is(ipv6ToString(w), target);
      }
      const src = ts['icmpv6.opt.src_linkaddr'];
      const tgt = ts['icmpv6.opt.target_linkaddr'];
      t.is(icmp6.sourceLinkLayer(), src ? parseMacNum(src) : -1);
      t.is(icmp6.targetLinkLayer(), tgt ? parseMacNum(tgt) : -1);
    }
  });
}

function parseMacNum(s: string): number {
  return parseInt(s.replace(/:/g, ''), 16);
}

test('IPv4 options walk: record-route ping carries RR (7) padded by END', (t) => {
  const f = pick('ping4_rr', 'an echo request with options', (ts) => ts['icmp.type'] === '8');
  ip4.point(f.bytes, 14, f.bytes.length - 14);
  t.is(ip4.headerLength, 60);
  const c = new Ipv4OptionCursor().resetOn(ip4);
  const seen: number[] = [];
  while (c.next()) seen.push(c.type);
  t.false(c.malformed);
  t.is(seen[0], 1); // ping -R puts a NOP first to align the addresses
  t.is(seen[1], 7);
});

/** Hand-built IPv6 packet: header + the given extension headers + 8 bytes of UDP. */
function v6WithExt(chain: { type: number; bytes: number[] }[], upper: number, upperBytes: number[]): Buffer {
  const body: number[] = [];
  for (let i = 0; i < chain.length; i++) {
    const next = i + 1 < chain.length ? chain[i + 1].type : upper;
    body.push(next, ...chain[i].bytes.slice(1));
  }
  body.push(...upperBytes);
  const b = Buffer.alloc(40 + body.length);
  b[0] = 0x60;
  b.writeUInt16BE(body.length, 4);
  b[6] = chain.length ? chain[0].type : upper;
  b[7] = 64;
  b.set(parseIpv6('2001:db8::1').reduce((a, x, i) => (a.writeUInt32BE(x, i * 4), a), Buffer.alloc(16)), 8);
  b.set(parseIpv6('2001:db8::2').reduce((a, x, i) => (a.writeUInt32BE(x, i * 4), a), Buffer.alloc(16)), 24);
  Buffer.from(body).copy(b, 40);
  return b;
}

const HBH8 = { type: 0, bytes: [0, 0, 1, 4, 0, 0, 0, 0] }; // PadN
const DST16 = { type: 60, bytes: [0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] };
const RT24 = { type: 43, bytes: [0, 2, 0, 0, 0, 0, 0, 0, ...new Array(16).fill(0)] }; // type 0 routing, 1 address
const AH16 = { type: 51, bytes: [0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 7, 0, 0, 0, 0] }; // (2+2)*4 = 16 bytes
const frag = (offUnits: number, m: boolean) => ({
  type: 44,
  bytes: [0, 0, (offUnits << 3) >> 8, ((offUnits << 3) & 0xf8) | (m ? 1 : 0), 0xde, 0xad, 0xbe, 0xef],
});
const UDP8 = [0x12, 0x34, 0x00, 0x35, 0, 8, 0, 0];

const walkCases: {
  name: string;
  chain: { type: number; bytes: number[] }[];
  upper: number;
  expect: Partial<Record<keyof Ipv6ExtInfo, unknown>>;
  cut?: number;
}[] = [
  { name: 'no extension headers', chain: [], upper: 17, expect: { upperProto: 17, upperOffset: 40, count: 0, overflow: false } },
  { name: 'HbH, DstOpts, Routing, AH', chain: [HBH8, DST16, RT24, AH16], upper: 17, expect: { upperProto: 17, upperOffset: 40 + 8 + 16 + 24 + 16, count: 4 } },
  { name: 'first fragment keeps walking', chain: [frag(0, true)], upper: 17, expect: { upperProto: 17, upperOffset: 48, fragmentOffset: 0, moreFragments: true, fragmentIdent: 0xdeadbeef, fragmentHeaderOffset: 40 } },
  { name: 'non-first fragment stops at its data', chain: [frag(10, false), DST16], upper: 17, expect: { upperProto: 60, upperOffset: 48, fragmentOffset: 10, moreFragments: false } },
  { name: 'atomic fragment is no fragment', chain: [frag(0, false)], upper: 6, expect: { upperProto: 6, hasFragmentHeader: true } },
  { name: 'no next header', chain: [DST16], upper: 59, expect: { upperProto: 59, upperOffset: 56 } },
  { name: 'ESP ends the walk', chain: [HBH8], upper: 50, expect: { upperProto: 50, upperOffset: 48 } },
  { name: 'HbH not first is flagged', chain: [DST16, HBH8], upper: 17, expect: { hopByHopMisplaced: true, upperProto: 17 } },
  { name: 'header running off the packet', chain: [RT24], upper: 17, cut: 40 + 20, expect: { overflow: true } },
  { name: 'header with no room for its first 8 bytes', chain: [HBH8], upper: 17, cut: 40 + 4, expect: { overflow: true } },
];

for (const c of walkCases) {
  test(`IPv6 extension walk: ${c.name}`, (t) => {
    const full = v6WithExt(c.chain, c.upper, UDP8);
    const len = c.cut ?? full.length;
    const ok = walkIpv6Ext(full, 0, len, ext);
    t.is(ok, !c.expect.overflow);
    for (const [k, v] of Object.entries(c.expect)) t.is((ext as unknown as Record<string, unknown>)[k], v, k);
  });
}

test('TCP option cursor: NOPs, SACK blocks, END, and a bad length', (t) => {
  const hdr = Buffer.alloc(40);
  hdr[12] = 10 << 4;
  // MSS 1400, NOP, NOP, SACK-permitted... then timestamp, END
  Buffer.from([2, 4, 0x05, 0x78, 1, 1, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]).copy(hdr, 20);
  tcp.point(hdr, 0, 40);
  const c = new TcpOptionCursor().resetOn(tcp);
  const kinds: number[] = [];
  while (c.next()) kinds.push(c.kind);
  t.deepEqual(kinds, [2, 1, 1, 4, 8]);
  t.false(c.malformed);
  t.is(tcp.mss(), 1400);
  t.true(tcp.sackPermitted());
  t.is(tcp.findOption(8), 20 + 8);
  hdr[21] = 40; // MSS claims 40 bytes: runs past the option area
  t.is(tcp.mss(), -1);
  c.resetOn(tcp);
  while (c.next());
  t.true(c.malformed);
  hdr[21] = 1; // length below 2
  c.resetOn(tcp);
  t.false(c.next());
  t.true(c.malformed);
});

test('NDP option cursor rejects a zero-length option (RFC 4861 4.6)', (t) => {
  const f = pick('ping6', 'a neighbour solicitation', (ts) => ts['icmpv6.type'] === '135');
  const b = Buffer.from(f.bytes);
  ip6.point(b, 14, b.length - 14);
  icmp6.point(b, 54, ip6.payloadLength);
  t.true(icmp6.checkNdp());
  b[54 + 24 + 1] = 0;
  t.false(icmp6.checkNdp());
  t.is(icmp6.sourceLinkLayer(), -1);
  const c = new NdpOptionCursor().resetOn(icmp6);
  t.false(c.next());
  t.true(c.malformed);
});

test('ARP check refuses non-Ethernet/IPv4 and short packets', (t) => {
  const f = pick('ping4', 'an ARP request', (ts) => ts['arp.opcode'] === '1');
  const b = Buffer.from(f.bytes);
  arp.point(b, 14, 28);
  t.is(arp.check(), DropReason.NONE);
  arp.point(b, 14, 27);
  t.is(arp.check(), DropReason.BAD_ARP);
  b[14 + 4] = 8;
  arp.point(b, 14, 28);
  t.is(arp.check(), DropReason.BAD_ARP);
});

test('Ethernet: 802.1Q is not parsed, the tag shows as the ethertype', (t) => {
  const b = Buffer.from('ffffffffffff020000007701810000640800', 'hex');
  eth.point(b, 0, b.length);
  t.is(eth.ethertype, 0x8100);
  eth.point(b, 0, 13);
  t.is(eth.check(), DropReason.TRUNCATED_FRAME);
});

test('views never read past their buffer even when pointed with a longer length', (t) => {
  const b = Buffer.from([0x45, 0, 0, 20]);
  ip4.point(b, 0, 100);
  t.is(ip4.len, 4);
  t.is(ip4.check(), DropReason.TRUNCATED_HEADER);
});
