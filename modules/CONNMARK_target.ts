/**
 * `-j CONNMARK` (revision 1): set the connection's mark (--set-xmark,
 * --set-mark, --and/or/xor-mark), copy packet mark to connection
 * (--save-mark) or back (--restore-mark) with --nfmask/--ctmask/--mask, as
 * libxt_CONNMARK + xt_connmark. The masks also combine with the set
 * operations, in the order given (iptables 1.8.9 takes "--set-mark 1
 * --mask 2" as --set-xmark 0x1/0x2). Packets without a connection are left
 * alone.
 *
 * File name: TypeScript 7 refuses two files whose names differ only in
 * case, so this target cannot be `CONNMARK.ts` next to the `connmark` match.
 */
import type { PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';
import { hex, parseUintOption } from './lib/numbers.js';
import { printXmark, xmarkFrom } from './lib/marks.js';
import { x6Check } from './lib/options.js';

export const enum ConnmarkMode {
  SET = 0,
  SAVE = 1,
  RESTORE = 2,
}

export interface ConnmarkParams {
  mode: ConnmarkMode;
  /** SET: the xmark value. */
  value: number;
  ctmask: number;
  nfmask: number;
}

const OPS = ['set-xmark', 'save-mark', 'restore-mark', 'and-mark', 'or-mark', 'xor-mark', 'set-mark'];

const CONNMARK: TargetExtension<ConnmarkParams> = {
  kind: 'target',
  name: 'CONNMARK',
  revision: 1,
  families: [4, 6],
  needsConntrack: () => true,
  options: [...OPS, 'nfmask', 'ctmask', 'mask'].map((name) => ({ name, arg: OPS.includes(name) && name.endsWith('-mark') && (name === 'save-mark' || name === 'restore-mark') ? ('none' as const) : ('required' as const) })),
  parse(opts) {
    // libxt_CONNMARK's option table order, which decides which of two clashing options its message names first.
    const tableOrder = ['set-xmark', 'set-mark', 'and-mark', 'or-mark', 'xor-mark', 'save-mark', 'restore-mark'];
    x6Check('CONNMARK', opts, [
      ...tableOrder.map((name) => ({ name, excl: OPS.filter((n) => n !== name) })),
      { name: 'nfmask', excl: ['mask'] },
      { name: 'ctmask', excl: ['mask'] },
      { name: 'mask', excl: ['nfmask', 'ctmask'] },
    ]);
    // Applied in the order given, as libxt_CONNMARK does: an operation sets the mode and the masks
    // it implies, --ctmask/--nfmask/--mask overwrite masks where they stand. So
    // "--set-mark 1 --mask 2" is --set-xmark 0x1/0x2, while "--mask 2 --set-mark 1" keeps 0xffffffff.
    let mode = -1;
    let value = 0;
    let ctmask = 0xffffffff;
    let nfmask = 0xffffffff;
    for (const o of opts) {
      if (o.name === 'save-mark') mode = ConnmarkMode.SAVE;
      else if (o.name === 'restore-mark') mode = ConnmarkMode.RESTORE;
      else if (o.name === 'ctmask') ctmask = parseUintOption('CONNMARK', o.name, o.value ?? '');
      else if (o.name === 'nfmask') nfmask = parseUintOption('CONNMARK', o.name, o.value ?? '');
      else if (o.name === 'mask') ctmask = nfmask = parseUintOption('CONNMARK', o.name, o.value ?? '');
      else {
        const x = xmarkFrom('CONNMARK', o);
        mode = ConnmarkMode.SET;
        value = x.value;
        ctmask = x.mask;
      }
    }
    if (mode < 0) throw new XtError('CONNMARK target: No operation specified');
    return { mode: mode as ConnmarkMode, value, ctmask, nfmask };
  },
  check(p) {
    const { mode, value, ctmask, nfmask } = p;
    return {
      target(pkt: PacketContext): number {
        const ct = pkt.ct;
        if (ct === null) return XT_CONTINUE;
        if (mode === ConnmarkMode.SET) ct.mark = ((ct.mark & ~ctmask) ^ value) >>> 0;
        else if (mode === ConnmarkMode.SAVE) ct.mark = ((ct.mark & ~ctmask) ^ (pkt.mark & nfmask)) >>> 0;
        else pkt.mark = ((pkt.mark & ~nfmask) ^ (ct.mark & ctmask)) >>> 0;
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    if (p.mode === ConnmarkMode.SET) return ` --set-xmark ${hex(p.value)}/${hex(p.ctmask)}`;
    return ` --${p.mode === ConnmarkMode.SAVE ? 'save' : 'restore'}-mark --nfmask ${hex(p.nfmask)} --ctmask ${hex(p.ctmask)}`;
  },
  print(p) {
    if (p.mode === ConnmarkMode.SET) return printXmark('CONNMARK', p.value, p.ctmask);
    const all = 0xffffffff;
    if (p.mode === ConnmarkMode.SAVE) {
      if (p.nfmask === all && p.ctmask === all) return ' CONNMARK save';
      if (p.nfmask === p.ctmask) return ` CONNMARK save mask ${hex(p.nfmask)}`;
      return ` CONNMARK save nfmask ${hex(p.nfmask)} ctmask ~${hex(p.ctmask)}`;
    }
    if (p.nfmask === all && p.ctmask === all) return ' CONNMARK restore';
    if (p.nfmask === p.ctmask) return ` CONNMARK restore mask ${hex(p.ctmask)}`;
    return ` CONNMARK restore ctmask ${hex(p.ctmask)} nfmask ~${hex(p.nfmask)}`;
  },
};

export default CONNMARK;
