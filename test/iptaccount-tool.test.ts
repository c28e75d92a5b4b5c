/**
 * scripts/iptaccount's own logic with a fake router: getopt as glibc reads
 * "uhacfsl:", the fixed action order (-u, -h, -a, -l), -c's loop and its
 * stop, the Run lines' item/items, CSV, and upstream's error texts and exit
 * statuses (facts: ../shared/spec/targets-facts.md §1 "iptaccount tool").
 * The real thing against a running router: test/integration-account.test.ts.
 */
import test from 'ava';
import { iptaccount, type IptaccountIo } from '../scripts/iptaccount.js';
import { RouterNotRunning } from '../router/cli.js';

const BANNER = '\nlibxt_ACCOUNT_cl userspace accounting tool v1.3\n\n';

interface Fake {
  /** Table contents per read (one entry consumed per read; the last repeats). */
  tables?: Record<string, string[]>;
  down?: boolean;
  /** How many sleeps succeed before the loop is told to stop. */
  loops?: number;
}

async function runTool(argv: string[], fake: Fake = {}): Promise<{ status: number; out: string; err: string; asked: string[] }> {
  let out = '';
  let err = '';
  const asked: string[] = [];
  let loops = fake.loops ?? 0;
  const reads = new Map<string, number>();
  const io: IptaccountIo = {
    out: (s) => void (out += s),
    err: (s) => void (err += s),
    async ask(args) {
      if (fake.down) throw new RouterNotRunning('no router');
      asked.push(args.join(' '));
      const [sub, name] = args;
      if (sub === 'handles') return { status: 0, stdout: '0\n' };
      if (sub === 'names') return { status: 0, stdout: Object.keys(fake.tables ?? {}).map((n) => `${n}\n`).join('') };
      const t = fake.tables?.[name];
      if (!t) return { status: 1, stdout: '' };
      const i = reads.get(name) ?? 0;
      reads.set(name, i + 1);
      return { status: 0, stdout: t[Math.min(i, t.length - 1)] };
    },
    async sleep() {
      return loops-- > 0;
    },
  };
  const status = await iptaccount(argv, io);
  return { status, out, err, asked };
}

const T = { sales: ['192.168.1.5 12 3456 10 9876\n192.168.1.9 1 60 0 0\n', '192.168.1.9 2 120 0 0\n', ''] };

test('the facts sheet example, byte for byte', async (t) => {
  const r = await runTool(['-l', 'sales'], { tables: T });
  t.is(r.status, 0);
  t.is(r.out, `${BANNER}Showing table: sales\nRun #0 - 2 items found\nIP: 192.168.1.5 SRC packets: 12 bytes: 3456 DST packets: 10 bytes: 9876\nIP: 192.168.1.9 SRC packets: 1 bytes: 60 DST packets: 0 bytes: 0\nFinished.\n`);
});

test('-c loops with Run numbers until stopped, 1 item / 0 items; -f asks for read-flush', async (t) => {
  const r = await runTool(['-c', '-f', '-l', 'sales'], { tables: T, loops: 2 });
  t.is(r.out, `${BANNER}Showing table: sales\nRun #0 - 2 items found\nIP: 192.168.1.5 SRC packets: 12 bytes: 3456 DST packets: 10 bytes: 9876\nIP: 192.168.1.9 SRC packets: 1 bytes: 60 DST packets: 0 bytes: 0\nRun #1 - 1 item found\nIP: 192.168.1.9 SRC packets: 2 bytes: 120 DST packets: 0 bytes: 0\nRun #2 - 0 items found\nFinished.\n`);
  t.deepEqual(r.asked.filter((a) => a !== 'handles'), ['read-flush sales', 'read-flush sales', 'read-flush sales']);
});

test('CSV: the header once, no Run lines', async (t) => {
  const r = await runTool(['-s', '-l', 'sales', '-c'], { tables: T, loops: 1 });
  t.is(r.out, `${BANNER}IP;SRC packets;SRC bytes;DST packets;DST bytes\n192.168.1.5;12;3456;10;9876\n192.168.1.9;1;60;0;0\n192.168.1.9;2;120;0;0\nFinished.\n`);
});

