/**
 * `-m ipp2p --edk|--dc|--gnu|--kazaa|--bit|--apple|--winmx|--soul|--ares|--mute|--waste|--xdcc [--debug]`
 * (xtables-addons xt_ipp2p 3.27, revision 1): per-packet signatures of P2P
 * protocols in TCP, UDP and UDP-Lite payloads, IPv4 and IPv6.
 *
 * The facts are matches-facts.md §8 and upstream's source (read for facts):
 *
 *  - a non-first fragment never matches; TCP with FIN, SYN or RST never
 *    matches; the "transport length" L is the IPv4 total length minus the
 *    header, and for IPv6 the payload length less a hop-by-hop header (the
 *    kernel measures it from the transport header ip6_rcv set, which skips
 *    only that one), so with other extension headers L overstates the real
 *    length and a test anchored at the tail reads past the end and fails -
 *    kept;
 *  - P = L minus the TCP header (doff) or the 8-byte UDP header; each
 *    protocol is tried, in upstream's fixed order, only when its bit is
 *    selected and P is above its threshold; the first hit matches;
 *  - every read the kernel does through skb_header_pointer is a read that
 *    fails (no hit) when it would pass the end of the packet (`has`), and
 *    the substring searches (skb_find_text) run from their start to the end
 *    of the packet, not to P;
 *  - 3.27's two quirks are kept because they are what a 3.x kernel does:
 *    the BitTorrent tracker test looks for `passkey` followed by a NUL byte
 *    (the C string's terminator is in the pattern), and the WinMX test is
 *    satisfied by one ` "` after the SEND/GET (its second search restarts
 *    from an absolute offset and finds the first occurrence again).
 *    docs/compat.md says so.
 *
 * The four DATA_* functions of upstream (kazaa-data, edk-data, dc-data,
 * gnu-data) are not here: no iptables option can select their bits.
 */
import type { PacketContext } from '../xt/packet.js';
import { type MatchExtension, type ParsedOption, XtError } from '../xt/extension.js';
import type { RouterServices } from '../xt/services.js';

/** Protocol bits as upstream numbers them (ipt_p2p_info.cmd). */
export const enum P2p {
  EDK = 1 << 0,
  DC = 1 << 4,
  GNU = 1 << 6,
  KAZAA = 1 << 7,
  BIT = 1 << 8,
  APPLE = 1 << 9,
  SOUL = 1 << 10,
  WINMX = 1 << 11,
  ARES = 1 << 12,
  MUTE = 1 << 13,
  WASTE = 1 << 14,
  XDCC = 1 << 15,
}

/** Option names by bit, in bit order (the save order). */
const PROTOCOLS: readonly (readonly [string, number])[] = [
  ['edk', P2p.EDK],
  ['dc', P2p.DC],
  ['gnu', P2p.GNU],
  ['kazaa', P2p.KAZAA],
  ['bit', P2p.BIT],
  ['apple', P2p.APPLE],
  ['soul', P2p.SOUL],
  ['winmx', P2p.WINMX],
  ['ares', P2p.ARES],
  ['mute', P2p.MUTE],
  ['waste', P2p.WASTE],
  ['xdcc', P2p.XDCC],
];
const BY_BIT = [...PROTOCOLS].sort((a, b) => a[1] - b[1]);

export interface Ipp2pParams {
  /** Selected protocol bits. */
  readonly cmd: number;
  readonly debug: boolean;
}

// ---- the payload being examined: module scratch, re-pointed per packet ----

let buf: Uint8Array = new Uint8Array(0);
/** Absolute offset of the payload in buf. */
let poff = 0;
/** Payload length as the kernel computes it (may overstate for IPv6, see above). */
let plen = 0;
/** Bytes really there from poff to the end of the packet. */
let avail = 0;

/** skb_header_pointer(poff + o, n) succeeds. */
function has(o: number, n: number): boolean {
  return o >= 0 && o + n <= avail;
}
function u8(o: number): number {
  return buf[poff + o];
}
function le16(o: number): number {
  return buf[poff + o] | (buf[poff + o + 1] << 8);
}
function be16(o: number): number {
  return (buf[poff + o] << 8) | buf[poff + o + 1];
}
function le32(o: number): number {
  return (buf[poff + o] | (buf[poff + o + 1] << 8) | (buf[poff + o + 2] << 16) | (buf[poff + o + 3] << 24)) >>> 0;
}
function be32(o: number): number {
  return ((buf[poff + o] << 24) | (buf[poff + o + 1] << 16) | (buf[poff + o + 2] << 8) | buf[poff + o + 3]) >>> 0;
}

