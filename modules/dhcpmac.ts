/**
 * `-m dhcpmac --mac aa:bb:cc:dd:ee:ff[/mask]` (xtables-addons, IPv4, `-p udp`):
 * matches the client hardware address (chaddr) of a BOOTP/DHCP message, to
 * pick out the requests of one NIC vendor's machines (VMware's 00:50:56).
 *
 * The mask is honoured as the man page promises ("the prefix length of the
 * initial portion to match"): the first `mask` bits of chaddr are compared.
 * Upstream parses the mask but never stores it (always 48, printed as /48),
 * which makes the man page's own /24 example match one address only; see
 * docs/compat.md (DHCPMAC, dhcpmac).
 *
 * Any UDP datagram with at least 44 payload bytes is inspected (no port,
 * op or cookie test, as upstream); a shorter one does not match. `!` is
 * refused, as upstream's parser refuses it whatever its help shows.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension } from '../xt/extension.js';
import { byteMasks, chaddrOffset, macMaskText, parseMacMask, type MacMask } from './lib/dhcp-mac.js';
import { paramAct } from './lib/param-act.js';

const dhcpmac: MatchExtension<MacMask> = {
  kind: 'match',
  name: 'dhcpmac',
  families: [4],
  proto: 17,
  options: [{ name: 'mac', arg: 'required', invertible: true }],
  parse(opts) {
    let p: MacMask | null = null;
    paramAct('dhcpmac', opts, { mac: '--mac' }, (_name, v) => {
      p = parseMacMask('dhcpmac', '--mac', v);
    });
    if (p === null) throw new XtError('dhcpmac match: --mac parameter required');
    return p;
  },
  check(p) {
    const want = Uint8Array.from(p.mac);
    const masks = byteMasks(p.mask);
    return {
      match(pkt: PacketContext): boolean {
        const at = chaddrOffset(pkt);
        if (at < 0) return false;
        const b = pkt.buf;
        for (let i = 0; i < 6; i++) if (((b[at + i] ^ want[i]) & masks[i]) !== 0) return false;
        return true;
      },
    };
  },
  save(p) {
    return ` --mac ${macMaskText(p)} `;
  },
  print(p) {
    return ` -m dhcpmac --mac ${macMaskText(p)} `;
  },
};

export default dhcpmac;
