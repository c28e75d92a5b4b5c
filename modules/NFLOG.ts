/**
 * `-j NFLOG`: hands the packet to the listeners of a log group (the kernel's
 * xt_NFLOG through nfnetlink_log), then lets it go on (XT_CONTINUE): the rule
 * counts the packet and the next rule sees it unchanged.
 *
 * Delivery is the router's packet log (services.nflog, router/packet-log.ts):
 * `xtr nflog -g N` writes what a group receives as pcap/pcapng, `xtr events`
 * shows one `nflog.packet` line per packet. Without a listener the kernel
 * drops the message and so does xtr: one check, nothing copied.
 *
 * Options as iptables 1.8.9's libxt_NFLOG: --nflog-group 0..65535 (default
 * 0), --nflog-prefix up to 63 bytes (longer is cut; a newline is refused),
 * --nflog-size N copies at most N bytes of the packet (the original length
 * is kept), --nflog-range is accepted and saved but, as in the kernel, has no
 * effect (iptables warns), --nflog-threshold is the kernel's batching of
 * messages per netlink packet: accepted and saved, no effect on when xtr
 * delivers (each packet goes to the listeners at once).
 */
import type { PacketContext } from '../xt/packet.js';
import { XT_CONTINUE, XtError, type ParsedOption, type TargetExtension } from '../xt/extension.js';
import { parseUintOption } from './lib/numbers.js';
import { x6Check } from './lib/options.js';
import { saveString } from './lib/strings.js';

/** xt_nflog_info.prefix is char[64]: 63 bytes and the NUL. */
const PREFIX_MAX_BYTES = 63;
/** XT_NFLOG_DEFAULT_THRESHOLD of the 1.8.9 headers: printed only when it differs. */
const DEFAULT_THRESHOLD = 0;

/** What libxt_NFLOG's final check prints on stderr for --nflog-range, accepted or not. */
const RANGE_WARNING = 'warn: --nflog-range has never worked and is no longer supported, please use --nflog-size instead\n';

export interface NflogParams {
  group: number;
  prefix: string;
  /** --nflog-size (XT_NFLOG_F_COPY_LEN): at most this many bytes of the packet are copied; null = all. */
  size: number | null;
  /** --nflog-range: kept for save/print only (the kernel never used it); null = not given. */
  range: number | null;
  threshold: number;
}

/**
 * strncpy into char[64] as libxtables does: at most 63 bytes. A cut never
 * splits a UTF-8 character here (the kernel keeps the partial bytes; xtr's
 * strings are text; see docs/compat.md).
 */
function cutPrefix(v: string): string {
  const bytes = Buffer.from(v);
  if (bytes.length <= PREFIX_MAX_BYTES) return v;
  let end = PREFIX_MAX_BYTES;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString();
}

/** The words after NFLOG in `iptables -S` ("--" before each name) and `iptables -L` (none): libxt_NFLOG's nflog_print. */
function words(p: NflogParams, dash: string): string {
  let s = '';
  if (p.prefix !== '') s += ` ${dash}nflog-prefix${saveString(p.prefix)}`;
  if (p.group !== 0) s += ` ${dash}nflog-group ${p.group}`;
  // One `len` field in the kernel's struct: --nflog-range 0 leaves no trace.
  if (p.size !== null) s += ` ${dash}nflog-size ${p.size}`;
  else if (p.range) s += ` ${dash}nflog-range ${p.range}`;
  if (p.threshold !== DEFAULT_THRESHOLD) s += ` ${dash}nflog-threshold ${p.threshold}`;
  return s;
}

const NFLOG_TABLE = [
  { name: 'nflog-group' },
  { name: 'nflog-prefix' },
  { name: 'nflog-range', excl: ['nflog-size'] },
  { name: 'nflog-size', excl: ['nflog-range'] },
  { name: 'nflog-threshold' },
] as const;

const NFLOG: TargetExtension<NflogParams> = {
  kind: 'target',
  name: 'NFLOG',
  families: [4, 6],
  options: [
    { name: 'nflog-group', arg: 'required' },
    { name: 'nflog-prefix', arg: 'required' },
    { name: 'nflog-range', arg: 'required' },
    { name: 'nflog-size', arg: 'required' },
    { name: 'nflog-threshold', arg: 'required' },
  ],
  parse(opts: readonly ParsedOption[]) {
    const p: NflogParams = { group: 0, prefix: '', size: null, range: null, threshold: DEFAULT_THRESHOLD };
    // libxtables parses option by option ("can only be used once", then the value), and
    // checks exclusions only after the extension's final check has printed its warning.
    const seen = new Set<string>();
    for (const o of opts) {
      if (o.inverted) throw new XtError(`NFLOG: option "--${o.name}" cannot be inverted.\n`);
      if (seen.has(o.name)) throw new XtError(`NFLOG: option "--${o.name}" can only be used once.\n`);
      seen.add(o.name);
      const v = o.value ?? '';
      switch (o.name) {
        case 'nflog-group':
          p.group = parseUintOption('NFLOG', o.name, v, 65535);
          break;
        case 'nflog-prefix':
          if (v.length === 0) throw new XtError('Argument must have a minimum length of 1 characters\n');
          if (v.includes('\n')) throw new XtError('Newlines not allowed in --log-prefix');
          p.prefix = cutPrefix(v);
          break;
        case 'nflog-range':
          p.range = parseUintOption('NFLOG', o.name, v);
          break;
        case 'nflog-size':
          p.size = parseUintOption('NFLOG', o.name, v);
          break;
        case 'nflog-threshold':
          p.threshold = parseUintOption('NFLOG', o.name, v, 65535);
          break;
      }
    }
    try {
      x6Check('NFLOG', opts, NFLOG_TABLE);
    } catch (e) {
      if (e instanceof XtError && seen.has('nflog-range')) throw new XtError(e.message, e.status, e.errno, RANGE_WARNING);
      throw e;
    }
    return p;
  },
  notice(p) {
    return p.range !== null ? RANGE_WARNING : '';
  },
  check(p, env) {
    const { group, prefix } = p;
    const copyLimit = p.size ?? Infinity;
    const services = env.services;
    return {
      target(pkt: PacketContext): number {
        // nfulnl_log_packet: XT_NFLOG_F_COPY_LEN bounds the copy, else the whole packet goes
        // (a listener may cut it further); the original length always travels with it.
        services.nflog(pkt, group, prefix, pkt.l3len < copyLimit ? pkt.l3len : copyLimit);
        return XT_CONTINUE;
      },
    };
  },
  save(p) {
    return words(p, '--');
  },
  print(p) {
    return words(p, '');
  },
};

export default NFLOG;
