/**
 * `iptaccount`: xtables-addons' ACCOUNT reader (libxt_ACCOUNT_cl v1.3) for
 * xtr. Same options (getopt "uhacfsl:") and the same stdout byte for byte;
 * it asks the running router through its control socket (`xtr ext account
 * ...`, the command modules/ACCOUNT.ts offers) instead of the kernel's
 * getsockopt interface. XTR_SOCKET points it at another socket, as for `xtr`.
 *
 *   -u  handle usage (xtr keeps no read handles between calls: always 0)
 *   -h  free all handles (nothing to free; prints what upstream prints)
 *   -a  table names, in slot order
 *   -l NAME  the table's addresses; -f flushes what was shown (atomically:
 *       a packet is in this read or the next, never both); -c repeats every
 *       second until SIGINT/SIGTERM/SIGQUIT; -s prints CSV
 *   -g  (xtr's own, issue 15; also --fleet) with -l: the fleet-wide sums of
 *       cluster mode (`xtr ext account read-fleet NAME`, docs/cluster.md) in
 *       the same format; upstream has no -g. Never flushed: -g with -f is a
 *       usage error.
 *
 * Run as `node iptaccount.js args...` (scripts/iptaccount does that).
 */
import { DEFAULT_SOCKET } from '../router/control-protocol.js';
import { RouterNotRunning, sendCommand } from '../router/cli.js';
import { quietEpipe, versionLine } from '../xt/version.js';

const BANNER = '\nlibxt_ACCOUNT_cl userspace accounting tool v1.3\n\n';
const USAGE =
  'Unknown command-line option. Try: [-u] [-h] [-a] [-f] [-c] [-s] [-l name]\n' +
  '[-u] show kernel handle usage\n' +
  '[-h] free all kernel handles (experts only!)\n\n' +
  '[-a] list all table names\n' +
  '[-l name] show data in table <name>\n' +
  '[-f] flush data after showing\n' +
  '[-c] loop every second (abort with Ctrl+C)\n' +
  '[-s] CSV output (for spreadsheet import)\n\n';

// xtr's addition (issue 15): not in upstream's usage text above, which stays byte for byte.
const FLEET_HELP =
  '[-g] (or --fleet) with -l: fleet-wide sums of cluster mode, every gateway\n' +
  '     (xtr ext account read-fleet; docs/cluster.md); cannot be used with -f\n\n';

const HELP =
  'usage: iptaccount [-u] [-h] [-a] [-f] [-c] [-s] [-g] [-l name]\n' +
  'Reads the ACCOUNT target\'s tables from the running xtr router (XTR_SOCKET: its control socket).\n' +
  USAGE.slice(USAGE.indexOf('\n') + 1) +
  FLEET_HELP +
  '--help, --version\n' +
  'exit status: 0 ok, 1 failure (router not running, table missing), 2 usage error\n';

const INIT_FAILED = "Can't open socket to kernel. Permission denied or ipt_ACCOUNT module not loaded";
const NO_TABLE = "Can't get table information from kernel. Does it exist?";

export interface IptaccountIo {
  out(text: string): void;
  err(text: string): void;
  /** One `xtr ext account ...` request: its status and stdout; throws RouterNotRunning when no router answers. */
  ask(args: string[]): Promise<{ status: number; stdout: string }>;
  /** Resolves after `ms`, or early (false) once the loop should stop. */
  sleep(ms: number): Promise<boolean>;
}

interface Opts {
  usage: boolean;
  freeAll: boolean;
  all: boolean;
  flush: boolean;
  loop: boolean;
  csv: boolean;
  fleet: boolean;
  table: string | null;
}

/** getopt_long(argc, argv, "uhacfsgl:", {fleet}) with glibc's messages; null = an unknown option or a missing argument. */
function getopt(argv: readonly string[], err: (s: string) => void): Opts | null {
  const o: Opts = { usage: false, freeAll: false, all: false, flush: false, loop: false, csv: false, fleet: false, table: null };
  const operands: string[] = [];
  let bad = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (a.length < 2 || a[0] !== '-') {
      operands.push(a);
      continue;
    }
    if (a === '--fleet') {
      o.fleet = true;
      continue;
    }
    if (a.startsWith('--')) {
      err(`iptaccount: unrecognized option '${a}'\n`);
      bad = true;
      continue;
    }
    for (let k = 1; k < a.length; k++) {
      const c = a[k];
      if (c === 'l') {
        const rest = a.slice(k + 1);
        if (rest !== '') o.table = rest;
        else if (i + 1 < argv.length) o.table = argv[++i];
        else {
          err(`iptaccount: option requires an argument -- 'l'\n`);
          bad = true;
        }
        break;
      }
      if (c === 'u') o.usage = true;
      else if (c === 'h') o.freeAll = true;
      else if (c === 'a') o.all = true;
      else if (c === 'c') o.loop = true;
      else if (c === 'f') o.flush = true;
      else if (c === 's') o.csv = true;
      else if (c === 'g') o.fleet = true;
      else {
        err(`iptaccount: invalid option -- '${c}'\n`);
        bad = true;
      }
    }
  }
  return bad ? null : o;
}