/** Byte patterns, made once. */
const pat = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const T = {
  lock: pat('Lock '),
  myNick: pat('MyNick '),
  gnutellaConnect: pat('GNUTELLA CONNECT/'),
  gnutellaSlash: pat('GNUTELLA/'),
  getGet: pat('GET /get/'),
  getUriRes: pat('GET /uri-res/'),
  xGnutella: pat('\r\nX-Gnutella-'),
  xQueue: pat('\r\nX-Queue-'),
  give: pat('GIVE '),
  getSlash: pat('GET /'),
  kazaaUser: pat('\r\nX-Kazaa-Username: '),
  peerEnabler: pat('\r\nUser-Agent: PeerEnabler/'),
  btProtocol: pat('BitTorrent protocol'),
  infoHash: pat('info_hash='),
  peerId: pat('peer_id='),
  // 3.27 passes sizeof("passkey") = 8: the NUL is part of the pattern.
  passkey: pat('passkey\0'),
  ajprot: pat('ajprot\r\n'),
  send: pat('SEND'),
  get: pat('GET'),
  spaceQuote: pat(' "'),
  publicKey: pat('PublicKey: '),
  waste: pat('GET.sha1:'),
  privmsg: pat('PRIVMSG '),
  xdcc: pat(':xdcc send #'),
  kazaaUdp: pat('KaZaA\0'),
  d2id20: pat('d2:id20:'),
  gnd: pat('GND'),
  gnutellaSp: pat('GNUTELLA '),
  sr: pat('SR '),
  ping: pat('Ping '),
};

/** memcmp(payload + o, p) == 0; the caller has checked the bytes are there. */
function eq(o: number, p: Uint8Array): boolean {
  const at = poff + o;
  for (let i = 0; i < p.length; i++) if (buf[at + i] !== p[i]) return false;
  return true;
}

/** Payload ends with CR LF (bytes P-2, P-1 read). */
function crlfTail(): boolean {
  return has(plen - 2, 2) && u8(plen - 2) === 0x0d && u8(plen - 1) === 0x0a;
}

/** skb_find_text from payload offset `from` to the end of the packet: is `p` there? */
function find(from: number, p: Uint8Array): boolean {
  const last = avail - p.length;
  const first = p[0];
  for (let o = from; o <= last; o++) {
    if (buf[poff + o] === first && eq(o, p)) return true;
  }
  return false;
}

// ---- TCP signatures (payload length thresholds are in TCP_LIST) ----

function allEdk(): boolean {
  if (plen < 6 || !has(0, 6) || u8(0) !== 0xe3) return false;
  // Only the low 16 bits of the eDonkey length, read in host (little-endian) order.
  if (le16(1) !== plen - 5) return false;
  return u8(5) === 0x01 || u8(5) === 0x4c;
}

function allDc(): boolean {
  if (plen < 7 || !has(0, Math.min(plen - 1, 8)) || !has(plen - 1, 1)) return false;
  if (u8(0) !== 0x24 || u8(plen - 1) !== 0x7c) return false;
  if (eq(1, T.lock)) return true;
  return plen >= 9 && eq(1, T.myNick);
}

function allGnu(): boolean {
  if (plen < 11 || !has(0, Math.min(plen - 2, 17)) || !crlfTail()) return false;
  if (plen >= 19 && eq(0, T.gnutellaConnect)) return true;
  if (eq(0, T.gnutellaSlash)) return true;
  if (plen < 22) return false;
  let off: number;
  if (eq(0, T.getGet)) off = 9;
  else if (eq(0, T.getUriRes)) off = 13;
  else return false;
  return find(off, T.xGnutella) || find(off, T.xQueue);
}

function allKazaa(): boolean {
  if (plen < 7 || !has(0, 5) || !crlfTail()) return false;
  if (eq(0, T.give)) return true;
  if (!eq(0, T.getSlash) || plen < 18) return false;
  return find(5, T.kazaaUser) || find(5, T.peerEnabler);
}

