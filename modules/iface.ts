/**
 * `-m iface (--iface NAME | --dev-in | --dev-out) [!] --up|--down|--broadcast|
 * --loopback|--pointopoint|--running|--noarp|--arp|--promisc|--multicast|
 * --dynamic|--lower-up|--dormant ...` (xtables-addons xt_iface, revision 0):
 * tests flags of an interface (matches-facts.md §7), answered from xtr's
 * own interfaces through services.iface(name).
 *
 *  - the interface is looked up per packet, so one created, renamed or
 *    removed after the rule went in counts at once; none (no such name, no
 *    input interface for a locally generated packet, no output interface
 *    before routing) is false whatever the inversions;
 *  - every requested test must hold: flag set == not inverted;
 *  - `--down` is `! --up`, `--arp` is `! --noarp`, `--pointtopoint` is
 *    `--pointopoint`; `!` before --dev-in/--dev-out is accepted and ignored.
 *
 * Where xtr differs (docs/compat.md): the kernel tests the raw flag word,
 * which never carries RUNNING, LOWER_UP or DORMANT, so upstream's
 * `--running`/`--lower-up`/`--dormant` never match; xtr answers them from
 * the interface's real state (a TUN/TAP whose fd xtr holds is RUNNING and
 * LOWER_UP), as the man page describes them. `--lower-up` is saved as
 * upstream's userspace saves it, `--lower_up` - which its parser refuses;
 * xtr's parser accepts `--lower_up` too so a saved rule set restores.
 */
import type { PacketContext } from '../xt/packet.js';
import { type MatchExtension, type OptionSpec, XtError } from '../xt/extension.js';
import type { IfaceFacts, IfaceFlags } from '../xt/services.js';

/** Flag tests in upstream's bit order: [option, name in messages and save, bit, flag of IfaceFlags]. */
const FLAGS: readonly (readonly [string, string, number, keyof IfaceFlags])[] = [
  ['up', 'up', 1 << 0, 'up'],
  ['broadcast', 'broadcast', 1 << 1, 'broadcast'],
  ['loopback', 'loopback', 1 << 2, 'loopback'],
  ['pointopoint', 'pointopoint', 1 << 3, 'pointopoint'],
  ['running', 'running', 1 << 4, 'running'],
  ['noarp', 'noarp', 1 << 5, 'noarp'],
  ['promisc', 'promisc', 1 << 6, 'promisc'],
  ['multicast', 'multicast', 1 << 7, 'multicast'],
  ['dynamic', 'dynamic', 1 << 8, 'dynamic'],
  ['lower-up', 'lower_up', 1 << 9, 'lowerUp'],
  ['dormant', 'dormant', 1 << 10, 'dormant'],
];
const DEV_IN = 1 << 11;
const DEV_OUT = 1 << 12;
const IFNAMSIZ = 16;

/** Spellings that stand for another option, inverting it or not. */
const SYNONYMS: Record<string, readonly [string, boolean]> = {
  down: ['up', true],
  arp: ['noarp', true],
  pointtopoint: ['pointopoint', false],
  lower_up: ['lower-up', false],
};

export interface IfaceParams {
  /** Interface name, or '' with --dev-in / --dev-out. */
  readonly name: string;
  /** Requested tests and selectors (upstream's bits). */
  readonly flags: number;
  /** Inverted tests. */
  readonly inv: number;
}

function validName(name: string): boolean {
  return Buffer.byteLength(name) < IFNAMSIZ && !/[.+!*]/.test(name);
}

const OPTIONS: OptionSpec[] = [
  { name: 'iface', arg: 'required', invertible: true },
  { name: 'dev-in', arg: 'none', invertible: true },
  { name: 'dev-out', arg: 'none', invertible: true },
  ...FLAGS.map(([name]) => ({ name, arg: 'none' as const, invertible: true })),
  ...Object.keys(SYNONYMS).map((name) => ({ name, arg: 'none' as const, invertible: true })),
];

function flagsOf(dev: IfaceFacts | null, flags: number, inv: number): boolean {
  if (dev === null) return false;
  const f = dev.flags;
  for (let i = 0; i < FLAGS.length; i++) {
    const bit = FLAGS[i][2];
    if ((flags & bit) !== 0 && f[FLAGS[i][3]] === ((inv & bit) !== 0)) return false;
  }
  return true;
}

const iface: MatchExtension<IfaceParams> = {
  kind: 'match',
  name: 'iface',
  revision: 0,
  families: [4, 6],
  options: OPTIONS,
  parse(opts) {
    let name = '';
    let selected = false;
    let flags = 0;
    let inv = 0;
    const setFlag = (bit: number, invert: boolean, label: string) => {
      if (flags & bit) throw new XtError(`iface: "--${label}" flag already specified`);
      flags |= bit;
      if (invert) inv |= bit;
    };
    for (const o of opts) {
      let opt = o.name;
      let invert = o.inverted;
      const syn = SYNONYMS[opt];
      if (syn) {
        opt = syn[0];
        if (syn[1]) invert = !invert;
      }
      if (opt === 'iface') {
        if (selected) throw new XtError('iface: Interface name already specified');
        const v = o.value ?? '';
        if (!validName(v)) throw new XtError('iface: Invalid interface name!');
        name = v;
        selected = true;
      } else if (opt === 'dev-in' || opt === 'dev-out') {
        if (selected) throw new XtError(`iface: "--${opt}" option may only be specified once`);
        selected = true;
        setFlag(opt === 'dev-in' ? DEV_IN : DEV_OUT, invert, opt);
      } else {
        const row = FLAGS.find((r) => r[0] === opt)!;
        setFlag(row[2], invert, row[1]);
      }
    }
    if (!selected) throw new XtError('iface: You must specify an interface');
    if ((flags & ~(DEV_IN | DEV_OUT)) === 0) throw new XtError('iface: You must specify at least one option');
    return { name, flags, inv };
  },
  check(p, env) {
    const { name, flags, inv } = p;
    const services = env.services;
    if (flags & DEV_IN) {
      return { match: (pkt: PacketContext) => pkt.inIf !== null && flagsOf(services.iface(pkt.inIf.name), flags, inv) };
    }
    if (flags & DEV_OUT) {
      return { match: (pkt: PacketContext) => pkt.outIf !== null && flagsOf(services.iface(pkt.outIf.name), flags, inv) };
    }
    return { match: () => flagsOf(services.iface(name), flags, inv) };
  },
  save(p) {
    let s = p.flags & DEV_IN ? ' --dev-in' : p.flags & DEV_OUT ? ' --dev-out' : ` --iface ${p.name}`;
    for (const [, label, bit] of FLAGS) if (p.flags & bit) s += ` ${p.inv & bit ? '! ' : ''}--${label}`;
    return `${s} `;
  },
  print(p) {
    return ` -m iface${iface.save(p)}`;
  },
};

export default iface;
