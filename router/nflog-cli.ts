/**
 * `xtr nflog`: listens to NFLOG groups of the running router (the control
 * socket's `nflog` stream, router/packet-log.ts) and writes what arrives as a
 * capture file tcpdump and Wireshark read, or as text lines.
 *
 * Formats (dataplane/pcap.ts):
 *  - `-w FILE` (default link type NFLOG): classic pcap with LINKTYPE_NFLOG,
 *    the file `tcpdump -i nflog:N -w FILE` writes from the kernel: the prefix,
 *    group, hook and interfaces travel with each packet (`tcpdump -r` shows
 *    the packets, `tshark -e nflog.prefix` the prefixes);
 *  - `-y RAW`: the bare IP packets (LINKTYPE_RAW), which every tool reads,
 *    without the prefix (classic pcap has no place for it);
 *  - `--pcapng`, or a FILE ending in `.pcapng`: pcapng, same link types, and
 *    each packet's prefix also as its comment (Wireshark's `frame.comment`).
 */
import net from 'node:net';
import { closeSync, openSync, writeSync } from 'node:fs';
import {
  LINKTYPE_NFLOG,
  LINKTYPE_RAW,
  packetFor,
  pcapFileHeader,
  pcapngInterface,
  pcapngPacket,
  pcapngSectionHeader,
  pcapRecord,
} from '../dataplane/pcap.js';
import { HOOK_NAMES } from '../xt/packet.js';
import { parseRecordLine, type PacketLogRecord } from './packet-log.js';

export const NFLOG_USAGE = `usage: xtr nflog [-g GROUP]... [-w FILE|-] [--pcapng] [-y NFLOG|RAW] [-c COUNT] [-q]
  listens to the router's NFLOG groups (rules with -j NFLOG --nflog-group GROUP)
  -g GROUP     group to listen to, 0-65535 (repeatable; default 0)
  -w FILE      write a capture file (- = standard output) instead of text lines
  --pcapng     write pcapng (implied by a FILE ending in .pcapng): each packet
               carries its NFLOG prefix as its comment
  -y NFLOG     link type NFLOG (default), as tcpdump -i nflog:GROUP writes it:
               prefix, group, hook, interfaces with each packet
  -y RAW       link type RAW: the bare IP packets (no prefix in classic pcap)
  -c COUNT     exit after COUNT packets
  -q           no status lines on standard error
  Ends on SIGINT/SIGTERM or after COUNT packets, then prints the count (and the
  packets the router dropped because this reader was too slow) on standard error.
`;

/** Something to Atomics.wait on: a 1 ms pause while a pipe reader catches up. */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));

export interface NflogOptions {
  groups: number[];
  file: string | null;
  pcapng: boolean;
  linktype: number;
  count: number;
  quiet: boolean;
}

/** Parses `xtr nflog` arguments; a string is the usage error. */
export function parseNflogArgs(args: readonly string[]): NflogOptions | string | 'help' {
  const o: NflogOptions = { groups: [], file: null, pcapng: false, linktype: LINKTYPE_NFLOG, count: Infinity, quiet: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const value = () => {
      if (i + 1 >= args.length) throw `option ${a} needs a value`;
      return args[++i];
    };
    try {
      if (a === '-h' || a === '--help') return 'help';
      else if (a === '-g' || a === '--group') {
        const v = value();
        if (!/^\d{1,5}$/.test(v) || Number(v) > 65535) return `-g ${v}: a group is 0-65535`;
        if (!o.groups.includes(Number(v))) o.groups.push(Number(v));
      } else if (a === '-w') o.file = value();
      else if (a === '--pcapng') o.pcapng = true;
      else if (a === '-y') {
        const v = value().toUpperCase();
        if (v === 'NFLOG') o.linktype = LINKTYPE_NFLOG;
        else if (v === 'RAW') o.linktype = LINKTYPE_RAW;
        else return `-y ${v}: link type NFLOG or RAW`;
      } else if (a === '-c') {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) < 1) return `-c ${v}: a positive count`;
        o.count = Number(v);
      } else if (a === '-q') o.quiet = true;
      else return `unknown argument ${JSON.stringify(a)}`;
    } catch (e) {
      return String(e);
    }
  }
  if (o.groups.length === 0) o.groups.push(0);
  if (o.file !== null && o.file.endsWith('.pcapng')) o.pcapng = true;
  return o;
}

function two(n: number): string {
  return String(n).padStart(2, '0');
}

/** One text line: local time with microseconds, group, hook, interfaces, prefix, summary. */
export function textLine(r: PacketLogRecord): string {
  const d = new Date(r.sec * 1000);
  const t = `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(r.usec).padStart(6, '0')}`;
  const cut = r.data.length < r.length ? ` caplen ${r.data.length}` : '';
  return `${t} group ${r.group} ${HOOK_NAMES[r.hook] ?? r.hook} IN=${r.inName} OUT=${r.outName} prefix ${JSON.stringify(r.prefix)} ${r.summary}${cut}\n`;
}

