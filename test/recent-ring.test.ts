/**
 * recent's timestamp ring and --hitcount (docs/compat.md "## recent"):
 * with ip_pkt_list_tot not configured a table starts with 32 stamps per
 * address (this machine's kernel) and a rule with a larger --hitcount empties the table and
 * enlarges its ring to the next power of two, as newer kernels do (the
 * kernel here accepts --hitcount up to 65535); configured explicitly, the
 * ring is fixed and a larger --hitcount is refused with the older kernels'
 * words. The enlargement happens when the rule set goes live, never for a
 * dry run or a refused change. The last test runs the same steps against
 * the kernel's /proc/net/xt_recent in a throwaway namespace.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { packet, testEngine, type TestEngine } from '../router/netfilter/testkit.js';
import { Hook, Verdict } from '../xt/packet.js';
import { restoreState, saveState } from '../router/netfilter/index.js';

const PROC = 'net/xt_recent/R';

/** "ADDR:stamps" per procfs line, sorted (the kernel lists in its random hash order). */
function stampCounts(procText: string): string[] {
  return procText
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const m = /^src=(\S+) ttl: \d+ last_seen: \d+ oldest_pkt: \d+ (.*)$/.exec(l);
      if (!m) throw new Error(`not a procfs line: ${l}`);
      return `${m[1]}:${m[2].split(', ').length}`;
    })
    .sort();
}

async function ok(e: TestEngine, line: string, input: string | null = null): Promise<void> {
  const r = await e.run(line, input);
  if (r.status !== 0) throw new Error(`${line}: ${r.stderr}`);
}

async function add(e: TestEngine, addr: string, times: number): Promise<void> {
  await ok(e, `proc write ${PROC}`, `+${addr}\n`.repeat(times));
}

async function counts(e: TestEngine): Promise<string[]> {
  return stampCounts((await e.run(`proc cat ${PROC}`)).stdout);
}

test('unconfigured ring: 32 stamps, a larger --hitcount empties the table and enlarges the ring to a power of two', async (t) => {
  const e = await testEngine();
  await ok(e, 'iptables -A INPUT -m recent --name R --set');
  await add(e, '10.0.0.1', 40);
  await add(e, '10.0.0.2', 3);
  t.deepEqual(await counts(e), ['10.0.0.1:32', '10.0.0.2:3']);

  // The log-clog recipe of seed 003.
  await ok(e, 'iptables -A INPUT -p udp --dport 138 -m recent --name R --rcheck --hitcount 100 -j DROP');
  t.deepEqual(await counts(e), [], 'enlarging the ring emptied the table');
  await add(e, '10.0.0.1', 130);
  t.deepEqual(await counts(e), ['10.0.0.1:128']);

  // Smaller needs and removing the rule that asked for the ring change nothing.
  await ok(e, 'iptables -A INPUT -m recent --name R --rcheck --hitcount 64');
  await ok(e, 'iptables -D INPUT 2');
  await add(e, '10.0.0.2', 200);
  t.deepEqual(await counts(e), ['10.0.0.1:128', '10.0.0.2:128']);

  await ok(e, 'iptables -A INPUT -m recent --name R --rcheck --hitcount 129');
  await add(e, '10.0.0.3', 300);
  t.deepEqual(await counts(e), ['10.0.0.3:256']);

  await ok(e, 'iptables -A INPUT -m recent --name OTHER --rcheck --hitcount 65535');
  const big = await e.run('iptables -A INPUT -m recent --name OTHER --rcheck --hitcount 65536');
  t.is(big.status, 1);
  t.is(big.stderr, "iptables: Invalid argument. Run `dmesg' for more information.\nxt_recent: hitcount (65536) is larger than allowed maximum (65535)\n");
  t.deepEqual(await counts(e), ['10.0.0.3:256'], 'other tables are not touched');
});

