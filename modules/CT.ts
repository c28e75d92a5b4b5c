/**
 * `-t raw -j CT --notrack` (xt_CT). Only --notrack has an effect in xtr:
 * conntrack helpers, zones, event masks and timeout policies do not exist
 * here, so those options are refused with an error that says so rather
 * than silently ignored. `-j CT` without options is accepted and does
 * nothing, as an empty template does in the kernel.
 */
import type { PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';

const UNSUPPORTED = ['helper', 'ctevents', 'expevents', 'zone', 'zone-orig', 'zone-reply', 'timeout'];

export interface CtParams {
  notrack: boolean;
}

const CT: TargetExtension<CtParams> = {
  kind: 'target',
  name: 'CT',
  revision: 2,
  families: [4, 6],
  // xt_CT takes conntrack for a template, not for --notrack (measured: NOTRACK alone leaves fragments alone).
  needsConntrack: (p) => !p.notrack,
  tables: ['raw'],
  options: [{ name: 'notrack', arg: 'none' }, ...UNSUPPORTED.map((name) => ({ name, arg: 'required' as const }))],
  parse(opts) {
    const p: CtParams = { notrack: false };
    for (const o of opts) {
      if (o.name === 'notrack') {
        if (p.notrack) throw new XtError('CT: option "--notrack" can only be used once.\n');
        p.notrack = true;
      } else {
        throw new XtError(`CT: option "--${o.name}" is not supported by xtr (no conntrack helpers, zones, events or timeout policies)`);
      }
    }
    return p;
  },
  check(p) {
    const notrack = p.notrack;
    return {
      target(pkt: PacketContext): number {
        if (notrack && pkt.ct === null) pkt.notrack = true;
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    return p.notrack ? ' --notrack' : '';
  },
  print(p) {
    return p.notrack ? ' CT notrack' : ' CT';
  },
};

export default CT;
