/**
 * What DHCPMAC and dhcpmac share: the `aa:bb:cc:dd:ee:ff[/mask]` argument as
 * xtables-addons' mac parser reads it, its print form, and where the client
 * hardware address (chaddr) sits in a BOOTP/DHCP message over UDP/IPv4.
 *
 * Parser facts (measured against libxt_dhcpmac/libxt_DHCPMAC in
 * iptables-legacy 1.8.9): six groups read by strtoul base 16 (white space, a
 * sign and `0x` tolerated; no digits is an error; the value must be at most
 * 0xff, so `-1` is refused and `-0` taken as 0), separated by `:`; after the
 * sixth only the end or `/`; the mask an integer 0..48 as xtables_strtoui
 * reads it (decimal, 0x hex, leading-0 octal). Anything else is
 * `<EXT>: Bad value for "<--opt>" option: "<arg>"`.
 */
import type { PacketContext } from '../../xt/packet.js';
import { strtoumax } from './numbers.js';
import { parseUint } from './numbers.js';
import { badValueError } from './param-act.js';

export interface MacMask {
  /** The six bytes of the address. */
  readonly mac: readonly number[];
  /** Prefix length in bits, 0..48. */
  readonly mask: number;
}

const C_SPACE = ' \t\n\v\f\r';

/** strtoul(s + from, &end, 16): the value (64-bit, wrapped when negated) and where it ended; end === from when no digits. */
function strtoul16(s: string, from: number): { value: bigint; end: number } {
  let i = from;
  while (i < s.length && C_SPACE.includes(s[i])) i++;
  let minus = false;
  if (s[i] === '+' || s[i] === '-') minus = s[i++] === '-';
  if (s[i] === '0' && (s[i + 1] === 'x' || s[i + 1] === 'X') && /[0-9a-fA-F]/.test(s[i + 2] ?? '')) i += 2;
  const start = i;
  while (i < s.length && /[0-9a-fA-F]/.test(s[i])) i++;
  if (i === start) return { value: 0n, end: from };
  // strtoumax does the overflow and negation arithmetic; the digits are plain hex here.
  const r = strtoumax(`0x${s.slice(start, i)}`, 0, 0);
  const v = r.overflow ? (1n << 64n) - 1n : r.value;
  return { value: minus ? (-v) & ((1n << 64n) - 1n) : v, end: i };
}

/** `aa:bb:cc:dd:ee:ff[/mask]` for option `label` of extension `ext` (mask 48 when absent). */
export function parseMacMask(ext: string, label: string, s: string): MacMask {
  const bad = () => badValueError(ext, label, s);
  const mac: number[] = [];
  let at = 0;
  for (let i = 0; i < 6; i++) {
    const r = strtoul16(s, at);
    if (r.end === at || r.value > 0xffn) throw bad();
    mac.push(Number(r.value));
    at = r.end;
    if (i < 5) {
      if (s[at] !== ':') throw bad();
      at++;
    } else if (at !== s.length && s[at] !== '/') throw bad();
  }
  if (at === s.length) return { mac, mask: 48 };
  const mask = parseUint(s.slice(at + 1), 48);
  if (mask < 0) throw bad();
  return { mac, mask };
}

/** `AB:CD:EF:00:00:00/48`, as upstream prints it (upper-case hex). */
export function macMaskText(m: MacMask): string {
  return `${m.mac.map((b) => b.toString(16).toUpperCase().padStart(2, '0')).join(':')}/${m.mask}`;
}

/** Per byte of chaddr: the bits the mask takes from the configured address (MSB first). */
export function byteMasks(mask: number): Uint8Array {
  const out = new Uint8Array(6);
  for (let i = 0; i < 6; i++) {
    const bits = Math.max(0, Math.min(8, mask - 8 * i));
    out[i] = (0xff << (8 - bits)) & 0xff;
  }
  return out;
}

/** UDP header + BOOTP fields up to the end of chaddr (8 + 44 bytes) must be present. */
const NEEDED = 8 + 44;
/** chaddr's offset in the UDP payload. */
const CHADDR = 28;

/**
 * Absolute offset of chaddr in an IPv4/UDP packet, or -1 when the packet is
 * too short. The UDP header is taken right after the IP header (IHL), as
 * the kernel's ip_hdrlen / par->thoff: no port, op, cookie or fragment test.
 */
export function chaddrOffset(pkt: PacketContext): number {
  const ihl = (pkt.buf[pkt.l3off] & 0x0f) * 4;
  if (pkt.l3len < ihl + NEEDED) return -1;
  return pkt.l3off + ihl + 8 + CHADDR;
}
