/**
 * `-m length2 [--layer3|--layer4|--layer5|--layer7] [!] --length N[:M]`
 * (xtables-addons xt_length2, revision 2): a length measured at layer 3, 4,
 * 5 or the undocumented "7", compared with an inclusive range of unsigned
 * 32-bit numbers (matches-facts.md §10). Not mainline's `-m length`.
 *
 *  - layer3: IPv4 total length; IPv6 40 + payload length (the real length
 *    for a jumbogram's 0);
 *  - layer4: the packet length minus the transport header's offset;
 *  - layer5: layer 4 minus the transport header, by protocol: TCP and DCCP
 *    their data offset (when the length covers it), UDP/UDP-Lite 8, SCTP 12,
 *    ICMP 8, ICMPv6 4, AH 12, ESP 8 - unsigned, so a truncated packet wraps
 *    to a huge length; any other protocol cannot be measured and the match
 *    is false even when negated;
 *  - layer7: the sum of SCTP DATA chunk lengths (walking chunks while the
 *    position is below the *packet* length, which in practice reads past
 *    the end and fails), layer 5 for everything else;
 *  - IPv6 finds "the" transport header by trying, in this order, 41, 4, ESP,
 *    AH, ICMP (1, not ICMPv6), TCP, UDP, UDP-Lite, SCTP, DCCP along the
 *    extension-header chain: ICMPv6 is never measured at layers 4-7, and AH
 *    wins over the TCP behind it. A malformed chain drops the packet.
 *  - IPv4 has no fragment test: a later fragment is measured as if it began
 *    with a transport header.
 *
 * A reversed range is accepted and never matches (always, negated).
 */
import type { PacketContext } from '../xt/packet.js';
import { type MatchExtension, XtError } from '../xt/extension.js';
import { xtStrtoul } from './lib/numbers.js';

export const enum Layer {
  L3 = 3,
  L4 = 4,
  L5 = 5,
  L7 = 7,
}

export interface Length2Params {
  readonly layer: Layer;
  /** Whether a --layer option was given (else iptables warns and uses layer 3). */
  readonly layerGiven: boolean;
  readonly min: number;
  readonly max: number;
  readonly inv: boolean;
}

const UINT_MAX = 0xffffffff;

function parseLength(arg: string): [number, number] {
  const bad = () => new XtError(`length: Bad value for "--length" option: "${arg}"`);
  const a = xtStrtoul(arg, 0, UINT_MAX);
  if (a === null) throw bad();
  let to = a.value;
  let end = a.end;
  if (arg[end] === ':') {
    const b = xtStrtoul(arg, end + 1, UINT_MAX);
    if (b === null) throw bad();
    to = b.value;
    end = b.end;
  }
  if (end !== arg.length) throw bad();
  return [a.value, to];
}

const NO_LENGTH = -1;

/** skb->len - offset - n as the kernel's unsigned int. */
const minus = (a: number, b: number) => (a - b) >>> 0;

/** Layer-5 length at transport offset `thoff` (absolute in buf), or NO_LENGTH. */
function layer5(pkt: PacketContext, proto: number, thoff: number): number {
  const end = pkt.l3off + pkt.l3len;
  const rest = minus(end, thoff);
  switch (proto) {
    case 6: {
      if (thoff + 20 > end) return NO_LENGTH;
      const doff = 4 * (pkt.buf[thoff + 12] >> 4);
      return rest >= doff ? rest - doff : rest;
    }
    case 33: {
      if (thoff + 12 > end) return NO_LENGTH;
      const doff = 4 * pkt.buf[thoff + 4];
      return rest >= doff ? rest - doff : rest;
    }
    case 17:
    case 136:
      return minus(rest, 8);
    case 132:
      return minus(rest, 12);
    case 1:
      return minus(rest, 8);
    case 58:
      return minus(rest, 4);
    case 51:
      return minus(rest, 12);
    case 50:
      return minus(rest, 8);
  }
  return NO_LENGTH;
}

/** Sum of SCTP DATA chunk lengths as upstream walks them, or NO_LENGTH when a chunk header is out of the packet. */
function sctpData(pkt: PacketContext, thoff: number): number {
  const end = pkt.l3off + pkt.l3len;
  let total = 0;
  // The bound is the packet's whole length, not what follows thoff: the walk
  // normally runs off the end and fails, as upstream's does.
  for (let pos = 12; pos < pkt.l3len; ) {
    const at = thoff + pos;
    if (at + 4 > end) return NO_LENGTH;
    const len = (pkt.buf[at + 2] << 8) | pkt.buf[at + 3];
    if (pkt.buf[at] === 0) total = (total + len) >>> 0;
    // Upstream would spin forever on a zero-length chunk; xtr stops and says "no length".
    if (len === 0) return NO_LENGTH;
    pos += len;
  }
  return total;
}

function layer7(pkt: PacketContext, proto: number, thoff: number): number {
  return proto === 132 ? sctpData(pkt, thoff) : layer5(pkt, proto, thoff);
}

/** Priority of the transport headers upstream looks for in an IPv6 chain (lower wins). */
const V6_WANTED = new Int8Array(256).fill(-1);
[41, 4, 50, 51, 1, 6, 17, 136, 132, 33].forEach((p, i) => (V6_WANTED[p] = i));
const V6_ORDER = [41, 4, 50, 51, 1, 6, 17, 136, 132, 33];

