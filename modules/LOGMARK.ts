/**
 * `-j LOGMARK [--log-level N] [--log-prefix TEXT]` (xtables-addons, IPv4 and
 * IPv6, any table and chain): one log line per packet with its marks and
 * conntrack state, for debugging mark-based policy routing and CONNMARK:
 *
 *   <4>fw: iif=2 hook=FORWARD nfmark=0x10 secmark=0x0 classify=0x0 ctdir=ORIGINAL
 *     ct=0x00000000c0ffee01 ctmark=0x0 ctstate=ESTABLISHED ctstatus=SEEN_REPLY,ASSURED,CONFIRMED lifetime=431999s
 *
 * (one line), as xt_LOGMARK prints it: the `<level>` literally (modern
 * kernels no longer read it), the prefix with no separator, hex without
 * padding; without a flow ` ct=NULL ctmark=NULL ctstate=INVALID
 * ctstatus=NONE`, and ctdir REPLY for an untracked (NOTRACK) packet. The line
 * goes through services.log at the level asked for.
 *
 * What xtr does not have is printed as zero: secmark (no LSM labels) and
 * classify (no tc priority). `ct=` is an opaque id per flow, as the kernel's
 * hashed %p is. iif is xtr's interface index.
 *
 * Limits follow the man page (level 0..8, prefix up to 29 bytes) where
 * upstream is narrower (kernel refuses level 8, parser 14 bytes):
 * docs/compat.md, LOGMARK.
 */
import { HOOK_NAMES, CtState, type PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type TargetExtension } from '../xt/extension.js';
import { ConnStatus, type Conn } from '../xt/conn.js';
import type { RouterServices } from '../xt/services.js';
import { parseUint } from './lib/numbers.js';
import { badValueError, paramAct } from './lib/param-act.js';

export interface LogmarkParams {
  level: number;
  prefix: string;
}

/** The man page's limit (upstream's parser says 14: docs/compat.md). */
export const LOGMARK_PREFIX_MAX = 29;
const DEFAULT_LEVEL = 4;

/** Opaque per-flow ids standing for the kernel's hashed conntrack pointer; weak, so a flow's id goes with it. */
const connIds = new WeakMap<Conn, string>();

function connId(ct: Conn, services: RouterServices): string {
  let id = connIds.get(ct);
  if (id === undefined) {
    id = `0x00000000${(services.random() >>> 0).toString(16).padStart(8, '0')}`;
    connIds.set(ct, id);
  }
  return id;
}

const STATUS_NAMES: readonly (readonly [number, string])[] = [
  [ConnStatus.EXPECTED, 'EXPECTED'],
  [ConnStatus.SEEN_REPLY, 'SEEN_REPLY'],
  [ConnStatus.ASSURED, 'ASSURED'],
  [ConnStatus.CONFIRMED, 'CONFIRMED'],
];

function ctText(pkt: PacketContext, services: RouterServices): string {
  const ct = pkt.ct;
  if (ct === null) return ' ct=NULL ctmark=NULL ctstate=INVALID ctstatus=NONE';
  let s = ` ct=${connId(ct, services)} ctmark=0x${(ct.mark >>> 0).toString(16)} ctstate=`;
  if (pkt.ctState === CtState.NEW) s += 'NEW';
  else if (pkt.ctState === CtState.ESTABLISHED) s += 'ESTABLISHED';
  else if (pkt.ctState === CtState.RELATED) s += 'RELATED';
  if (ct.status & ConnStatus.SRC_NAT) s += ',SNAT';
  if (ct.status & ConnStatus.DST_NAT) s += ',DNAT';
  s += ' ctstatus=';
  let first = true;
  for (const [bit, name] of STATUS_NAMES) {
    if ((ct.status & bit) === 0) continue;
    s += first ? name : `,${name}`;
    first = false;
  }
  return `${s} lifetime=${Math.max(0, Math.trunc(ct.remaining(pkt.now)))}s`;
}

/** The line for `pkt` (exported for the tests' golden lines). */
export function logmarkLine(p: LogmarkParams, pkt: PacketContext, services: RouterServices): string {
  // ctinfo >= IP_CT_IS_REPLY: a reply-direction packet, or an untracked one (IP_CT_UNTRACKED)
  const reply = pkt.ct !== null ? pkt.ctReply : pkt.notrack;
  return (
    `<${p.level}>${p.prefix}iif=${pkt.inIf?.index ?? 0} hook=${HOOK_NAMES[pkt.hook]} ` +
    `nfmark=0x${(pkt.mark >>> 0).toString(16)} secmark=0x0 classify=0x0 ctdir=${reply ? 'REPLY' : 'ORIGINAL'}` +
    ctText(pkt, services)
  );
}

const LOGMARK: TargetExtension<LogmarkParams> = {
  kind: 'target',
  name: 'LOGMARK',
  families: [4, 6],
  options: [
    { name: 'log-level', arg: 'required', invertible: true },
    { name: 'log-prefix', arg: 'required', invertible: true },
  ],
  parse(opts) {
    const p: LogmarkParams = { level: DEFAULT_LEVEL, prefix: '' };
    paramAct('LOGMARK', opts, { 'log-level': '--log-level', 'log-prefix': '--log-prefix' }, (name, v) => {
      if (name === 'log-level') {
        const n = parseUint(v, 8);
        if (n < 0) throw badValueError('LOGMARK', '--log-level', v);
        p.level = n;
        return;
      }
      if (Buffer.byteLength(v) > LOGMARK_PREFIX_MAX) throw new XtError(`LOGMARK: Maximum prefix length is ${LOGMARK_PREFIX_MAX}`);
      if (v.includes('\n')) throw new XtError('LOGMARK: Newlines not allowed in log prefix');
      p.prefix = v;
    });
    return p;
  },
  check(p, env) {
    const services = env.services;
    // syslog has 0..7; the man page's level 8 logs as debug, with its <8> kept in the line
    const level = Math.min(p.level, 7);
    return {
      target(pkt: PacketContext): number {
        services.log(level, logmarkLine(p, pkt, services));
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    let s = '';
    if (p.level !== DEFAULT_LEVEL) s += ` --log-level ${p.level} `;
    if (p.prefix !== '') s += ` --log-prefix "${p.prefix}" `;
    return s;
  },
  print(p) {
    return ` -j LOGMARK${LOGMARK.save(p)}`;
  },
};

export default LOGMARK;
