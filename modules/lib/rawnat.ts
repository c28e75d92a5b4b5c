/**
 * RAWSNAT / RAWDNAT (xtables-addons xt_RAWNAT, v1.15-v2.3): a stateless
 * rewrite of the source or destination prefix, outside connection tracking.
 * The two targets differ only in the end they rewrite and their option name,
 * so both records are built here (the registry does not scan modules/lib/).
 *
 * Facts (targets-facts §11) and where xtr differs on purpose (docs/compat.md,
 * "RAWSNAT / RAWDNAT"):
 *  - `--to-source|--to-destination addr[/len]`, numeric only, required; no
 *    once-only or `!` checks (the last occurrence wins); host bits are kept
 *    as given and only the first `len` bits are used;
 *  - raw or rawpost table only, any chain (xt_RAWNAT's checkentry words);
 *  - new = (first len bits of the configured address) | (rest of the packet's);
 *  - checksums as upstream: IPv4 header, TCP/UDP/UDP-Lite pseudo-header, a
 *    zero UDP checksum stays zero (both families), the packet inside an ICMP
 *    error is NOT translated. Upstream defects not reproduced: ICMPv6's
 *    checksum is updated (upstream leaves it wrong), a non-first IPv4
 *    fragment keeps its payload (upstream patches "checksum" bytes in it),
 *    IPv6 lengths 65-95 keep the packet's bits after the length (upstream
 *    replaces the whole third word) and DCCP's checksum is updated too.
 */
import type { Family, PacketContext } from '../../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../../xt/extension.js';
import { End, setAddress4, setAddress6 } from '../../dataplane/mangle.js';
import { ipv4FromText, DottedQuad, ipv6FromText, prefixMaskWord } from '../../dataplane/addr.js';
import { addrToString } from './addresses.js';

export interface RawnatParams {
  family: Family;
  /** The configured address as given (host bits kept, as upstream stores it). */
  addr: number[];
  len: number;
}

/** What differs between RAWSNAT and RAWDNAT. */
interface Flavour {
  readonly name: 'RAWSNAT' | 'RAWDNAT';
  readonly option: 'to-source' | 'to-destination';
  readonly end: End;
}

/** Reads `addr[/len]` as libxt_RAWNAT does: a numeric address, a decimal length within the family's bits. */
function parseTo(f: Flavour, family: Family, value: string): RawnatParams {
  const slash = value.indexOf('/');
  const addrText = slash < 0 ? value : value.slice(0, slash);
  const bad = () => new XtError(`${f.name}: Bad value for "--${f.option}" option: "${addrText}"`);
  const addr = [0, 0, 0, 0];
  if (family === 4) {
    const a = ipv4FromText(addrText, DottedQuad.STRICT);
    if (a < 0) throw bad();
    addr[0] = a;
  } else {
    const w = ipv6FromText(addrText, DottedQuad.STRICT);
    if (w === null) throw bad();
    for (let i = 0; i < 4; i++) addr[i] = w[i];
  }
  const max = family === 4 ? 32 : 128;
  let len = max;
  if (slash >= 0) {
    const m = value.slice(slash + 1);
    if (!/^[0-9]+$/.test(m) || Number(m) > max) throw bad();
    len = Number(m);
  }
  return { family, addr, len };
}

function text(p: RawnatParams): string {
  return addrToString(Uint32Array.from(p.addr), p.family);
}

export function rawnatTarget(f: Flavour): TargetExtension<RawnatParams> {
  return {
    kind: 'target',
    name: f.name,
    families: [4, 6],
    // No table/hook list in the record: the table refusal has xt_RAWNAT's own words (check).
    // `!` is accepted and ignored, as libxt_RAWNAT's parser never looks at it.
    options: [{ name: f.option, arg: 'required', invertible: true }],
    parse(opts, rule) {
      let p: RawnatParams | null = null;
      for (const o of opts) p = parseTo(f, rule.family, o.value ?? '');
      if (p === null) throw new XtError(`${f.name}: "--${f.option}" is required.`);
      return p;
    },
    check(p, env) {
      if (env.rule.table !== 'raw' && env.rule.table !== 'rawpost') {
        throw new XtError('xt_RAWNAT may only be used in the "raw" or "rawpost" table.', 1, 'EINVAL');
      }
      const words = p.family === 4 ? 1 : 4;
      const mask = new Uint32Array(4);
      const addr = new Uint32Array(4);
      for (let i = 0; i < words; i++) {
        mask[i] = prefixMaskWord(p.len, i);
        addr[i] = (p.addr[i] & mask[i]) >>> 0;
      }
      const end = f.end;
      const scratch = new Uint32Array(4);
      if (p.len === 0) return { target: () => XT_CONTINUE };
      if (p.family === 4) {
        const m = mask[0];
        const a = addr[0];
        return {
          target(pkt: PacketContext) {
            const old = end === End.SRC ? pkt.src4 : pkt.dst4;
            const now = ((old & ~m) | a) >>> 0;
            if (now !== old) setAddress4(pkt, end, now);
            return XT_CONTINUE;
          },
        };
      }
      return {
        target(pkt: PacketContext) {
          const old = end === End.SRC ? pkt.src6 : pkt.dst6;
          let same = true;
          for (let i = 0; i < 4; i++) {
            scratch[i] = ((old[i] & ~mask[i]) | addr[i]) >>> 0;
            if (scratch[i] !== old[i]) same = false;
          }
          // keepZeroUdp: xt_RAWNAT leaves a zero UDP checksum alone in both families.
          if (!same) setAddress6(pkt, end, scratch, true);
          return XT_CONTINUE;
        },
      };
    },
    save: (p) => ` --${f.option} ${text(p)}/${p.len}`,
    print: (p) => ` ${f.option} ${text(p)}${p.len === (p.family === 4 ? 32 : 128) ? '' : `/${p.len}`}`,
  };
}

