/**
 * The table as users read it: `conntrack -L` lines in conntrack-tools'
 * format, and the `xtr conntrack` command (-L/-F/-C). Nothing here is on
 * the packet path.
 */
import type { Family } from '../../xt/packet.js';
import { ConnStatus } from '../../xt/conn.js';
import type { CommandTable, CommandResult } from '../commands.js';
import { ipv4ToString, ipv6ToString } from '../../dataplane/addr.js';
import { P_ICMP, P_ICMPV6, P_TCP, hasPorts, type ConnEntry, type CtTuple } from './entry.js';
import { TCP_STATE_NAMES } from './tcp.js';
import type { Conntrack } from './table.js';

function addr(family: Family, w: Uint32Array): string {
  return family === 4 ? ipv4ToString(w[0]) : ipv6ToString(w);
}

const PROTO_LABEL: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 33: 'dccp', 58: 'icmpv6', 132: 'sctp', 136: 'udplite' };

function tupleText(e: ConnEntry, t: CtTuple): string {
  let s = `src=${addr(e.family, t.src)} dst=${addr(e.family, t.dst)}`;
  if (hasPorts(e.proto)) s += ` sport=${t.sport} dport=${t.dport}`;
  else if ((e.proto === P_ICMP && e.family === 4) || (e.proto === P_ICMPV6 && e.family === 6)) {
    s += ` type=${t.dport >> 8} code=${t.dport & 0xff} id=${t.sport}`;
  }
  return s;
}

/** One `conntrack -L` line (without newline). */
export function formatEntry(e: ConnEntry, now: number): string {
  const known = hasPorts(e.proto) || (e.proto === P_ICMP && e.family === 4) || (e.proto === P_ICMPV6 && e.family === 6);
  const label = known ? PROTO_LABEL[e.proto] : 'unknown';
  let s = `${label.padEnd(8)} ${e.proto} ${e.remaining(now)} `;
  if (e.proto === P_TCP) s += `${TCP_STATE_NAMES[e.tcpState]} `;
  s += tupleText(e, e.orig);
  if ((e.status & ConnStatus.SEEN_REPLY) === 0) s += ' [UNREPLIED]';
  s += ' ' + tupleText(e, e.repl);
  if ((e.status & ConnStatus.ASSURED) !== 0) s += ' [ASSURED]';
  s += ` mark=${e.mark >>> 0} use=1`;
  return s;
}

const CONNTRACK_VERSION = 'conntrack v1.4.7 (conntrack-tools)';

/**
 * `conntrack -S`: conntrack-tools 1.4.7's line per CPU (`cpu=%-4u\t` then
 * the kernel's counters in its order, each followed by a space); xtr has
 * one table on one thread, so one line, cpu=0. What each counts here:
 * found = packets that found their flow; invalid = packets left INVALID;
 * insert = entries put into the table; insert_failed = translated flows
 * refused at confirm (reply tuple taken); drop = those plus new flows
 * refused because the table was full and nothing could be early-dropped;
 * early_drop = unassured entries evicted for a new flow; error = packets
 * too short or malformed to track; clash_resolve = a second unconfirmed
 * packet of a new flow joining the entry its first one confirmed.
 * search_restart and chaintoolong stay 0: the table is never resized
 * under a lookup and its chains have no length limit.
 */
export function statsLine(ct: Conntrack): string {
  const drop = ct.insertFailed + ct.tableFullDrops;
  return (
    `cpu=0   \tfound=${ct.found} invalid=${ct.invalid} insert=${ct.inserted} insert_failed=${ct.insertFailed} drop=${drop} ` +
    `early_drop=${ct.earlyDrops} error=${ct.errors} search_restart=0 clash_resolve=${ct.clashResolved} chaintoolong=0 \n`
  );
}

/**
 * `xtr conntrack -L [-f ipv4|ipv6] [-p PROTO]`, `-F`, `-C`, `-S`: the subset of
 * conntrack-tools users reach for, with its output and exit codes.
 */