test('--hitcount 100 matches from the 100th stamp on (seed 003 log clog: the ring holds them)', async (t) => {
  const e = await testEngine();
  await ok(e, 'iptables -A INPUT -p udp --dport 138 -m recent --name R --set');
  await ok(e, 'iptables -A INPUT -p udp --dport 138 -m recent --name R --rcheck --hitcount 100 -j DROP');
  await add(e, '192.0.2.7', 98);
  const send = () => e.nf.hook(Hook.INPUT, packet({ src: '192.0.2.7', dst: '192.0.2.1', proto: 'udp', sport: 138, dport: 138 }, 'eth0'));
  t.is(send(), Verdict.ACCEPT, '--set makes the 99th stamp');
  t.is(send(), Verdict.DROP, '--set makes the 100th stamp, the check sees 100');
  t.deepEqual(await counts(e), ['192.0.2.7:100']);
});

test('enlarging waits for the commit: a dry run (iptables-restore --test) or a refused change leaves the table as it was', async (t) => {
  const e = await testEngine();
  await ok(e, 'iptables -A INPUT -m recent --name R --set');
  await add(e, '10.0.0.1', 5);
  const before = await counts(e);

  const dry = await e.run('iptables-restore --test -n', '*filter\n-A INPUT -m recent --name R --rcheck --hitcount 100\nCOMMIT\n');
  t.is(dry.status, 0, dry.stderr);
  t.deepEqual(await counts(e), before, 'dry run');

  // The recent rule is checked first, then limit refuses the rule (ERANGE): nothing changes.
  const refused = await e.run('iptables -A INPUT -m recent --name R --rcheck --hitcount 100 -m limit --limit-burst 0');
  t.is(refused.status, 1);
  t.deepEqual(await counts(e), before, 'refused rule');

  const refusedRestore = await e.run('iptables-restore -n', '*filter\n-A INPUT -m recent --name R --rcheck --hitcount 100\n-A INPUT -m recent --set --name ..\nCOMMIT\n');
  t.is(refusedRestore.status, 1);
  t.deepEqual(await counts(e), before, 'refused restore');
  t.is((await e.run('iptables -S INPUT')).stdout, '-P INPUT ACCEPT\n-A INPUT -m recent --set --name R --mask 255.255.255.255 --rsource\n');

  await ok(e, 'iptables-restore -n', '*filter\n-A INPUT -m recent --name R --rcheck --hitcount 100\nCOMMIT\n');
  t.deepEqual(await counts(e), [], 'committed');
});

test('a configured ip_pkt_list_tot is a fixed ring: a larger --hitcount is refused with the older kernels\' words; 0 means sized by --hitcount', async (t) => {
  const e = await testEngine([], null, { recent: { ip_pkt_list_tot: 20 } });
  await ok(e, 'iptables -A INPUT -m recent --name R --rcheck --hitcount 20');
  const r = await e.run('iptables -A INPUT -m recent --name R --rcheck --hitcount 21');
  t.is(r.status, 1);
  t.is(r.stderr, "iptables: Invalid argument. Run `dmesg' for more information.\nxt_recent: hitcount (21) is larger than packets to be remembered (20)\n");
  await add(e, '10.0.0.1', 25);
  t.deepEqual(await counts(e), ['10.0.0.1:20']);

  const small = await testEngine([], null, { recent: { ip_pkt_list_tot: 3 } });
  await ok(small, 'iptables -A INPUT -m recent --name R --set');
  await add(small, '10.0.0.1', 5);
  t.deepEqual(await counts(small), ['10.0.0.1:3']);

  const auto = await testEngine([], null, { recent: { ip_pkt_list_tot: 0 } });
  await ok(auto, 'iptables -A INPUT -m recent --name R --rcheck --hitcount 21');
  await add(auto, '10.0.0.1', 40);
  t.deepEqual(await counts(auto), ['10.0.0.1:32']);

  const bad = await testEngine([], null, { recent: { ip_pkt_list_tot: 256 } });
  const refused = await bad.run('iptables -A INPUT -m recent --name R --set');
  t.is(refused.status, 1);
  t.regex(refused.stderr, /settings\.recent\.ip_pkt_list_tot: 256: must be an integer 1\.\.255/);
});