/** Headers ipv6_find_hdr walks over (hop-by-hop, routing, fragment, AH, destination options). */
function isExt(h: number): boolean {
  return h === 0 || h === 43 || h === 44 || h === 51 || h === 60;
}

/** Scratch: offset at which each wanted header was found in the current packet (-1 = not). */
const foundAt = new Int32Array(V6_ORDER.length);

/**
 * The transport header upstream's llayer4_proto picks: [protocol, absolute
 * offset], or null when none; sets pkt.hotdrop for a chain that runs past
 * the packet.
 */
function v6Transport(pkt: PacketContext): [number, number] | null {
  const buf = pkt.buf;
  const end = pkt.l3off + pkt.l3len;
  foundAt.fill(-1);
  let nh = buf[pkt.l3off + 6];
  let at = pkt.l3off + 40;
  for (let guard = 0; guard < 64; guard++) {
    const want = V6_WANTED[nh];
    if (want >= 0 && foundAt[want] < 0) foundAt[want] = at;
    if (!isExt(nh)) break;
    if (at + 8 > end) {
      pkt.hotdrop = true;
      return null;
    }
    if (nh === 44) {
      // A later fragment: nothing behind it can be found (ipv6_find_hdr's -ENOENT).
      if ((((buf[at + 2] << 8) | buf[at + 3]) & ~7) !== 0) break;
      nh = buf[at];
      at += 8;
      continue;
    }
    const len = nh === 51 ? (buf[at + 1] + 2) * 4 : (buf[at + 1] + 1) * 8;
    nh = buf[at];
    at += len;
  }
  for (let i = 0; i < V6_ORDER.length; i++) if (foundAt[i] >= 0) return [V6_ORDER[i], foundAt[i]];
  return null;
}

/** The length the rule compares, or NO_LENGTH when it cannot be measured. */
export function measure(pkt: PacketContext, layer: Layer): number {
  const buf = pkt.buf;
  if (pkt.family === 4) {
    const tot = (buf[pkt.l3off + 2] << 8) | buf[pkt.l3off + 3];
    const thoff = pkt.l3off + (buf[pkt.l3off] & 0x0f) * 4;
    const proto = buf[pkt.l3off + 9];
    if (layer === Layer.L3) return tot;
    if (layer === Layer.L4) return minus(tot, thoff - pkt.l3off);
    return layer === Layer.L5 ? layer5(pkt, proto, thoff) : layer7(pkt, proto, thoff);
  }
  if (layer === Layer.L3) {
    const payload = (buf[pkt.l3off + 4] << 8) | buf[pkt.l3off + 5];
    return payload === 0 ? pkt.l3len : 40 + payload;
  }
  const t = v6Transport(pkt);
  if (t === null) return NO_LENGTH;
  const [proto, thoff] = t;
  if (layer === Layer.L4) return minus(pkt.l3off + pkt.l3len, thoff);
  return layer === Layer.L5 ? layer5(pkt, proto, thoff) : layer7(pkt, proto, thoff);
}

const LAYERS: Record<string, Layer> = { layer3: Layer.L3, layer4: Layer.L4, layer5: Layer.L5, layer7: Layer.L7 };

const length2: MatchExtension<Length2Params> = {
  kind: 'match',
  name: 'length2',
  revision: 2,
  families: [4, 6],
  // libxt_length2 ignores `!` before --layerN; it is accepted here to do the same.
  options: [
    { name: 'layer3', arg: 'none', invertible: true },
    { name: 'layer4', arg: 'none', invertible: true },
    { name: 'layer5', arg: 'none', invertible: true },
    { name: 'layer7', arg: 'none', invertible: true },
    { name: 'length', arg: 'required', invertible: true },
  ],
  parse(opts) {
    let layer = Layer.L3;
    let layerGiven = false;
    let range: [number, number] | null = null;
    let inv = false;
    for (const o of opts) {
      if (o.name === 'length') {
        if (range !== null) throw new XtError('length: "--length" option may only be specified once');
        if (o.inverted) inv = true;
        range = parseLength(o.value ?? '');
      } else {
        if (layerGiven) throw new XtError('length: "--layer*" option may only be specified once');
        layerGiven = true;
        layer = LAYERS[o.name];
      }
    }
    if (range === null) throw new XtError('length: You must specify "--length"');
    return { layer, layerGiven, min: range[0], max: range[1], inv };
  },
  check(p) {
    const { layer, min, max, inv } = p;
    return {
      match(pkt: PacketContext): boolean {
        const len = measure(pkt, layer);
        if (len === NO_LENGTH) return false;
        return (len >= min && len <= max) !== inv;
      },
    };
  },
  notice(p) {
    return p.layerGiven ? '' : 'iptables: length match: Defaulting to --layer3. Consider specifying it explicitly.\n';
  },
  save(p) {
    return ` --layer${p.layer}  ${p.inv ? '! ' : ''}--length ${p.min === p.max ? p.min : `${p.min}:${p.max}`} `;
  },
  print(p) {
    return ` -m length2${length2.save(p)}`;
  },
};

export default length2;
