/**
 * `-j DHCPMAC --set-mac aa:bb:cc:dd:ee:ff[/mask]` (xtables-addons, IPv4,
 * mangle, `-p udp`): overwrites the client hardware address (chaddr) of a
 * BOOTP/DHCP message and fixes the UDP checksum, so a DHCP server sees the
 * MAC an administrator chose instead of a virtualisation vendor's.
 *
 * The first `mask` bits of chaddr come from the given address and the rest
 * keep theirs, as the man page promises ("the prefix length of bits to
 * change"); upstream's parser drops the mask so it always replaces all 48
 * bits (docs/compat.md: DHCPMAC, dhcpmac). Without a mask both agree.
 *
 * As xt_DHCPMAC (v2.9+): chaddr at UDP payload offset 28 after the IP
 * header's IHL; a packet shorter than that plus 44 bytes is dropped; the
 * checksum is updated word by word over the 16 bytes of chaddr (RFC 1624),
 * and a zero UDP checksum is adjusted like any other (it becomes a wrong
 * non-zero one when the address changes); no port or cookie test.
 *
 * File name: TypeScript refuses two files whose names differ only in case,
 * so this target cannot be `DHCPMAC.ts` next to the `dhcpmac` match.
 */
import { Verdict, type PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';
import { getU16, setU16 } from '../dataplane/bytes.js';
import { csumReplace2 } from '../dataplane/checksum.js';
import { byteMasks, chaddrOffset, macMaskText, parseMacMask, type MacMask } from './lib/dhcp-mac.js';
import { paramAct } from './lib/param-act.js';

/** The UDP checksum's offset back from chaddr: UDP header (8) + 28 - 6. */
const CHECK_BEFORE_CHADDR = 8 + 28 - 6;

const DHCPMAC: TargetExtension<MacMask> = {
  kind: 'target',
  name: 'DHCPMAC',
  families: [4],
  tables: ['mangle'],
  proto: 17,
  options: [{ name: 'set-mac', arg: 'required', invertible: true }],
  parse(opts) {
    let p: MacMask | null = null;
    paramAct('DHCPMAC', opts, { 'set-mac': '--set-mac' }, (_name, v) => {
      p = parseMacMask('DHCPMAC', '--set-mac', v);
    });
    if (p === null) throw new XtError('DHCPMAC target: --set-mac parameter required');
    return p;
  },
  check(p) {
    const want = Uint8Array.from(p.mac);
    const masks = byteMasks(p.mask);
    return {
      target(pkt: PacketContext): number {
        const at = chaddrOffset(pkt);
        if (at < 0) return Verdict.DROP;
        const b = pkt.buf;
        const checkAt = at - CHECK_BEFORE_CHADDR;
        let check = getU16(b, checkAt);
        for (let i = 0; i < 16; i += 2) check = csumReplace2(check, getU16(b, at + i), 0);
        for (let i = 0; i < 6; i++) b[at + i] = (b[at + i] & ~masks[i]) | (want[i] & masks[i]);
        for (let i = 0; i < 16; i += 2) check = csumReplace2(check, 0, getU16(b, at + i));
        setU16(b, checkAt, check);
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    return ` --set-mac ${macMaskText(p)} `;
  },
  print(p) {
    return ` -j DHCPMAC --set-mac ${macMaskText(p)} `;
  },
};

export default DHCPMAC;
