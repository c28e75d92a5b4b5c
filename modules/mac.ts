/**
 * `-m mac --mac-source XX:XX:XX:XX:XX:XX`: the Ethernet source address of
 * a frame received on a TAP interface (xt_mac). Packets without an Ethernet
 * header (TUN, locally generated) never match, even with `!`. Only in
 * chains reachable from PREROUTING, INPUT or FORWARD, as in the kernel.
 */
import { Hook, type PacketContext } from '../xt/packet.js';
import { getU48 } from '../dataplane/bytes.js';
import { XtError, type MatchExtension } from '../xt/extension.js';

function macText(mac: number): string {
  const hexes: string[] = [];
  for (let i = 5; i >= 0; i--) hexes.push((Math.floor(mac / 2 ** (8 * i)) & 0xff).toString(16).padStart(2, '0'));
  return hexes.join(':');
}

export interface MacParams {
  /** 48-bit address as an exact integer. */
  mac: number;
  inv: boolean;
}

const mac: MatchExtension<MacParams> = {
  kind: 'match',
  name: 'mac',
  families: [4, 6],
  hooks: [Hook.PREROUTING, Hook.INPUT, Hook.FORWARD],
  options: [{ name: 'mac-source', arg: 'required', invertible: true }],
  parse(opts) {
    let p: MacParams | null = null;
    for (const o of opts) {
      if (p) throw new XtError('mac: option "--mac-source" can only be used once.\n');
      const m = /^([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})$/.exec(o.value ?? '');
      if (!m) throw new XtError('Invalid MAC address specified.');
      let v = 0;
      for (let i = 1; i <= 6; i++) v = v * 256 + parseInt(m[i], 16);
      p = { mac: v, inv: o.inverted };
    }
    if (!p) throw new XtError('mac: option "--mac-source" must be specified\n');
    return p;
  },
  check(p) {
    const { mac: want, inv } = p;
    return {
      match(pkt: PacketContext): boolean {
        if (pkt.l2off < 0 || pkt.l2off + 14 > pkt.l3off) return false;
        return (getU48(pkt.buf, pkt.l2off + 6) === want) !== inv;
      },
    };
  },
  save(p) {
    return `${p.inv ? ' !' : ''} --mac-source ${macText(p.mac)}`;
  },
  print(p) {
    return ` MAC${p.inv ? ' !' : ''} ${macText(p.mac)}`;
  },
};

export default mac;