function bittorrent(): boolean {
  if (!has(0, Math.min(plen, 20))) return false;
  // The 17-byte BitComet block request test upstream has here can never be
  // reached: the threshold lets only payloads above 20 bytes in.
  if (plen <= 20) return false;
  if (u8(0) === 0x13 && eq(1, T.btProtocol)) return true;
  if (!eq(0, T.getSlash)) return false;
  return find(5, T.infoHash) || find(5, T.peerId) || find(5, T.passkey);
}

function apple(): boolean {
  return plen >= 8 && has(0, 8) && eq(0, T.ajprot);
}

function soul(): boolean {
  if (plen < 8 || !has(0, Math.min(plen, 16))) return false;
  if (le32(0) === plen - 4) {
    const m = le32(4);
    if (u8(4) === 0 && u8(7) === 0) return true;
    if (u8(4) === 1 && le16(6) === 0) return true;
    switch (m) {
      case 7: case 9: case 22: case 23: case 26: case 28: case 50: case 51: case 60: case 91: case 92: case 1001:
        return true;
    }
    if ((m > 0 && m < 6) || (m > 12 && m < 19) || (m > 34 && m < 38) || (m > 39 && m < 47) || (m > 61 && m < 70)) return true;
  }
  if (le32(0) === 0x14 && u8(4) === 1) {
    const y = le32(5);
    if (plen < y + 19) return false;
    // Upstream reads 16 bytes there (its length arithmetic is off), so the
    // test needs y + 25 bytes of payload, not y + 19.
    const w = y + 9;
    if (!has(w, 16)) return false;
    const v = le16(w + 4);
    return le32(w) === 1 && (v === 0x4600 || v === 0x5000) && le32(w + 6) === 0;
  }
  return false;
}

function winmx(): boolean {
  if (!has(0, Math.min(plen, 149))) return false;
  if (plen === 4 && eq(0, T.send)) return true;
  if (plen === 3 && eq(0, T.get)) return true;
  if (plen < 10) return false;
  const start = eq(0, T.send) ? 4 : eq(0, T.get) ? 3 : 0;
  // Upstream counts two occurrences of ` "`, but after the first it searches
  // again from (first position + 2) taken as an offset from the IP header,
  // which lies before the first occurrence: one is enough.
  if (start > 0 && find(start, T.spaceQuote)) return true;
  if (plen === 149 && u8(0) === 0x38) {
    return le32(17) === 0 && le32(21) === 0 && le32(25) === 0 && le16(39) === 0 && be16(135) === 0x7edf && be16(147) === 0xf792;
  }
  return false;
}

function ares(): boolean {
  if (plen < 3 || !has(0, Math.min(plen, 60))) return false;
  if (u8(1) !== 0 || plen - u8(0) !== 3) return false;
  if (u8(2) === 0x5a) return plen === 6 && u8(5) === 0x05;
  if (u8(2) === 0x09) return plen >= 14 && plen <= 34;
  return false;
}

function mute(): boolean {
  if (plen !== 209 && plen !== 345 && plen !== 473 && plen !== 609 && plen !== 1121) return false;
  return has(0, 11) && eq(0, T.publicKey);
}

function waste(): boolean {
  return plen >= 9 && has(0, 9) && eq(0, T.waste);
}

function xdcc(): boolean {
  if (plen <= 20 || plen >= 200 || !has(0, Math.min(plen - 2, 8)) || !crlfTail()) return false;
  return eq(0, T.privmsg) && find(8, T.xdcc);
}

// ---- UDP signatures ----

function udpKazaa(): boolean {
  return plen >= 6 && has(plen - 6, 6) && eq(plen - 6, T.kazaaUdp);
}

function udpBit(): boolean {
  if (!has(0, Math.min(plen, 32))) return false;
  switch (plen) {
    case 16: // unreachable behind the threshold of 23, kept for the table's sake
      if (be32(0) === 0x417 && be32(4) === 0x27101980) return true;
      break;
    case 36:
      if (be32(8) === 0x400) return true;
      break;
    case 57:
      if (be32(8) === 0x404) return true;
      break;
    case 59:
      if (be32(8) === 0x406) return true;
      break;
    case 203:
      if (be32(0) === 0x405) return true;
      break;
    case 21: // unreachable, as 16
      if (be32(0) === 0x401) return true;
      break;
    case 44:
      if (be32(0) === 0x827 && be32(4) === 0x37502950) return true;
      break;
    default:
      if (plen >= 32 && be32(8) === 0x402 && be32(28) === 0x104) return true;
  }
  // BitComet DHT: "d1:" then 'a' or 'r', then "d2:id20:".
  return plen > 22 && u8(0) === 0x64 && u8(1) === 0x31 && u8(2) === 0x3a && (u8(3) === 0x61 || u8(3) === 0x72) && eq(4, T.d2id20);
}