test('actions run in the order -u, -h, -a, -l whatever the command line says; getopt clusters and attached arguments', async (t) => {
  for (const argv of [['-l', 'sales', '-a', '-h', '-u'], ['-ahul', 'sales'], ['-ualsales', '-h']]) {
    const r = await runTool(argv, { tables: T });
    t.is(r.out, `${BANNER}Current kernel handle usage: 0\nFreed all handles in kernel space\nFound table: sales\nShowing table: sales\nRun #0 - 2 items found\nIP: 192.168.1.5 SRC packets: 12 bytes: 3456 DST packets: 10 bytes: 9876\nIP: 192.168.1.9 SRC packets: 1 bytes: 60 DST packets: 0 bytes: 0\nFinished.\n`, argv.join(' '));
  }
  // -c without -l does nothing but finish.
  t.is((await runTool(['-c'], { tables: T })).out, `${BANNER}Finished.\n`);
});

test('usage: no arguments, an unknown option, a missing argument (getopt\'s message on stderr), exit 0', async (t) => {
  const none = await runTool([]);
  t.is(none.status, 2);
  t.true(none.out.startsWith(`${BANNER}Unknown command-line option. Try: [-u] [-h] [-a] [-f] [-c] [-s] [-l name]\n[-u] show kernel handle usage\n`));
  t.true(none.out.endsWith('[-s] CSV output (for spreadsheet import)\n\n'));
  const bad = await runTool(['-x']);
  t.is(bad.err, "iptaccount: invalid option -- 'x'\n");
  t.is(bad.out, none.out);
  t.is(bad.status, 2);
  const missing = await runTool(['-l']);
  t.is(missing.err, "iptaccount: option requires an argument -- 'l'\n");
  t.is(missing.out, none.out);
  t.deepEqual(missing.asked, []);
});

test('errors: no router is "Init failed" (1; upstream 255), a missing table "Read failed" (1) without Finished', async (t) => {
  const down = await runTool(['-a'], { down: true });
  t.is(down.status, 1);
  t.is(down.out, `${BANNER}Init failed: Can't open socket to kernel. Permission denied or ipt_ACCOUNT module not loaded\n`);
  const missing = await runTool(['-l', 'nosuch'], { tables: T });
  t.is(missing.status, 1);
  t.is(missing.out, `${BANNER}Showing table: nosuch\nRead failed: Can't get table information from kernel. Does it exist?\n`);
});

test('-g / --fleet (xtr, issue 15): reads read-fleet and prints in the same format; -g with -f is a usage error', async (t) => {
  // The fake serves the fleet sums under the same table name; the request names read-fleet.
  for (const argv of [['-g', '-l', 'sales'], ['--fleet', '-l', 'sales'], ['-gl', 'sales']]) {
    const r = await runTool(argv, { tables: T });
    t.is(r.status, 0, argv.join(' '));
    t.deepEqual(r.asked.filter((a) => a !== 'handles'), ['read-fleet sales']);
    t.is(r.out, `${BANNER}Showing table: sales\nRun #0 - 2 items found\nIP: 192.168.1.5 SRC packets: 12 bytes: 3456 DST packets: 10 bytes: 9876\nIP: 192.168.1.9 SRC packets: 1 bytes: 60 DST packets: 0 bytes: 0\nFinished.\n`);
  }
  const csv = await runTool(['-g', '-s', '-l', 'sales'], { tables: T });
  t.is(csv.out, `${BANNER}IP;SRC packets;SRC bytes;DST packets;DST bytes\n192.168.1.5;12;3456;10;9876\n192.168.1.9;1;60;0;0\nFinished.\n`);
  const flush = await runTool(['-g', '-f', '-l', 'sales'], { tables: T });
  t.is(flush.status, 2);
  t.is(flush.err, 'iptaccount: -g cannot be used with -f (fleet sums are never flushed)\n');
  t.deepEqual(flush.asked, []);
  const missing = await runTool(['-g', '-l', 'nosuch'], { tables: T });
  t.is(missing.status, 1);
  t.true(missing.out.endsWith('Read failed: Can\'t get table information from kernel. Does it exist?\n'));
});

test('--help names -g/--fleet; the usage text stays upstream\'s', async (t) => {
  const h = await runTool(['--help']);
  t.is(h.status, 0);
  t.true(h.out.startsWith('usage: iptaccount [-u] [-h] [-a] [-f] [-c] [-s] [-g] [-l name]\n'));
  t.regex(h.out, /\[-g\] \(or --fleet\)/);
  t.false((await runTool([])).out.includes('-g'));
});
