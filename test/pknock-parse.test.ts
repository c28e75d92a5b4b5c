/**
 * pknock's option handling against the real thing: iptables-legacy 1.8.9
 * with Debian's xtables-addons-common libxt_pknock.so in a throwaway
 * namespace (the revision shim of test/fixtures/xtables-addons lets the
 * parser run although this kernel has no xt_pknock; the commit then fails
 * with "No chain/target/match by that name"). A refused line must give the
 * same status and stderr; an accepted one the same `-v` rule text (print).
 *
 * Then what only the kernel's checkentry refuses (upstream's dmesg words,
 * EINVAL), and save/persist text: iptables-save hides the secrets as
 * upstream does, xtr's own state file keeps them.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { REPO_ROOT } from './helpers/kernel-router.js';
import { XtHarness } from './helpers/xt-harness.js';
import pknock from '../modules/pknock.js';

const LINES: string[] = [
  '-m pknock --knockports 1 --time 10 --name A',
  '-p tcp -m pknock --knockports 1,2 --name A',
  '-p tcp -m pknock --knockports 1,2 --time 10',
  '-p tcp -m pknock --time 10',
  '-p tcp -m pknock --knockports 1,2',
  '-p tcp -m pknock --knockports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15 --time 10 --name A',
  '-p tcp -m pknock --knockports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 --time 10 --name A',
  '-p icmp -m pknock --knockports 1 --time 10 --name A',
  '-p udplite -m pknock --knockports 1 --time 10 --name A',
  '! -p tcp -m pknock --knockports 1 --time 10 --name A',
  '-p tcp -m pknock ! --knockports 1 --time 10 --name A',
  '-p tcp -m pknock --knockports 1 ! --time 10 --name A',
  '-p tcp -m pknock --knockports 1 --time 10 ! --strict --name A',
  '-p tcp -m pknock --knockports 1 --time abc --name A',
  '-p tcp -m pknock --knockports 1 --time 0 --name A',
  '-p tcp -m pknock --knockports 1 --time -5 --name A',
  '-p tcp -m pknock --knockports 1 --time 10abc --name A',
  '-p tcp -m pknock --knockports 1 --time 10 --time 3 --name A',
  '-p tcp -m pknock --knockports 1 --time 10 --autoclose x --name A',
  '-p tcp -m pknock --knockports 1 --time 10 --autoclose -1 --name A',
  '-p tcp -m pknock --knockports 1 --time 10 --autoclose 0x10 --name A',
  '-p tcp -m pknock --knockports 1 --time 10 --autoclose 99999999999 --name A',
  '-p tcp -m pknock --knockports 1 --time 10 --checkip --name A',
  '-p udp -m pknock --knockports 1 --opensecret a --name A',
  '-p udp -m pknock --knockports 1 --closesecret a --name A',
  '-p udp -m pknock --checkip --opensecret a --name A',
  '-p udp -m pknock --checkip --time 3 --name A',
  '-p udp -m pknock --checkip --autoclose 3 --name A',
  '-p udp -m pknock --name A',
  '-p udp -m pknock --knockports 1 --name A',
  '-p tcp -m pknock --knockports ssh,http --time 10 --name A',
  '-p tcp -m pknock --knockports ssh,99999 --time 10 --name A',
  '-p tcp -m pknock --knockports 1,x --time 10 --name A',
  '-p tcp -m pknock --knockports 0 --time 10 --name A',
  '-p tcp -m pknock --knockports 1, --time 10 --name A',
  '-p tcp -m pknock --knockports 0x10,010 --time 10 --name A',
  '-p tcp -m pknock --knockports 4002,4001,4004 --time 10 --name SSH --strict --autoclose 5',
  '-p udp -m pknock --knockports 4000 --opensecret aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa --closesecret b --autoclose 60 --name SPA',
  '-p udp -m pknock --checkip --name AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
  '-p tcp -m pknock --checkip --strict --name A',
  '-p tcp -m pknock --time 3 --name A',
  '-p tcp -m pknock --knockports 1 --time 10 --name A --strict --strict',
  '-p tcp -m pknock --knockports 1 --time 10 --name A --name B',
  '-p tcp -m pknock --knockports 1 --knockports 2 --time 10 --name A',
  '-p tcp -m pknock --knockports 1 --time 10 --name A --checkip --checkip',
  '-p udp -m pknock --knockports 1 --opensecret a --opensecret b --closesecret c --name A',
];

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const v = spawnSync('iptables-legacy', ['--version'], { encoding: 'utf8' });
  if (v.status !== 0 || !/v1\.8\.9/.test(v.stdout)) return 'iptables-legacy 1.8.9 not installed';
  if (spawnSync('cc', ['--version']).status !== 0) return 'no C compiler (cc) for the revision shim';
  if (spawnSync('test', ['-s', '/usr/lib/x86_64-linux-gnu/xtables/libxt_pknock.so']).status !== 0) return 'libxt_pknock.so missing (xtables-addons-common)';
  return null;
}

const why = unavailable();
if (why !== null) {
  test('pknock parser through iptables-legacy', (t) => t.fail(`cannot run: ${why} (scripts/ensure-setup installs what is missing)`));
} else {
  const ns = `xw4-ipt${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'xw4-shim-'));
  const shim = join(dir, 'revision-shim.so');
  test.before(() => {
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', shim, join(REPO_ROOT, 'test', 'fixtures', 'xtables-addons', 'revision-shim.c'), '-ldl']);
    execFileSync('ip', ['netns', 'add', ns]);
  });
  test.after.always(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  test.serial('parse errors and the parsed rule (-v) equal iptables-legacy with libxt_pknock', async (t) => {
    const engine = await testEngine();
    const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)');
    for (const line of LINES) {
      const words = ['-v', '-A', 'INPUT', ...splitLine(line, 0), '-j', 'DROP'];
      const real = spawnSync('ip', ['netns', 'exec', ns, 'iptables-legacy', ...words], { encoding: 'utf8', env: { ...process.env, LD_PRELOAD: shim }, timeout: 20_000 });
      const ours = await engine.run(`iptables ${words.join(' ')}`);
      if (real.status === 2) {
        t.is(ours.status, 2, `${line}: xtr accepted what iptables refused: ${real.stderr}`);
        t.is(ours.stderr, norm(real.stderr), line);
      } else {
        t.is(real.status, 1, `${line}: ${real.stderr}`);
        t.regex(real.stderr, /No chain\/target\/match by that name/, line);
        // Lines only xt_pknock's checkentry refuses are in the next table.
        if (ours.status === 1 && /xt_pknock/.test(ours.stderr)) continue;
        t.is(ours.status, 0, `${line}: ${ours.stderr}`);
        t.is(ours.stdout, real.stdout, line);
      }
    }
  });
}

/** What xt_pknock's checkentry refuses (its dmesg words); the parser accepts these. */
const KERNEL_REFUSALS: [string, string][] = [
  ['-p udp -m pknock --knockports 1,2 --opensecret a --closesecret b --name A', 'xt_pknock: --opensecret must have just one knock port'],
  ['-p udp -m pknock --knockports 1 --opensecret same --closesecret same --name A', 'xt_pknock: opensecret & closesecret cannot be equal.'],
  ['-p tcp -m pknock --knockports 1 --time 10 --name ""', 'xt_pknock: add_rule() error in checkentry() function.'],
  ['-p tcp -m pknock --knockports 1 --time 10 --name a/b', 'xt_pknock: add_rule() error in checkentry() function.'],
];