/** The tool: writes what upstream writes and returns its exit status. */
export async function iptaccount(argv: readonly string[], io: IptaccountIo): Promise<number> {
  // Long options only: -h is upstream's "free all handles".
  if (argv.includes('--help')) {
    io.out(HELP);
    return 0;
  }
  if (argv.includes('--version')) {
    io.out(versionLine('iptaccount'));
    return 0;
  }
  io.out(BANNER);
  // Upstream exits 0 after its usage text; xtr's tools exit 2 on a usage error (docs/compat.md).
  if (argv.length === 0) {
    io.out(USAGE);
    return 2;
  }
  const o = getopt(argv, io.err);
  if (o === null) {
    io.out(USAGE);
    return 2;
  }
  if (o.fleet && o.flush) {
    // The fleet sums are running totals kept by every gateway: nothing here can flush them.
    io.err('iptaccount: -g cannot be used with -f (fleet sums are never flushed)\n');
    return 2;
  }
  // Upstream opens its kernel socket before any action: no router, nothing done.
  try {
    const r = await io.ask(['handles']);
    if (r.status !== 0) throw new RouterNotRunning(INIT_FAILED);
  } catch (e) {
    if (!(e instanceof RouterNotRunning)) throw e;
    io.out(`Init failed: ${INIT_FAILED}\n`);
    // Upstream's exit(-1) is 255; a runtime failure is 1 for every xtr tool (docs/compat.md).
    return 1;
  }
  if (o.usage) {
    const r = await io.ask(['handles']);
    io.out(`Current kernel handle usage: ${r.stdout.trim()}\n`);
  }
  if (o.freeAll) io.out('Freed all handles in kernel space\n');
  if (o.all) {
    const r = await io.ask(['names']);
    if (r.status !== 0) {
      io.out("get_table_names failed: Can't get table names from kernel. Out of memory, MINBUFISZE too small?\n");
      return 255;
    }
    for (const name of r.stdout.split('\n').filter((n) => n !== '')) io.out(`Found table: ${name}\n`);
  }
  if (o.table !== null) {
    io.out(o.csv ? 'IP;SRC packets;SRC bytes;DST packets;DST bytes\n' : `Showing table: ${o.table}\n`);
    for (let run = 0; ; run++) {
      const r = await io.ask([o.fleet ? 'read-fleet' : o.flush ? 'read-flush' : 'read', o.table]);
      if (r.status !== 0) {
        io.out(`Read failed: ${NO_TABLE}\n`);
        return 1;
      }
      const lines = r.stdout.split('\n').filter((l) => l !== '');
      let text = o.csv ? '' : `Run #${run} - ${lines.length} ${lines.length === 1 ? 'item' : 'items'} found\n`;
      for (const line of lines) {
        const [ip, sp, sb, dp, db] = line.split(' ');
        text += o.csv ? `${ip};${sp};${sb};${dp};${db}\n` : `IP: ${ip} SRC packets: ${sp} bytes: ${sb} DST packets: ${dp} bytes: ${db}\n`;
      }
      io.out(text);
      if (!o.loop || !(await io.sleep(1000))) break;
    }
  }
  io.out('Finished.\n');
  return 0;
}

async function main(): Promise<void> {
  const socketPath = process.env.XTR_SOCKET || DEFAULT_SOCKET;
  let stop: (() => void) | null = null;
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGQUIT'] as const) {
    process.on(sig, () => {
      stopping = true;
      stop?.();
    });
  }
  const io: IptaccountIo = {
    out: (s) => void process.stdout.write(s),
    err: (s) => process.stderr.write(s),
    ask: (args) => sendCommand(socketPath, { cmd: 'ext', args: ['account', ...args], input: null }),
    sleep: (ms) =>
      new Promise((resolve) => {
        if (stopping) return resolve(false);
        const t = setTimeout(() => resolve(!stopping), ms);
        stop = () => {
          clearTimeout(t);
          resolve(false);
        };
      }),
  };
  quietEpipe();
  let status: number;
  try {
    status = await iptaccount(process.argv.slice(2), io);
  } catch (e) {
    process.stderr.write(`iptaccount: ${(e as Error).message}\n`);
    status = 1;
  }
  process.stdout.write('', () => process.exit(status));
}

if (process.argv[1] && /iptaccount(\.[jt]s)?$/.test(process.argv[1])) await main();