export function conntrackCommands(ct: Conntrack, now: () => number): CommandTable {
  const handler = (args: string[]): CommandResult => {
    let cmd = '';
    let family: Family | undefined;
    let proto = -1;
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      if (a === '-L' || a === '--dump' || a === '-F' || a === '--flush' || a === '-C' || a === '--count' || a === '-S' || a === '--stats') {
        if (cmd) return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: Invalid parameters\n` };
        cmd = a.length === 2 ? a[1] : a === '--dump' ? 'L' : a === '--flush' ? 'F' : a === '--stats' ? 'S' : 'C';
      } else if (a === '-f' || a === '--family') {
        const v = args[++i];
        if (v === 'ipv4') family = 4;
        else if (v === 'ipv6') family = 6;
        else return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: \`${v ?? ''}' unsupported protocol\n` };
      } else if (a === '-p' || a === '--proto') {
        const v = (args[++i] ?? '').toLowerCase();
        const found = Object.entries(PROTO_LABEL).find(([, n]) => n === v);
        proto = found ? Number(found[0]) : /^[0-9]+$/.test(v) ? Number(v) : -2;
        if (proto === -2 || proto > 255) return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: \`${v}' unsupported protocol\n` };
      } else {
        return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: Unknown option \`${a}'\n` };
      }
    }
    const t = now();
    if (cmd === 'F') {
      ct.flush();
      return { status: 0, stdout: '', stderr: `${CONNTRACK_VERSION}: connection tracking table has been emptied.\n` };
    }
    if (cmd === 'C') return { status: 0, stdout: `${ct.count(t)}\n`, stderr: '' };
    if (cmd === 'S') return { status: 0, stdout: statsLine(ct), stderr: '' };
    if (cmd === 'L') {
      const rows = ct.entries(t).filter((e) => (family === undefined || e.family === family) && (proto < 0 || e.proto === proto));
      const out = rows.map((e) => formatEntry(e, t) + '\n').join('');
      return { status: 0, stdout: out, stderr: `${CONNTRACK_VERSION}: ${rows.length} flow entries have been shown.\n` };
    }
    return { status: 2, stdout: '', stderr: `${CONNTRACK_VERSION}: no command specified\n` };
  };
  return { conntrack: handler };
}

/** What `xtr status` and the metrics read of a table (Conntrack has all of it). */
export interface ConntrackStats {
  count(): number;
  readonly max: number;
  readonly buckets: number;
  bytes(): number;
  readonly found: number;
  readonly invalid: number;
  readonly inserted: number;
  readonly insertFailed: number;
  readonly tableFullDrops: number;
  readonly earlyDrops: number;
  readonly errors: number;
}

/** The table in `xtr status --json`: its size and bounds, and conntrack -S's counters. */
export interface ConntrackReport {
  count: number;
  max: number;
  buckets: number;
  /** Bytes of the entries' slabs grown so far plus the buckets. */
  memoryBytes: number;
  found: number;
  invalid: number;
  insert: number;
  insertFailed: number;
  /** insert_failed plus new flows refused at a full table (conntrack -S drop). */
  drop: number;
  earlyDrop: number;
  error: number;
}

export function conntrackReport(ct: ConntrackStats): ConntrackReport {
  return {
    count: ct.count(),
    max: ct.max,
    buckets: ct.buckets,
    memoryBytes: ct.bytes(),
    found: ct.found,
    invalid: ct.invalid,
    insert: ct.inserted,
    insertFailed: ct.insertFailed,
    drop: ct.insertFailed + ct.tableFullDrops,
    earlyDrop: ct.earlyDrops,
    error: ct.errors,
  };
}

/** The human form of `xtr status`: two lines. */
export function conntrackStatusLines(r: ConntrackReport): string[] {
  return [
    `conntrack: ${r.count}/${r.max} entries (nf_conntrack_max), ${r.buckets} buckets, ${(r.memoryBytes / 1048576).toFixed(1)} MiB`,
    `  early_drop ${r.earlyDrop}  insert_failed ${r.insertFailed}  drop ${r.drop}  invalid ${r.invalid}  insert ${r.insert}  found ${r.found}`,
  ];
}
