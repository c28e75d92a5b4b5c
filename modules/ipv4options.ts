/**
 * `-m ipv4options [--flags [!]sym[,[!]sym...]] [--any]` (xtables-addons
 * xt_ipv4options, revision 1, IPv4 only): presence or absence of IPv4
 * header options (matches-facts.md §9).
 *
 *  - sym is a name (nop security lsrr timestamp record-route ssrr mtu-probe
 *    mtu-reply traceroute router-alert) or a number 1..255; `!` in front
 *    means "must be absent"; --flags accumulates over repeats; neither
 *    option takes `!` itself;
 *  - the options area is walked as upstream walks it: END stops, NOP skips
 *    one byte and is *not recorded* (so `--flags nop` never matches), any
 *    other option records bit (type & 0x1f) when its length byte is 2..what
 *    is left, and a bad length stops the walk keeping what was seen;
 *  - seen ^= invert, &= map; --any: any bit left; otherwise all of map.
 *
 * Numbers 32..255 pass upstream's parser and set bit (n mod 32) - the C
 * shift `1 << n` on x86 - so `--flags 33` is `--flags 1` there; xtr does the
 * same (docs/compat.md).
 */
import type { PacketContext } from '../xt/packet.js';
import { type MatchExtension, XtError } from '../xt/extension.js';
import { parseUint } from './lib/numbers.js';

const NAMES: readonly (string | undefined)[] = (() => {
  const n: (string | undefined)[] = new Array(32);
  n[1] = 'nop';
  n[2] = 'security';
  n[3] = 'lsrr';
  n[4] = 'timestamp';
  n[7] = 'record-route';
  n[9] = 'ssrr';
  n[11] = 'mtu-probe';
  n[12] = 'mtu-reply';
  n[18] = 'traceroute';
  n[20] = 'router-alert';
  return n;
})();

export interface Ipv4optionsParams {
  /** Bit n: option n is mentioned. */
  readonly map: number;
  /** Bit n: option n must be absent. */
  readonly invert: number;
  readonly any: boolean;
}

function parseFlagSpec(arg: string, acc: { map: number; invert: number }): void {
  for (const word of arg.split(',')) {
    let tok = word;
    let inv = false;
    if (tok.startsWith('!')) {
      inv = true;
      tok = tok.slice(1);
    }
    let opt = NAMES.indexOf(tok);
    if (opt < 1) {
      opt = parseUint(tok, 255);
      if (opt < 0) throw new XtError(`ipv4options: Bad option value "${tok}"`);
    }
    if (opt === 0) throw new XtError('ipv4options: Option value may not be zero');
    const bit = 1 << (opt & 31);
    acc.map |= bit;
    if (inv) acc.invert |= bit;
  }
}

/** The options the header carries, as upstream's walk records them (bit n = option number n). */
export function recordedOptions(buf: Uint8Array, l3off: number): number {
  const ihl = (buf[l3off] & 0x0f) * 4;
  let at = l3off + 20;
  let len = ihl - 20;
  let opts = 0;
  while (len >= 2) {
    const type = buf[at];
    if (type === 0) return opts;
    if (type === 1) {
      len--;
      at++;
      continue;
    }
    const l = buf[at + 1];
    if (l < 2 || l > len) return opts;
    opts |= 1 << (type & 0x1f);
    len -= l;
    at += l;
  }
  return opts;
}

/** The --flags list as upstream saves (and, since 2.3, prints) it: numbers in bit order, `!` for absence. */
function flagList(p: Ipv4optionsParams): string {
  const out: string[] = [];
  for (let i = 1; i < 32; i++) {
    const bit = 1 << i;
    if ((p.map & bit) !== 0) out.push(`${p.invert & bit ? '!' : ''}${i}`);
  }
  return out.join(',');
}

const ipv4options: MatchExtension<Ipv4optionsParams> = {
  kind: 'match',
  name: 'ipv4options',
  revision: 1,
  families: [4],
  // `!` is taken so that the extension's own "cannot be inverted" is the message.
  options: [
    { name: 'flags', arg: 'required', invertible: true },
    { name: 'any', arg: 'none', invertible: true },
  ],
  parse(opts) {
    const acc = { map: 0, invert: 0 };
    let any = false;
    for (const o of opts) {
      if (o.inverted) throw new XtError(`ipv4options: "--${o.name}" option cannot be inverted`);
      if (o.name === 'any') any = true;
      else parseFlagSpec(o.value ?? '', acc);
    }
    return { map: acc.map | 0, invert: acc.invert | 0, any };
  },
  check(p) {
    const { map, invert, any } = p;
    return {
      match(pkt: PacketContext): boolean {
        const seen = ((pkt.buf[pkt.l3off] & 0x0f) > 5 ? recordedOptions(pkt.buf, pkt.l3off) : 0) ^ invert;
        const r = seen & map;
        return any ? r !== 0 : r === map;
      },
    };
  },
  save(p) {
    let s = p.map !== 0 ? ` --flags ${flagList(p)}` : '';
    if (p.any) s += ' --any';
    return `${s} `;
  },
  print(p) {
    return ` -m ipv4options${ipv4options.save(p)}`;
  },
};

export default ipv4options;
