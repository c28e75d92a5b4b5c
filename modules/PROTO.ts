/**
 * `-j PROTO --proto-set N [--stop-at-frag] [--stop-at-auth]` (xtables-addons
 * 3.4+, mangle table): rewrites the IPv4 protocol field, or in IPv6 the
 * next-header byte that ends the extension-header chain - to let a tunnel's
 * packets be recognised, or to hide one.
 *
 * IPv4: the protocol byte and the header checksum (RFC 1624); the TCP/UDP
 * checksum is not touched although its pseudo-header names the protocol, and
 * every fragment is rewritten - as upstream does.
 *
 * IPv6: the chain walked as xt_PROTO walks it. Extension headers are exactly
 * Hop-by-Hop, Routing, Fragment, AH, Destination Options and No Next Header
 * (59, which ends the walk and gets overwritten); ESP, Mobility and the rest
 * are upper-layer. `--stop-at-frag` / `--stop-at-auth` end the walk at a
 * Fragment / AH header, so the byte pointing at it is the one rewritten. A
 * non-first fragment whose Fragment header is the last extension header has
 * that header's next-header byte rewritten (the man page says only first
 * fragments are; upstream's walk does otherwise and so does this). A header
 * that cannot be read drops the packet. No checksum changes.
 *
 * The stop options on an IPv4 rule are refused with EPROTOTYPE, as the
 * kernel's checkentry does.
 */
import { Verdict, type PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';
import { getU16, setU16 } from '../dataplane/bytes.js';
import { csumReplace2 } from '../dataplane/checksum.js';
import { parseUintOption } from './lib/numbers.js';

export interface ProtoParams {
  proto: number;
  stopAtFrag: boolean;
  stopAtAuth: boolean;
}

const NEXTHDR_FRAGMENT = 44;
const NEXTHDR_AUTH = 51;
const NEXTHDR_NONE = 59;

/** xt_PROTO's notion of an IPv6 extension header (ESP, Mobility, HIP ... are upper-layer for it). */
function isExtension(nh: number): boolean {
  return nh === 0 || nh === 43 || nh === NEXTHDR_FRAGMENT || nh === NEXTHDR_AUTH || nh === NEXTHDR_NONE || nh === 60;
}

/**
 * The absolute offset of the byte to overwrite, -1 to leave the packet
 * alone (a non-first fragment whose chain goes on after the Fragment
 * header), or -2 when a header cannot be read (drop).
 */
export function protoTarget6(b: Uint8Array, l3off: number, l3len: number, stopAtFrag: boolean, stopAtAuth: boolean): number {
  let ptr = l3off + 6;
  let off = 40;
  for (let guard = 0; guard < 256; guard++) {
    const nh = b[ptr];
    if (!isExtension(nh) || nh === NEXTHDR_NONE) return ptr;
    if (off + 2 > l3len) return -2;
    const at = l3off + off;
    let len: number;
    if (nh === NEXTHDR_FRAGMENT) {
      if (stopAtFrag) return ptr;
      if (off + 4 > l3len) return -2;
      if ((getU16(b, at + 2) & 0xfff8) !== 0) {
        const inner = b[at];
        if (!isExtension(inner) || inner === NEXTHDR_NONE || (stopAtAuth && inner === NEXTHDR_AUTH)) return at;
        return -1;
      }
      len = 8;
    } else if (nh === NEXTHDR_AUTH) {
      if (stopAtAuth) return ptr;
      len = (b[at + 1] + 2) * 4;
    } else len = (b[at + 1] + 1) * 8;
    ptr = at;
    off += len;
  }
  return -2;
}

const PROTO: TargetExtension<ProtoParams> = {
  kind: 'target',
  name: 'PROTO',
  families: [4, 6],
  tables: ['mangle'],
  options: [
    { name: 'proto-set', arg: 'required' },
    { name: 'stop-at-frag', arg: 'none' },
    { name: 'stop-at-auth', arg: 'none' },
  ],
  parse(opts) {
    // libxtables' x6 order: per option as it comes, "only once", then its value.
    let proto = -1;
    const seen = new Set<string>();
    for (const o of opts) {
      if (seen.has(o.name)) throw new XtError(`PROTO: option "--${o.name}" can only be used once.\n`);
      seen.add(o.name);
      if (o.name === 'proto-set') proto = parseUintOption('PROTO', 'proto-set', o.value ?? '', 255);
    }
    if (proto < 0) throw new XtError('PROTO: You must specify the proto to be set');
    return { proto, stopAtFrag: seen.has('stop-at-frag'), stopAtAuth: seen.has('stop-at-auth') };
  },
  check(p, env) {
    const { proto, stopAtFrag, stopAtAuth } = p;
    if (env.rule.family === 4) {
      if (stopAtFrag || stopAtAuth) throw new XtError('xt_PROTO: Must not specify stop-at-frag and stop-at-auth on non-ipv6 targets', 1, 'EPROTOTYPE');
      return {
        target(pkt: PacketContext): number {
          const b = pkt.buf;
          const o = pkt.l3off;
          if (b[o + 9] !== proto) {
            const old = getU16(b, o + 8);
            b[o + 9] = proto;
            setU16(b, o + 10, csumReplace2(getU16(b, o + 10), old, getU16(b, o + 8)));
            pkt.proto = proto;
          }
          return XT_CONTINUE;
        },
      };
    }
    return {
      target(pkt: PacketContext): number {
        const at = protoTarget6(pkt.buf, pkt.l3off, pkt.l3len, stopAtFrag, stopAtAuth);
        if (at === -2) return Verdict.DROP;
        if (at >= 0) {
          pkt.buf[at] = proto;
          pkt.proto = proto;
        }
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    return ` --proto-set ${p.proto}${p.stopAtFrag ? ' --stop-at-frag' : ''}${p.stopAtAuth ? ' --stop-at-auth' : ''}`;
  },
  print(p) {
    return ` PROTO set to ${p.proto}${p.stopAtFrag ? ' stop-at-frag' : ''}${p.stopAtAuth ? ' stop-at-auth' : ''}`;
  },
};

export default PROTO;
