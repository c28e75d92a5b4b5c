/**
 * ipp2p, fuzzy, ipv4options and gradm option handling against the real
 * thing: iptables-legacy 1.8.9 with Debian's xtables-addons-common parsers
 * (libxt_ipp2p.so, ...) in a throwaway namespace. This kernel has no
 * xtables-addons modules, and iptables refuses to load an extension whose
 * revision the kernel does not know, so iptables runs with a small
 * LD_PRELOAD shim (test/fixtures/xtables-addons/revision-shim.c, built here
 * with cc) that says the revision exists; the extension's parser, final
 * check and print then run exactly as on a kernel with the module, and only
 * the commit fails ("No chain/target/match by that name").
 *
 * Lines run through iptables and (for the IPv6 rows) ip6tables. Compared:
 * a refused line's exit status and whole stderr (iptables'
 * "(legacy)" read as "(xtr)"), and for an accepted line the rule `-v`
 * prints before the commit - which for these extensions is " -m NAME" and
 * the save text - with xtr's `-v` output.
 *
 * length2 and iface are not here: Debian's libxt_length2.so and
 * libxt_iface.so are empty (no symbols, no strings), so there is no
 * upstream parser to run; their tables in modules-detect-matches.test.ts
 * follow upstream's source.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';
import { REPO_ROOT } from './helpers/kernel-router.js';

const LINES: string[] = [
  // ipp2p
  '-m ipp2p --bit',
  '-p tcp -m ipp2p --edk --dc --gnu --kazaa --bit --apple --winmx --soul --ares --xdcc --mute --waste --debug',
  '-m ipp2p --xdcc --edk',
  '-m ipp2p --edk --edk',
  '-m ipp2p --bit --debug --debug',
  '-m ipp2p ! --edk',
  '-m ipp2p --bit ! --debug',
  '-m ipp2p --debug',
  '-m ipp2p',
  '-m ipp2p --bit=x',
  '-m ipp2p --bittorrent',
  // fuzzy
  '-m fuzzy',
  '-m fuzzy --lower-limit 10 --upper-limit 20',
  '-m fuzzy --lower-limit 5 --upper-limit 0x10',
  '-m fuzzy --lower-limit 0',
  '-m fuzzy --lower-limit 10000001',
  '-m fuzzy --upper-limit -5',
  '-m fuzzy --upper-limit 5x',
  '-m fuzzy ! --lower-limit 5',
  '-m fuzzy ! --upper-limit 5',
  '-m fuzzy --lower-limit 5 --lower-limit 6',
  '-m fuzzy --upper-limit 5 --upper-limit 6',
  '-m fuzzy --lower-limit',
  // ipv4options
  '-m ipv4options',
  '-m ipv4options --any',
  '-m ipv4options --flags record-route',
  '-m ipv4options --flags lsrr,!ssrr --flags router-alert --any',
  '-m ipv4options --flags nop,security,timestamp,mtu-probe,mtu-reply,traceroute',
  '-m ipv4options --flags 0x14,!7',
  '-m ipv4options --flags 33',
  '-m ipv4options --flags nop,!nop',
  '-m ipv4options --flags foo',
  '-m ipv4options --flags 256',
  '-m ipv4options --flags 7,',
  '-m ipv4options --flags !!7',
  '-m ipv4options --flags Record-Route',
  '-m ipv4options --flags 0',
  '-m ipv4options ! --flags 7',
  '-m ipv4options ! --any',
  // gradm
  '-m gradm',
  '-m gradm --enabled',
  '-m gradm ! --enabled',
  '-m gradm --disabled',
  '-m gradm ! --disabled',
  '-m gradm --enabled ! --disabled --enabled',
  '-m gradm --enabled --disabled',
  '-m gradm ! --enabled ! --disabled',
];

/** ip6tables lines: ipp2p, fuzzy and gradm exist for IPv6; ipv4options does not. */
const LINES6: string[] = [
  '-m ipp2p --bit --debug',
  '-p udp -m ipp2p --edk --kazaa',
  '-m ipp2p ! --bit',
  '-m fuzzy --lower-limit 50 --upper-limit 60',
  '-m fuzzy ! --upper-limit 60',
  '-m gradm ! --enabled',
  '-m ipv4options --any',
];

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const v = spawnSync('iptables-legacy', ['--version'], { encoding: 'utf8' });
  if (v.status !== 0 || !/v1\.8\.9/.test(v.stdout)) return 'iptables-legacy 1.8.9 not installed';
  if (spawnSync('cc', ['--version']).status !== 0) return 'no C compiler (cc) for the revision shim';
  for (const m of ['ipp2p', 'fuzzy', 'ipv4options', 'gradm']) {
    if (spawnSync('test', ['-s', `/usr/lib/x86_64-linux-gnu/xtables/libxt_${m}.so`]).status !== 0) return `libxt_${m}.so missing (xtables-addons-common)`;
  }
  return null;
}

const why = unavailable();
if (why !== null) {
  test('xtables-addons parsers through iptables-legacy', (t) => t.fail(`cannot run: ${why} (scripts/ensure-setup installs what is missing)`));
} else {
  const ns = `xw3b-ipt${process.pid}`;
  const dir = mkdtempSync(join(tmpdir(), 'xw3b-shim-'));
  const shim = join(dir, 'revision-shim.so');
  test.before(() => {
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', shim, join(REPO_ROOT, 'test', 'fixtures', 'xtables-addons', 'revision-shim.c'), '-ldl']);
    execFileSync('ip', ['netns', 'add', ns]);
  });
  test.after.always(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  test.serial('parse errors and the parsed rule (-v) equal iptables-legacy with xtables-addons-common', async (t) => {
    const engine = await testEngine();
    const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)');
    const rows = [...LINES.map((l) => ['iptables', l] as const), ...LINES6.map((l) => ['ip6tables', l] as const)];
    for (const [tool, line] of rows) {
      const words = ['-v', '-A', 'INPUT', ...splitLine(line, 0)];
      const real = spawnSync('ip', ['netns', 'exec', ns, `${tool}-legacy`, ...words], { encoding: 'utf8', env: { ...process.env, LD_PRELOAD: shim }, timeout: 20_000 });
      const ours = await engine.run(`${tool} ${words.join(' ')}`);
      if (real.status === 2) {
        t.is(ours.status, 2, `${line}: xtr accepted what iptables refused: ${real.stderr}`);
        t.is(ours.stderr, norm(real.stderr), line);
      } else {
        // Accepted by the parser; the kernel step fails here (no module), so
        // compare what -v printed of the parsed rule.
        t.is(real.status, 1, `${line}: ${real.stderr}`);
        t.regex(real.stderr, /No chain\/target\/match by that name/, line);
        t.is(ours.status, 0, `${line}: ${ours.stderr}`);
        t.is(ours.stdout, real.stdout, line);
      }
    }
  });
}
