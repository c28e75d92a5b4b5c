/**
 * `-j CONNMARK` (revision 1): set the connection's mark (--set-xmark,
 * --set-mark, --and/or/xor-mark), copy packet mark to connection
 * (--save-mark) or back (--restore-mark) with --nfmask/--ctmask/--mask, as
 * libxt_CONNMARK + xt_connmark. Packets without a connection are left alone.
 *
 * File name: TypeScript 7 refuses two files whose names differ only in
 * case, so this target cannot be `CONNMARK.ts` next to the `connmark` match.
 */
import type { PacketContext } from '../router/packet.js';
import type { ConnEntry } from '../router/conntrack.js';
import { hex, parseUintOption, x6Check } from './mark.js';
import { printXmark, xmarkFrom } from './MARK_target.js';
import { XT_CONTINUE, XtError, type TargetExtension } from './types.js';

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
    const given = x6Check('CONNMARK', opts, [
      ...tableOrder.map((name) => ({ name, excl: OPS.filter((n) => n !== name) })),
      { name: 'nfmask', excl: ['mask'] },
      { name: 'ctmask', excl: ['mask'] },
      { name: 'mask', excl: ['nfmask', 'ctmask'] },
    ]);
    const op = OPS.find((n) => given.has(n));
    if (!op) throw new XtError('CONNMARK target: No operation specified');
    const maskOf = (name: string): number => {
      const o = given.get(name);
      if (!o) return 0xffffffff;
      return parseUintOption('CONNMARK', name, o.value ?? '');
    };
    if (op === 'save-mark' || op === 'restore-mark') {
      const both = maskOf('mask');
      return {
        mode: op === 'save-mark' ? ConnmarkMode.SAVE : ConnmarkMode.RESTORE,
        value: 0,
        nfmask: given.has('mask') ? both : maskOf('nfmask'),
        ctmask: given.has('mask') ? both : maskOf('ctmask'),
      };
    }
    for (const m of ['nfmask', 'ctmask', 'mask']) {
      if (given.has(m)) throw new XtError(`CONNMARK: option "--${m}" is only valid with --save-mark or --restore-mark`);
    }
    const x = xmarkFrom('CONNMARK', given.get(op)!);
    return { mode: ConnmarkMode.SET, value: x.value, ctmask: x.mask, nfmask: 0 };
  },
  check(p) {
    const { mode, value, ctmask, nfmask } = p;
    return {
      target(pkt: PacketContext): number {
        const ct = pkt.ct as ConnEntry | null;
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