/** Runs `xtr nflog`; resolves with the exit status (0 ok, 1 runtime failure, 2 usage). */
export async function nflogMain(socketPath: string, args: readonly string[]): Promise<number> {
  const parsed = parseNflogArgs(args);
  if (parsed === 'help') {
    process.stdout.write(NFLOG_USAGE);
    return 0;
  }
  if (typeof parsed === 'string') {
    process.stderr.write(`xtr nflog: ${parsed}\n${NFLOG_USAGE}`);
    return 2;
  }
  const o = parsed;
  let fd: number | null = null;
  if (o.file !== null) {
    try {
      fd = o.file === '-' ? 1 : openSync(o.file, 'w', 0o644);
    } catch (e) {
      process.stderr.write(`xtr nflog: ${o.file}: ${(e as Error).message}\n`);
      return 1;
    }
  }
  const status = (line: string) => {
    if (!o.quiet) process.stderr.write(line);
  };
  const ifName = `nflog:${o.groups.join(',')}`;
  let written = 0;
  let dropped = 0;
  let brokenPipe = false;
  let writeFailed = '';
  const put = (b: Uint8Array) => {
    if (fd === null || brokenPipe) return;
    let off = 0;
    while (off < b.length) {
      try {
        off += writeSync(fd, b, off, b.length - off);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // Standard output may be a non-blocking pipe (Node makes it one): a full pipe is a wait, not an error.
        if (code === 'EAGAIN') Atomics.wait(PAUSE, 0, 0, 1);
        else if (code === 'EPIPE') {
          brokenPipe = true;
          return;
        } else {
          writeFailed = `xtr nflog: ${o.file}: ${(e as Error).message}\n`;
          return;
        }
      }
    }
  };
  return new Promise<number>((resolve) => {
    const sock = net.connect(socketPath);
    let buf = '';
    let settled = false;
    const finish = (code: number) => {
      if (settled) return;
      settled = true;
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      sock.destroy();
      if (fd !== null && fd !== 1) closeSync(fd);
      if (code === 0) status(`${written} packet${written === 1 ? '' : 's'} captured${dropped ? `, ${dropped} dropped by the router (reader too slow)` : ''}\n`);
      resolve(code);
    };
    const onSignal = () => finish(0);
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    sock.on('connect', () => sock.write(JSON.stringify({ cmd: 'nflog', args: o.groups.flatMap((g) => ['-g', String(g)]), input: null }) + '\n'));
    sock.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0 && !settled; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let v: Record<string, unknown>;
        try {
          v = JSON.parse(line);
        } catch {
          continue;
        }
        if (typeof v.status === 'number') {
          // An answer instead of a stream: refused arguments, or a router without NFLOG delivery.
          process.stderr.write(String(v.stderr ?? ''));
          finish(v.status === 0 ? 1 : v.status);
          return;
        }
        if (v.kind === 'nflog.subscribed') {
          if (fd !== null) put(o.pcapng ? Buffer.concat([pcapngSectionHeader(), pcapngInterface(o.linktype, ifName)]) : pcapFileHeader(o.linktype));
          status(`xtr nflog: listening on ${ifName}, link-type ${o.linktype === LINKTYPE_NFLOG ? 'NFLOG' : 'RAW'}${o.file !== null ? `, writing ${o.pcapng ? 'pcapng' : 'pcap'} to ${o.file === '-' ? 'standard output' : o.file}` : ''}\n`);
        } else if (v.kind === 'nflog.dropped') {
          dropped += Number(v.count) || 0;
        } else if (v.kind === 'nflog.packet') {
          const r = parseRecordLine(v);
          if (fd === null) process.stdout.write(textLine(r));
          else {
            const { data, origLen } = packetFor(o.linktype, r);
            put(o.pcapng ? pcapngPacket(r.sec, r.usec, data, origLen, r.prefix) : pcapRecord(r.sec, r.usec, data, origLen));
          }
          if (writeFailed) {
            process.stderr.write(writeFailed);
            finish(1);
            return;
          }
          if (++written >= o.count || brokenPipe) {
            finish(0);
            return;
          }
        }
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') process.stderr.write(`xtr: the router is not running (no one listening on ${socketPath})\n`);
      else process.stderr.write(`xtr: ${socketPath}: ${e.message}\n`);
      finish(1);
    });
    sock.on('close', () => {
      if (!settled) {
        process.stderr.write('xtr nflog: the router closed the stream\n');
        finish(1);
      }
    });
  });
}
