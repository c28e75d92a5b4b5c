/**
 * `-j CHECKSUM --checksum-fill` (mainline's xt_CHECKSUM, IPv4 and IPv6,
 * mangle table): completes a transport checksum left pending for checksum
 * offload (CHECKSUM_PARTIAL: only the pseudo-header sum written), for old
 * DHCP clients that read such packets off a virtio/tap link and drop them.
 *
 * In xtr no packet is ever pending: its TUN/TAP devices advertise no
 * offload (no TUNSETOFFLOAD), so the kernel completes every checksum before
 * handing a packet over, and the native reader completes a virtio-net
 * NEEDS_CSUM packet in place should one arrive (dataplane/native/tun.c,
 * vnet_complete_csum); packets xtr builds are complete. A pending checksum
 * is therefore always already filled when a rule sees the packet, which is
 * what the kernel's target produces, and the kernel's target leaves every
 * complete packet - including one with a wrong checksum - as it is. So the
 * packet function has nothing to do and changes nothing; the bytes xtr
 * forwards equal those the kernel forwards with this rule
 * (test/differential-tee-checksum.test.ts, where the kernel without the rule
 * forwards the pending form).
 *
 * The checks are the kernel's: mangle only; a rule that is not `-p udp`
 * (not inverted) is accepted with the kernel's one-time warning.
 */
import type { PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';

export interface ChecksumParams {
  /** XT_CHECKSUM_OP_FILL */
  fill: true;
}

let warned = false;

const CHECKSUM: TargetExtension<ChecksumParams> = {
  kind: 'target',
  name: 'CHECKSUM',
  families: [4, 6],
  tables: ['mangle'],
  options: [{ name: 'checksum-fill', arg: 'none' }],
  parse(opts) {
    if (opts.length > 1) throw new XtError('CHECKSUM: option "--checksum-fill" can only be used once.\n');
    if (opts.length === 0) throw new XtError('CHECKSUM: option "--checksum-fill" must be specified\n');
    return { fill: true };
  },
  check(_p, env) {
    if ((env.rule.proto !== 17 || env.rule.protoInverted) && !warned) {
      // pr_warn_once in checksum_tg_check
      warned = true;
      env.services.log(4, 'CHECKSUM should be avoided.  If really needed, restrict with "-p udp" and only use in OUTPUT');
    }
    return {
      target(_pkt: PacketContext): number {
        return XT_CONTINUE;
      },
    };
  },
  save() {
    return ' --checksum-fill';
  },
  print() {
    return ' CHECKSUM fill';
  },
};

export default CHECKSUM;