function udpGnu(): boolean {
  if (!has(0, Math.min(plen, 9))) return false;
  return (plen >= 3 && eq(0, T.gnd)) || (plen >= 9 && eq(0, T.gnutellaSp));
}

function udpEdk(): boolean {
  if (plen < 4 || !has(0, Math.min(plen, 36))) return false;
  const b1 = u8(1);
  if (u8(0) === 0xe3) {
    switch (b1) {
      case 0x96: return plen === 6;
      case 0x97: return plen === 34;
      case 0xa2: return plen === 6 && be16(2) === 0xfff0;
      case 0x9a: return plen === 18;
      case 0x92: return plen === 10;
    }
    return false;
  }
  if (u8(0) === 0xe4) {
    switch (b1) {
      case 0x20: return plen === 35 && u8(2) !== 0 && u8(34) !== 0;
      case 0x00: case 0x10: case 0x18: return plen === 27 && u8(26) === 0;
      case 0x52: return plen === 36;
      case 0x58: return plen === 6;
      case 0x59: return plen === 2;
      // (packet_len - 44) % 25 in unsigned 32-bit arithmetic: 23 qualifies too.
      case 0x28: return ((plen - 44) >>> 0) % 25 === 0;
      case 0x50: return plen === 4;
      case 0x40: return plen === 48;
    }
  }
  return false;
}

function udpDc(): boolean {
  if (plen < 5 || !has(0, plen < 7 ? 4 : 6) || !has(plen - 1, 1)) return false;
  if (u8(0) !== 0x24 || u8(plen - 1) !== 0x7c) return false;
  return eq(1, T.sr) || (plen >= 7 && eq(1, T.ping));
}

type Search = () => boolean;
/** [bit, payload must be longer than, function], in upstream's order. */
const TCP_LIST: readonly (readonly [number, number, Search])[] = [
  [P2p.EDK, 20, allEdk],
  [P2p.DC, 5, allDc],
  [P2p.GNU, 5, allGnu],
  [P2p.KAZAA, 5, allKazaa],
  [P2p.BIT, 20, bittorrent],
  [P2p.APPLE, 5, apple],
  [P2p.SOUL, 5, soul],
  [P2p.WINMX, 2, winmx],
  [P2p.ARES, 5, ares],
  [P2p.MUTE, 200, mute],
  [P2p.WASTE, 5, waste],
  [P2p.XDCC, 5, xdcc],
];
const UDP_LIST: readonly (readonly [number, number, Search])[] = [
  [P2p.KAZAA, 14, udpKazaa],
  [P2p.BIT, 23, udpBit],
  [P2p.GNU, 11, udpGnu],
  [P2p.EDK, 9, udpEdk],
  [P2p.DC, 12, udpDc],
];

const TCP_FIN_SYN_RST = 0x07;

/**
 * The transport length the kernel computes (see the file comment). For IPv6
 * it is measured from the transport header ip6_rcv set: right after the
 * fixed header, moved past a hop-by-hop header (the only one parsed there).
 */
function transportLength(pkt: PacketContext): number {
  if (pkt.family === 4) return pkt.l3len - (pkt.l4off - pkt.l3off);
  const b = pkt.buf;
  const hbh = b[pkt.l3off + 6] === 0 && pkt.l3len >= 48 ? (b[pkt.l3off + 41] + 1) * 8 : 0;
  return pkt.l3len - 40 - hbh;
}

function search(cmd: number, list: readonly (readonly [number, number, Search])[]): boolean {
  for (let i = 0; i < list.length; i++) {
    const e = list[i];
    if ((cmd & e[0]) === 0 || plen <= e[1]) continue;
    if (e[2]()) return true;
  }
  return false;
}

/** Where --debug's lines go (null: no --debug); set per call by the rule's instance. */
let debugLog: RouterServices | null = null;

