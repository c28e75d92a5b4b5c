/**
 * Whether a packet's TCP/UDP checksum is good, as the kernel's
 * nf_ip_checksum / nf_ip6_checksum decide it for the targets that answer a
 * packet (REJECT, TARPIT, DELUDE): summed over pkt.l4off .. + l4len with the
 * pseudo-header of the packet's addresses; a super-packet whose checksum is
 * partial (pkt.csumPartial, the kernel's CHECKSUM_PARTIAL) counts as good
 * without summing, as the kernel does not sum one either.
 */
import { fold, pseudoSum4, pseudoSum6Words, sum16 } from '../../dataplane/checksum.js';
import type { PacketContext } from '../../xt/packet.js';

export function l4ChecksumGood(pkt: PacketContext): boolean {
  if (pkt.csumPartial) return true;
  const len = pkt.l4len;
  const pseudo = pkt.family === 4 ? pseudoSum4(pkt.src4, pkt.dst4, pkt.proto, len) : pseudoSum6Words(pkt.src6, pkt.dst6, pkt.proto, len);
  return fold(sum16(pkt.buf, pkt.l4off, len, pseudo)) === 0xffff;
}