test('saved state keeps the enlarged ring: after a restart the same rules find the table full, not emptied', async (t) => {
  const e = await testEngine();
  await ok(e, 'iptables -A INPUT -m recent --name R --set');
  await ok(e, 'iptables -A INPUT -m recent --name R --rcheck --hitcount 100');
  await add(e, '10.0.0.1', 110);
  await add(e, '10.0.0.2', 2);
  const state = saveState(e.nf);

  const after = await testEngine();
  restoreState(after.nf, state);
  t.deepEqual(await counts(after), ['10.0.0.1:110', '10.0.0.2:2']);
  await add(after, '10.0.0.1', 30);
  t.deepEqual(await counts(after), ['10.0.0.1:128', '10.0.0.2:2'], 'the ring is still 128');
  // A later rule that needs no more leaves it alone.
  await ok(after, 'iptables -A INPUT -m recent --name R --rcheck --hitcount 128');
  t.deepEqual(await counts(after), ['10.0.0.1:128', '10.0.0.2:2']);
});

/** Steps run on both sides; after each, the exit status and (where `compare`) the stamps per address must agree. */
const KERNEL_STEPS: { cmd: string; compare: boolean }[] = [
  { cmd: 'iptables -A INPUT -m recent --name R --set', compare: true },
  { cmd: 'write 10.0.0.1 3', compare: true },
  { cmd: 'write 10.0.0.2 1', compare: true },
  // Both start with a ring of 32 stamps.
  { cmd: 'write 10.0.0.3 40', compare: true },
  { cmd: 'iptables -A INPUT -p udp --dport 138 -m recent --name R --rcheck --hitcount 100 -j DROP', compare: true },
  { cmd: 'write 10.0.0.1 130', compare: true },
  { cmd: 'iptables -A INPUT -m recent --name R --rcheck --hitcount 64', compare: true },
  { cmd: 'write 10.0.0.2 3', compare: true },
  { cmd: 'iptables -A INPUT -m recent --name R --update --seconds 5 --hitcount 129', compare: true },
  { cmd: 'write 10.0.0.1 300', compare: true },
  { cmd: 'iptables -D INPUT 4', compare: true },
  { cmd: 'write 10.0.0.1 10', compare: true },
  { cmd: 'iptables -A INPUT -m recent --name R --rcheck --hitcount 65535', compare: false },
  { cmd: 'iptables -A INPUT -m recent --name R --rcheck --hitcount 65536', compare: true },
  { cmd: 'iptables -A INPUT -m recent --name R --rcheck --hitcount 4294967295', compare: true },
];

const kernelSkip = process.getuid?.() !== 0 ? 'not root' : spawnSync('iptables-legacy', ['--version']).status !== 0 ? 'no iptables-legacy' : null;

(kernelSkip ? test.skip : test.serial)(`kernel vs xtr: ring sizes and flushes in /proc/net/xt_recent${kernelSkip ? ` (skipped: ${kernelSkip})` : ''}`, async (t) => {
  const ns = `xfrr${process.pid}${Math.floor(Math.random() * 1e5)}`;
  const inNs = (args: string[]) => spawnSync('ip', ['netns', 'exec', ns, ...args], { encoding: 'utf8', timeout: 60_000 });
  t.is(spawnSync('ip', ['netns', 'add', ns]).status, 0);
  try {
    const e = await testEngine();
    for (const { cmd, compare } of KERNEL_STEPS) {
      const w = /^write (\S+) (\d+)$/.exec(cmd);
      if (w) {
        const k = inNs(['sh', '-c', `i=0; while [ $i -lt ${w[2]} ]; do echo +${w[1]} > /proc/net/xt_recent/R || exit 1; i=$((i+1)); done`]);
        t.is(k.status, 0, k.stderr);
        await add(e, w[1], Number(w[2]));
      } else {
        const words = cmd.split(' ');
        const k = inNs(['iptables-legacy', ...words.slice(1)]);
        const x = await e.run(cmd);
        t.is(x.status, k.status ?? -1, `${cmd}\nkernel: ${k.stderr}\nxtr: ${x.stderr}`);
        if (k.status !== 0) t.is(x.stderr.split('\n')[0], k.stderr.split('\n')[0], cmd);
      }
      const kernel = stampCounts(inNs(['cat', '/proc/net/xt_recent/R']).stdout);
      if (compare) t.deepEqual(await counts(e), kernel, `after: ${cmd}`);
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
});
