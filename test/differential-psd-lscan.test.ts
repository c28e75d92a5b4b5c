/**
 * psd and lscan option parsing against the real userspace parsers: Debian's
 * xtables-addons-common ships libxt_psd.so and libxt_lscan.so, but this
 * kernel has no xt_psd/xt_lscan, so iptables-legacy refuses to load them
 * ("Extension psd is not supported, missing kernel module?") before parsing.
 * A tiny LD_PRELOAD shim, built here with cc, answers iptables' "is this
 * revision supported" getsockopt with yes; everything else (the option
 * parser, its errors, the final insert that then fails with "No chain/target/
 * match by that name") is iptables' own. For each line: a parameter problem
 * (status 2) must be xtr's too with the same whole stderr; a line the parser
 * accepted (the kernel then answers 1) must not be a parameter problem in xtr.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine } from '../router/netfilter/testkit.js';

const SHIM = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
int getsockopt(int fd, int level, int optname, void *optval, socklen_t *optlen) {
  static int (*real)(int, int, int, void *, socklen_t *);
  if (!real) real = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
  /* IPT_SO_GET_REVISION_MATCH/TARGET (SOL_IP 66/67), IP6T_ (SOL_IPV6 68/69) */
  if ((level == 0 && (optname == 66 || optname == 67)) || (level == 41 && (optname == 68 || optname == 69))) return 0;
  return real(fd, level, optname, optval, optlen);
}
`;

function unavailable(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  if (!/v1\.8\.9/.test(spawnSync('iptables-legacy', ['--version'], { encoding: 'utf8' }).stdout ?? '')) return 'iptables-legacy 1.8.9 not installed';
  if (spawnSync('sh', ['-c', 'ls /usr/lib/*/xtables/libxt_psd.so /usr/lib/*/xtables/libxt_lscan.so']).status !== 0) return 'xtables-addons-common not installed';
  if (spawnSync('cc', ['--version']).status !== 0) return 'no C compiler for the shim';
  return null;
}
const why = unavailable();

const LINES = [
  'iptables -A INPUT -m psd --psd-weight-threshold x -j DROP',
  'iptables -A INPUT -m psd --psd-weight-threshold 10001 -j DROP',
  'iptables -A INPUT -m psd --psd-weight-threshold 10000 -j DROP',
  'iptables -A INPUT -m psd --psd-weight-threshold -1 -j DROP',
  'iptables -A INPUT -m psd --psd-weight-threshold 5 --psd-weight-threshold 6 -j DROP',
  'iptables -A INPUT -m psd --psd-delay-threshold 3x -j DROP',
  'iptables -A INPUT -m psd --psd-delay-threshold 1 --psd-delay-threshold 1',
  'iptables -A INPUT -m psd --psd-lo-ports-weight 0x10001',
  'iptables -A INPUT -m psd --psd-lo-ports-weight 2 --psd-lo-ports-weight 2',
  'iptables -A INPUT -m psd --psd-hi-ports-weight "" -j DROP',
  'iptables -A INPUT -m psd --psd-hi-ports-weight 7 --psd-hi-ports-weight 8',
  'iptables -A INPUT -m psd --psd-weight-threshold',
  'iptables -A INPUT -m psd --psd-weight-threshold -j',
  'iptables -A INPUT -m psd --psd-bogus 1',
  'iptables -A INPUT -m psd ! --psd-weight-threshold 5',
  'iptables -A INPUT -m psd --psd-weight-threshold 0x10 --psd-delay-threshold 010 --psd-lo-ports-weight 0 --psd-hi-ports-weight 2',
  'iptables -A INPUT -m psd --psd-weight-threshold=30',
  'iptables -A INPUT -m psd --psd-weight 30',
  'iptables -A INPUT -m psd',
  'ip6tables -A INPUT -m psd --psd-weight-threshold x',
  'ip6tables -A INPUT -m psd --psd-hi-ports-weight 1 --psd-hi-ports-weight 1',
  'iptables -A INPUT -p tcp -m lscan --stealth --stealth --synscan',
  'iptables -A INPUT -p tcp -m lscan ! --stealth',
  'iptables -A INPUT -p tcp -m lscan --stealth=1',
  'iptables -A INPUT -p tcp -m lscan --stealthy',
  'iptables -A INPUT -p tcp -m lscan --mirai --syn',
  'iptables -A INPUT -p tcp -m lscan',
  'iptables -A INPUT -p tcp -m lscan --grscan x',
];

(why ? test.skip : test.serial)(`psd/lscan option parsing: xtr vs iptables-legacy + libxt_psd/libxt_lscan${why ? ` (skipped: ${why})` : ''}`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xw3a-shim-'));
  const ns = `xw3a-opt${process.pid}`;
  try {
    writeFileSync(join(dir, 'shim.c'), SHIM);
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'shim.so'), join(dir, 'shim.c'), '-ldl'], { encoding: 'utf8' });
    t.is(cc.status, 0, cc.stderr);
    t.is(spawnSync('ip', ['netns', 'add', ns]).status, 0);
    const e = await testEngine();
    for (const line of LINES) {
      const words = splitLine(line, 0);
      const k = spawnSync('ip', ['netns', 'exec', ns, 'env', `LD_PRELOAD=${join(dir, 'shim.so')}`, `${words[0]}-legacy`, ...words.slice(1)], { encoding: 'utf8', timeout: 20_000 });
      const x = await e.run(line);
      if (k.status === 2) {
        t.is(x.status, 2, `${line}\nkernel: ${k.stderr}\nxtr: ${x.stderr}`);
        t.is(x.stderr.replace(/\(xtr\)/g, '(legacy)'), k.stderr, line);
      } else {
        t.is(k.status, 1, `${line}: the parser accepted it, the kernel has no module: ${k.stderr}`);
        t.regex(k.stderr, /No chain\/target\/match by that name/, line);
        t.not(x.status, 2, `${line}\nxtr: ${x.stderr}`);
      }
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  }
});