/** Whether the packet carries one of the selected signatures. */
export function ipp2pMatch(pkt: PacketContext, cmd: number): boolean {
  if (pkt.fragmentOffset !== 0) {
    // ip_tables hands the offset in 8-byte units, ip6_tables in bytes.
    debugLog?.log(4, `IPP2P.match: offset found ${pkt.family === 4 ? pkt.fragmentOffset : pkt.fragmentOffset * 8}`);
    return false;
  }
  const proto = pkt.proto;
  const end = pkt.l3off + pkt.l3len;
  const l = transportLength(pkt);
  buf = pkt.buf;
  if (proto === 6) {
    if (pkt.l4off + 20 > end) return false;
    if ((pkt.tcpFlags & TCP_FIN_SYN_RST) !== 0) return false;
    const hl = (buf[pkt.l4off + 12] >> 4) * 4;
    if (l < hl) debugLog?.log(6, 'TCP header indicated packet larger than it is');
    if (l <= hl) return false;
    poff = pkt.l4off + hl;
    plen = l - hl;
    avail = end - poff;
    return search(cmd, TCP_LIST);
  }
  if (proto === 17 || proto === 136) {
    if (pkt.l4off + 8 > end) return false;
    if (l < 8) debugLog?.log(6, 'UDP header indicated packet larger than it is');
    if (l <= 8) return false;
    poff = pkt.l4off + 8;
    plen = l - 8;
    avail = end - poff;
    return search(cmd, UDP_LIST);
  }
  return false;
}

function hex4(w: number): string {
  return w.toString(16).padStart(4, '0');
}

/** The address as the kernel's %pI4 / %pI6 print it (IPv6: eight 4-digit groups). */
function addrText(pkt: PacketContext, src: boolean): string {
  if (pkt.family === 4) {
    const a = src ? pkt.src4 : pkt.dst4;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  const w = src ? pkt.src6 : pkt.dst6;
  const g: string[] = [];
  for (let i = 0; i < 4; i++) g.push(hex4(w[i] >>> 16), hex4(w[i] & 0xffff));
  return g.join(':');
}

/** `--debug`'s line for a hit (printk at the default level, 4). */
function logHit(pkt: PacketContext, services: RouterServices): void {
  const kind = pkt.proto === 6 ? 'TCP' : 'UDP';
  services.log(4, `IPP2P.debug:${kind}-match: 1 from: ${addrText(pkt, true)}:${pkt.sport} to: ${addrText(pkt, false)}:${pkt.dport} Length: ${plen}`);
}

const ipp2p: MatchExtension<Ipp2pParams> = {
  kind: 'match',
  name: 'ipp2p',
  revision: 1,
  families: [4, 6],
  // Every option takes `!` here so that ipp2p's own message ("cannot be
  // inverted") is the one the user sees, after its once-only test, as in libxt_ipp2p.
  options: [...PROTOCOLS.map(([name]) => ({ name, arg: 'none' as const, invertible: true })), { name: 'debug', arg: 'none', invertible: true }],
  parse(opts: readonly ParsedOption[]) {
    let cmd = 0;
    let debug = false;
    for (const o of opts) {
      const bit = o.name === 'debug' ? 0 : PROTOCOLS.find(([n]) => n === o.name)![1];
      const seen = bit === 0 ? debug : (cmd & bit) !== 0;
      if (seen) throw new XtError(`ipp2p: "--${o.name}" option may only be specified once`);
      if (o.inverted) throw new XtError(`ipp2p: "--${o.name}" option cannot be inverted`);
      if (bit === 0) debug = true;
      else cmd |= bit;
    }
    if (cmd === 0) throw new XtError('\nipp2p-parameter problem: for ipp2p usage type: iptables -m ipp2p --help\n');
    return { cmd, debug };
  },
  check(p, env) {
    const { cmd, debug } = p;
    const services = env.services;
    return {
      match(pkt) {
        debugLog = debug ? services : null;
        const hit = ipp2pMatch(pkt, cmd);
        if (hit && debug) logHit(pkt, services);
        return hit;
      },
    };
  },
  save(p) {
    let s = '';
    for (const [name, bit] of BY_BIT) if (p.cmd & bit) s += ` --${name} `;
    return p.debug ? `${s} --debug ` : s;
  },
  print(p) {
    return ` -m ipp2p ${ipp2p.save(p)}`;
  },
};

export default ipp2p;