test('what the kernel check refuses: EINVAL with upstream\'s log line, nothing loaded', async (t) => {
  const engine = await testEngine();
  for (const [line, msg] of KERNEL_REFUSALS) {
    const r = await engine.run(`iptables -A INPUT ${line} -j DROP`);
    t.is(r.status, 1, line);
    t.true(r.stderr.includes('Invalid argument'), `${line}: ${r.stderr}`);
    t.true(r.stderr.includes(msg), `${line}: ${r.stderr}`);
  }
  const s = await engine.run('iptables -S INPUT');
  t.is(s.stdout, '-P INPUT ACCEPT\n');
});

test('iptables-save hides the secrets as upstream; the persisted text keeps them and parses back', (t) => {
  const h = new XtHarness();
  const place = { table: 'filter', chain: 'INPUT', proto: 'udp' } as const;
  const p = h.parse(pknock, ['--knockports', '4000', '--opensecret', 'open sesame', '--closesecret', 'cl"ose', '--autoclose', '2', '--name', 'SPA'], place);
  t.is(pknock.save(p), ' --knockports 4000  --autoclose 2  --name SPA  --opensecret  --closesecret ');
  const persisted = pknock.persistSave!(p);
  t.is(persisted, ' --knockports 4000  --autoclose 2  --name SPA  --opensecret "open sesame"  --closesecret "cl\\"ose" ');
  const back = h.parse(pknock, splitLine(persisted.trim(), 0), place);
  t.deepEqual(back, p);
  t.is(pknock.print!(p), ' pknock knockports 4000 autoclose 2 name SPA opensecret closesecret ');
});
