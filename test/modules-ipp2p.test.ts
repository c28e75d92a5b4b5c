/**
 * ipp2p: every TCP and UDP signature of xtables-addons 3.27 (matches-facts.md
 * §8) as a table of payload fixtures - each hit at the byte positions the
 * facts sheet gives, next to a near miss one byte (or one length) off - run
 * through the module over IPv4 and IPv6, plus the common pipeline (FIN/SYN/
 * RST, fragments, thresholds, UDP-Lite, the IPv6 length quirk, --debug) and
 * the option table.
 */
import test from 'ava';
import ipp2p from '../modules/ipp2p.js';
import { XtHarness } from './helpers/xt-harness.js';
import { ip4, ip6, tcpSeg, udpDgram, type L4 } from './modules-fixtures.js';

const ACK_PSH = 0x18;

const b = (...parts: (string | number | number[])[]): number[] => {
  const out: number[] = [];
  for (const p of parts) {
    if (typeof p === 'string') for (const c of p) out.push(c.charCodeAt(0));
    else if (typeof p === 'number') out.push(p);
    else out.push(...p);
  }
  return out;
};
const zeros = (n: number) => new Array<number>(n).fill(0);
const le16 = (v: number) => [v & 255, v >> 8];
const le32 = (v: number) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24];
const be16 = (v: number) => [v >> 8, v & 255];
const be32 = (v: number) => [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
/** `bytes` padded with zeros to `n` bytes. */
const pad = (bytes: number[], n: number) => [...bytes, ...zeros(n - bytes.length)];
/** Payload of exactly n bytes: head, zeros, tail. */
const sized = (n: number, head: number[], tail: number[] = []) => [...head, ...zeros(n - head.length - tail.length), ...tail];

const btHandshake = b(0x13, 'BitTorrent protocol', zeros(8), new Array(20).fill(0xaa), '-AR1360-abcdefghijkl');
const edkHello = (cmd: number, lenFix = 0) => sized(30, b(0xe3, le16(25 + lenFix), 0, 0, cmd));
const soulSpecial = (n: number) => sized(n, b(le32(0x14), 1, le32(3), 'abc', le32(1), le16(0x4600), le32(0)));
const winmx149 = (tail: number) => {
  const p = pad(b('8'), 149);
  p.splice(135, 2, ...be16(0x7edf));
  p.splice(147, 2, ...be16(tail));
  return p;
};

type Row = [name: string, option: string, proto: 'tcp' | 'udp', payload: number[], hit: boolean];

const TCP_ROWS: Row[] = [
  ['edk hello', '--edk', 'tcp', edkHello(0x01), true],
  ['edk hello answer', '--edk', 'tcp', edkHello(0x4c), true],
  ['edk: command byte off', '--edk', 'tcp', edkHello(0x02), false],
  ['edk: length field off by one', '--edk', 'tcp', edkHello(0x01, 1), false],
  ['edk: marker 0xe2', '--edk', 'tcp', [0xe2, ...edkHello(0x01).slice(1)], false],
  ['edk: 20 bytes is not above the threshold', '--edk', 'tcp', sized(20, b(0xe3, le16(15), 0, 0, 1)), false],
  ['edk: 21 bytes is', '--edk', 'tcp', sized(21, b(0xe3, le16(16), 0, 0, 1)), true],
  ['dc $Lock', '--dc', 'tcp', b('$Lock EXTENDEDPROTOCOLabc Pk=x|'), true],
  ['dc $Lock without the closing |', '--dc', 'tcp', b('$Lock EXTENDEDPROTOCOLabc Pk=x;'), false],
  ['dc $lock lower case', '--dc', 'tcp', b('$lock EXTENDEDPROTOCOLabc Pk=x|'), false],
  ['dc $MyNick', '--dc', 'tcp', b('$MyNick bob|'), true],
  ['dc #MyNick', '--dc', 'tcp', b('#MyNick bob|'), false],
  ['gnu GNUTELLA CONNECT/', '--gnu', 'tcp', b('GNUTELLA CONNECT/0.6\r\n'), true],
  ['gnu GNUTELLA CONNECT/ not ending CR LF', '--gnu', 'tcp', b('GNUTELLA CONNECT/0.6\r\r'), false],
  ['gnu GNUTELLA/ reply', '--gnu', 'tcp', b('GNUTELLA/0.6 200 OK\r\n'), true],
  ['gnu GNUTELLA reply without the slash', '--gnu', 'tcp', b('GNUTELLA 0.6 200 OK\r\n'), false],
  ['gnu GET /get/ with X-Gnutella-', '--gnu', 'tcp', b('GET /get/1/a.mp3 HTTP/1.1\r\nX-Gnutella-Content-URN: x\r\n'), true],
  ['gnu GET /get/ with x-gnutella- (case)', '--gnu', 'tcp', b('GET /get/1/a.mp3 HTTP/1.1\r\nx-Gnutella-Content-URN: x\r\n'), false],
  ['gnu GET /uri-res/ with X-Queue-', '--gnu', 'tcp', b('GET /uri-res/N2R?urn:sha1:X HTTP/1.1\r\nX-Queue-Pos: 1\r\n'), true],
  ['gnu GET /uri-res/ with X-Queue: (v1 form, not v3)', '--gnu', 'tcp', b('GET /uri-res/N2R?urn:sha1:X HTTP/1.1\r\nX-Queue: 1\r\n'), false],
  ['kazaa GIVE', '--kazaa', 'tcp', b('GIVE 12345\r\n'), true],
  ['kazaa GIVE without CR LF', '--kazaa', 'tcp', b('GIVE 12345\r.'), false],
  ['kazaa GET with X-Kazaa-Username', '--kazaa', 'tcp', b('GET /x HTTP/1.1\r\nX-Kazaa-Username: bob\r\n'), true],
  ['kazaa GET with X-Kazaa-Username: no space', '--kazaa', 'tcp', b('GET /x HTTP/1.1\r\nX-Kazaa-Username:bob\r\n'), false],
  ['kazaa GET with PeerEnabler', '--kazaa', 'tcp', b('GET /x HTTP/1.1\r\nUser-Agent: PeerEnabler/2.0\r\n'), true],
  ['kazaa GET with PeerEnabIer', '--kazaa', 'tcp', b('GET /x HTTP/1.1\r\nUser-Agent: PeerEnabIer/2.0\r\n'), false],
  ['bit handshake', '--bit', 'tcp', btHandshake, true],
  ['bit handshake 0x12 length byte', '--bit', 'tcp', [0x12, ...btHandshake.slice(1)], false],
  ['bit handshake "Protocol"', '--bit', 'tcp', b(0x13, 'BitTorrent Protocol', zeros(48)), false],
  ['bit tracker info_hash=', '--bit', 'tcp', b('GET /announce?info_hash=%aa%bb HTTP/1.0\r\n\r\n'), true],
  ['bit tracker info-hash=', '--bit', 'tcp', b('GET /announce?info-hash=%aa%bb HTTP/1.0\r\n\r\n'), false],
  ['bit tracker peer_id=', '--bit', 'tcp', b('GET /announce?peer_id=-AR1360- HTTP/1.0\r\n'), true],
  ['bit tracker passkey= (3.27 needs the NUL)', '--bit', 'tcp', b('GET /announce?passkey=abc HTTP/1.0\r\n'), false],
  ['bit tracker passkey NUL', '--bit', 'tcp', b('GET /announce?passkey', 0, 'abc HTTP/1.0\r\n'), true],
  ['bit tracker POST', '--bit', 'tcp', b('POST /announce?info_hash=%aa HTTP/1.0\r\n'), false],
  ['bit 17-byte block request (dead code upstream)', '--bit', 'tcp', b(be32(13), 6, zeros(8), be32(0x4000)), false],
  ['apple ajprot', '--apple', 'tcp', b('ajprot\r\nhello'), true],
  ['apple ajprot LF LF', '--apple', 'tcp', b('ajprot\n\nhello'), false],
  ['soul 00 yy yy 00 command', '--soul', 'tcp', b(le32(8), 0, 0x12, 0x34, 0, 1, 2, 3, 4), true],
  ['soul length field off by one', '--soul', 'tcp', b(le32(9), 0, 0x12, 0x34, 0, 1, 2, 3, 4), false],
  ['soul 01 yy 00 00 command', '--soul', 'tcp', b(le32(8), 1, 0x12, 0, 0, 1, 2, 3, 4), true],
  ['soul command 7', '--soul', 'tcp', b(le32(8), le32(7), 1, 2, 3, 4), true],
  ['soul command 1001', '--soul', 'tcp', b(le32(8), le32(1001), 1, 2, 3, 4), true],
  ['soul command 44 (40..46)', '--soul', 'tcp', b(le32(8), le32(44), 1, 2, 3, 4), true],
  ['soul command 47', '--soul', 'tcp', b(le32(8), le32(47), 1, 2, 3, 4), false],
  ['soul special 14 00 00 00 01 (y + 25 bytes)', '--soul', 'tcp', soulSpecial(28), true],
  ['soul special one byte short of y + 25', '--soul', 'tcp', soulSpecial(27), false],
  ['winmx SEND alone', '--winmx', 'tcp', b('SEND'), true],
  ['winmx GET alone', '--winmx', 'tcp', b('GET'), true],
  ['winmx SENDs', '--winmx', 'tcp', b('SENDs'), false],
  ['winmx GET with one space-quote (3.27)', '--winmx', 'tcp', b('GET /x HTTP/1.1\r\nIf-None-Match: "abc"\r\n'), true],
  ['winmx GET with no space before the quote', '--winmx', 'tcp', b('GET /x HTTP/1.1\r\nIf-None-Match:"abc"\r\n'), false],
  ['winmx 149-byte login', '--winmx', 'tcp', winmx149(0xf792), true],
  ['winmx 149-byte login, last word off', '--winmx', 'tcp', winmx149(0xf793), false],
  ['ares connect', '--ares', 'tcp', [3, 0, 0x5a, 4, 3, 5], true],
  ['ares connect, byte 5 off', '--ares', 'tcp', [3, 0, 0x5a, 4, 3, 4], false],
  ['ares search of 14 bytes', '--ares', 'tcp', sized(14, [11, 0, 0x09]), true],
  ['ares search, length byte off', '--ares', 'tcp', sized(14, [10, 0, 0x09]), false],
  ['ares search of 35 bytes', '--ares', 'tcp', sized(35, [32, 0, 0x09]), false],
  ['mute 209-byte PublicKey', '--mute', 'tcp', sized(209, b('PublicKey: ')), true],
  ['mute 210 bytes', '--mute', 'tcp', sized(210, b('PublicKey: ')), false],
  ['mute 345-byte publicKey', '--mute', 'tcp', sized(345, b('publicKey: ')), false],
  ['waste GET.sha1:', '--waste', 'tcp', b('GET.sha1:abcdef'), true],
  ['waste GET.sha2:', '--waste', 'tcp', b('GET.sha2:abcdef'), false],
  ['xdcc PRIVMSG :xdcc send #', '--xdcc', 'tcp', b('PRIVMSG bot :xdcc send #1\r\n'), true],
  ['xdcc :XDCC send (case)', '--xdcc', 'tcp', b('PRIVMSG bot :XDCC send #1\r\n'), false],
  ['xdcc without CR LF', '--xdcc', 'tcp', b('PRIVMSG bot :xdcc send #1\n\n'), false],
];

const UDP_ROWS: Row[] = [
  ['kazaa KaZaA NUL at the end', '--kazaa', 'udp', b('0123456789', 'KaZaA', 0), true],
  ['kazaa KaZaa', '--kazaa', 'udp', b('0123456789', 'KaZaa', 0), false],
  ['bit 36 bytes, 0x400 at 8', '--bit', 'udp', sized(36, b(zeros(8), be32(0x400))), true],
  ['bit 36 bytes, 0x401 at 8', '--bit', 'udp', sized(36, b(zeros(8), be32(0x401))), false],
  ['bit 57 bytes, 0x404', '--bit', 'udp', sized(57, b(zeros(8), be32(0x404))), true],
  ['bit 58 bytes, 0x404', '--bit', 'udp', sized(58, b(zeros(8), be32(0x404))), false],
  ['bit 59 bytes, 0x406', '--bit', 'udp', sized(59, b(zeros(8), be32(0x406))), true],
  ['bit 203 bytes, 0x405 at 0', '--bit', 'udp', sized(203, be32(0x405)), true],
  ['bit 204 bytes, 0x405 at 0', '--bit', 'udp', sized(204, be32(0x405)), false],
  ['bit 44 bytes, 0x827 / 0x37502950', '--bit', 'udp', sized(44, b(be32(0x827), be32(0x37502950))), true],
  ['bit 44 bytes, 0x37502951', '--bit', 'udp', sized(44, b(be32(0x827), be32(0x37502951))), false],
  ['bit other length, 0x402 at 8 and 0x104 at 28', '--bit', 'udp', sized(40, b(zeros(8), be32(0x402), zeros(16), be32(0x104))), true],
  ['bit other length, 0x105 at 28', '--bit', 'udp', sized(40, b(zeros(8), be32(0x402), zeros(16), be32(0x105))), false],
  ['bit DHT query d1:a', '--bit', 'udp', b('d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe'), true],
  ['bit DHT reply d1:r', '--bit', 'udp', b('d1:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:re'), true],
  ['bit DHT d1:x', '--bit', 'udp', b('d1:xd2:id20:abcdefghij0123456789e1:t2:aa1:y1:re'), false],
  ['bit DHT prefix in 23 bytes (threshold 23)', '--bit', 'udp', b('d1:ad2:id20:abcdefghijk'), false],
  ['gnu GND', '--gnu', 'udp', b('GND', zeros(10)), true],
  ['gnu GNE', '--gnu', 'udp', b('GNE', zeros(10)), false],
  ['gnu GNUTELLA space', '--gnu', 'udp', b('GNUTELLA PING\r\n'), true],
  ['gnu GNUTELLA/', '--gnu', 'udp', b('GNUTELLA/PING\r\n'), false],
  ['edk e3 97 in 34', '--edk', 'udp', sized(34, [0xe3, 0x97]), true],
  ['edk e3 97 in 35', '--edk', 'udp', sized(35, [0xe3, 0x97]), false],
  ['edk e3 9a in 18', '--edk', 'udp', sized(18, [0xe3, 0x9a]), true],
  ['edk e3 92 in 10', '--edk', 'udp', sized(10, [0xe3, 0x92]), true],
  ['edk e3 92 in 11', '--edk', 'udp', sized(11, [0xe3, 0x92]), false],
  ['edk e4 20 in 35', '--edk', 'udp', sized(35, [0xe4, 0x20, 1], [1]), true],
  ['edk e4 20 in 35, byte 34 zero', '--edk', 'udp', sized(35, [0xe4, 0x20, 1], [0]), false],
  ['edk e4 00 in 27', '--edk', 'udp', sized(27, [0xe4, 0x00, 5]), true],
  ['edk e4 10 in 27', '--edk', 'udp', sized(27, [0xe4, 0x10, 5]), true],
  ['edk e4 18 in 27, byte 26 set', '--edk', 'udp', sized(27, [0xe4, 0x18, 5], [1]), false],
  ['edk e4 52 in 36', '--edk', 'udp', sized(36, [0xe4, 0x52]), true],
  ['edk e4 40 in 48', '--edk', 'udp', sized(48, [0xe4, 0x40]), true],
  ['edk e4 40 in 47', '--edk', 'udp', sized(47, [0xe4, 0x40]), false],
  ['edk e4 28 in 69', '--edk', 'udp', sized(69, [0xe4, 0x28]), true],
  ['edk e4 28 in 70', '--edk', 'udp', sized(70, [0xe4, 0x28]), false],
  ['edk e4 28 in 23 (unsigned wrap)', '--edk', 'udp', sized(23, [0xe4, 0x28]), true],
  ['dc $SR', '--dc', 'udp', b('$SR bob file 1/2|'), true],
  ['dc $SR without the |', '--dc', 'udp', b('$SR bob file 1/2.'), false],
  ['dc $Ping', '--dc', 'udp', b('$Ping 10.0.0.1:411|'), true],
  ['dc $Pong', '--dc', 'udp', b('$Pong 10.0.0.1:411|'), false],
];

function l4Of(proto: 'tcp' | 'udp', payload: number[], flags = ACK_PSH): L4 {
  return proto === 'tcp' ? tcpSeg(40000, 6881, flags, { payload }) : udpDgram(40000, 6881, payload);
}

const hit = (words: string, bytes: Buffer, family: 4 | 6 = 4) => new XtHarness().matches(ipp2p, words, bytes, { family });

for (const family of [4, 6] as const) {
  test(`every TCP and UDP signature, hit and near miss (IPv${family})`, (t) => {
    for (const [name, option, proto, payload, expected] of [...TCP_ROWS, ...UDP_ROWS]) {
      const l4 = l4Of(proto, payload);
      const bytes = family === 4 ? ip4('10.0.0.2', '10.0.1.2', l4) : ip6('2001:db8::2', '2001:db8:1::2', l4);
      t.is(hit(option, bytes, family), expected, `${proto} ${name}`);
      // --ipp2p-style: every protocol selected finds the same hits (the order only picks which one).
      if (expected) t.true(hit('--edk --dc --gnu --kazaa --bit --apple --winmx --soul --ares --mute --waste --xdcc', bytes, family), `${proto} ${name} with all`);
    }
  });
}

test('a signature only counts for its own option', (t) => {
  const bytes = ip4('10.0.0.2', '10.0.1.2', l4Of('tcp', btHandshake));
  t.true(hit('--bit', bytes));
  for (const o of ['--edk', '--dc', '--gnu', '--kazaa', '--apple', '--winmx', '--soul', '--ares', '--mute', '--waste', '--xdcc']) t.false(hit(o, bytes), o);
});

test('TCP with FIN, SYN or RST never matches; ACK, PSH, URG do', (t) => {
  const flagRows: [number, boolean][] = [[0x10, true], [0x18, true], [0x30, true], [0x11, false], [0x12, false], [0x02, false], [0x14, false], [0x19, false]];
  for (const [flags, expected] of flagRows) {
    t.is(hit('--bit', ip4('10.0.0.2', '10.0.1.2', l4Of('tcp', btHandshake, flags))), expected, `flags 0x${flags.toString(16)}`);
  }
});

test('no payload, non-first fragments, other protocols: no match; UDP-Lite is searched', (t) => {
  t.false(hit('--winmx', ip4('10.0.0.2', '10.0.1.2', tcpSeg(1, 2, ACK_PSH))));
  const udp = udpDgram(1, 2, b('$Ping 10.0.0.1:411|'));
  // The same UDP bytes as a later fragment (offset 8 units): never examined.
  t.false(hit('--dc', ip4('10.0.0.2', '10.0.1.2', udp, { frag: 8 })));
  t.true(hit('--dc', ip4('10.0.0.2', '10.0.1.2', { ...udp, proto: 136, csumAt: -1 })));
  t.false(hit('--dc', ip4('10.0.0.2', '10.0.1.2', { ...udp, proto: 132, csumAt: -1 })));
  t.false(hit('--dc', ip4('10.0.0.2', '10.0.1.2', { ...udp, proto: 47, csumAt: -1 })));
});

test('IPv6 with an extension header: the kernel overstates the payload, so tail-anchored tests fail and head-anchored ones hit', (t) => {
  // Destination options (8 bytes: next header TCP, PadN) in front of TCP.
  const withDestOpts = (l4: L4): L4 => ({ proto: 60, bytes: [l4.proto, 0, 1, 4, 0, 0, 0, 0, ...l4.bytes], csumAt: -1 });
  t.true(hit('--bit', ip6('2001:db8::2', '2001:db8:1::2', withDestOpts(l4Of('tcp', btHandshake))), 6));
  t.true(hit('--dc', ip6('2001:db8::2', '2001:db8:1::2', l4Of('tcp', b('$MyNick bob|'))), 6));
  t.false(hit('--dc', ip6('2001:db8::2', '2001:db8:1::2', withDestOpts(l4Of('tcp', b('$MyNick bob|')))), 6));
  t.false(hit('--kazaa', ip6('2001:db8::2', '2001:db8:1::2', withDestOpts(l4Of('udp', b('0123456789', 'KaZaA', 0)))), 6));
});

test('--debug logs each hit as upstream printk does (IPv4 dotted, IPv6 in full)', (t) => {
  const h = new XtHarness();
  const m = h.match(ipp2p, '--bit --debug', {});
  t.true(m.match(h.packet(ip4('10.0.0.2', '10.0.1.2', l4Of('tcp', btHandshake)))));
  t.false(m.match(h.packet(ip4('10.0.0.2', '10.0.1.2', l4Of('tcp', b('hello world, nothing here'))))));
  const h6 = new XtHarness();
  const m6 = h6.match(ipp2p, '--dc --debug', { family: 6 });
  t.true(m6.match(h6.packet(ip6('2001:db8::2', '2001:db8:1::2', l4Of('udp', b('$Ping 10.0.0.1:411|'))))));
  t.deepEqual(h.services.logged, [{ level: 4, line: 'IPP2P.debug:TCP-match: 1 from: 10.0.0.2:40000 to: 10.0.1.2:6881 Length: 68' }]);
  t.deepEqual(h6.services.logged, [{ level: 4, line: 'IPP2P.debug:UDP-match: 1 from: 2001:0db8:0000:0000:0000:0000:0000:0002:40000 to: 2001:0db8:0001:0000:0000:0000:0000:0002:6881 Length: 19' }]);
});

// Words, and what iptables-legacy + libxt_ipp2p (xtables-addons-common) say: test/detect-iptables-diff.test.ts runs the same rows there.
export const IPP2P_OPTION_ROWS: [words: string, save: string | null, error: string | null][] = [
  ['--bit', ' --bit ', null],
  ['--debug --edk', ' --edk  --debug ', null],
  ['--xdcc --waste --mute --ares --winmx --soul --apple --bit --kazaa --gnu --dc --edk', ' --edk  --dc  --gnu  --kazaa  --bit  --apple  --soul  --winmx  --ares  --mute  --waste  --xdcc ', null],
  ['--edk --edk', null, 'ipp2p: "--edk" option may only be specified once'],
  ['--bit --debug --debug', null, 'ipp2p: "--debug" option may only be specified once'],
  ['! --edk', null, 'ipp2p: "--edk" option cannot be inverted'],
  ['--bit ! --debug', null, 'ipp2p: "--debug" option cannot be inverted'],
  ['--debug', null, '\nipp2p-parameter problem: for ipp2p usage type: iptables -m ipp2p --help\n'],
  ['', null, '\nipp2p-parameter problem: for ipp2p usage type: iptables -m ipp2p --help\n'],
];

test('options: save text and errors in libxt_ipp2p words', (t) => {
  const h = new XtHarness();
  for (const [words, save, error] of IPP2P_OPTION_ROWS) {
    if (error !== null) {
      t.is(t.throws(() => h.parse(ipp2p, words))?.message, error, words);
    } else {
      const p = h.parse(ipp2p, words);
      t.is(ipp2p.save(p), String(save), words);
      t.is(ipp2p.print!(p), ` -m ipp2p ${save ?? ''}`, words);
    }
  }
});

test('IPv6 hop-by-hop: the kernel moves the transport header past it, so lengths stay right', (t) => {
  const withHbh = (l4: L4): L4 => ({ proto: 0, bytes: [l4.proto, 0, 1, 4, 0, 0, 0, 0, ...l4.bytes], csumAt: -1 });
  t.true(hit('--dc', ip6('2001:db8::2', '2001:db8:1::2', withHbh(l4Of('tcp', b('$MyNick bob|')))), 6));
  t.true(hit('--kazaa', ip6('2001:db8::2', '2001:db8:1::2', withHbh(l4Of('udp', b('0123456789', 'KaZaA', 0)))), 6));
});

test('--debug also reports later fragments and short transport lengths, as upstream does', (t) => {
  const h = new XtHarness();
  const m = h.match(ipp2p, '--dc --debug');
  t.false(m.match(h.packet(ip4('10.0.0.2', '10.0.1.2', udpDgram(1, 2, b('$Ping 10.0.0.1:411|')), { frag: 8 }))));
  const quiet = new XtHarness();
  t.false(quiet.match(ipp2p, '--dc').match(quiet.packet(ip4('10.0.0.2', '10.0.1.2', udpDgram(1, 2, b('$Ping 10.0.0.1:411|')), { frag: 8 }))));
  t.deepEqual(h.services.logged, [{ level: 4, line: 'IPP2P.match: offset found 8' }]);
  t.deepEqual(quiet.services.logged, []);
});
