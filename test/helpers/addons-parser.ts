/**
 * Running xtables-addons' own userspace parsers (Debian's xtables-addons-common,
 * libxt_ACCOUNT.so, libxt_quota2.so, ...) through the real iptables-legacy,
 * although this kernel has none of their modules.
 *
 * iptables asks the kernel which revision of a match/target it supports
 * (getsockopt IPT_SO_GET_REVISION_MATCH/TARGET, and the IPv6 ones); without
 * the module the answer is ENOENT and iptables refuses the extension before
 * parsing a word ("Extension ACCOUNT is not supported, missing kernel
 * module?"). A tiny LD_PRELOAD shim answers "supported" to those two questions
 * only, so iptables loads the extension and runs its parser; every option
 * error is then the extension's own, and a rule that parses fails at the
 * kernel step with "No chain/target/match by that name" (status 1). With -v,
 * iptables prints the rule (the extension's print()) before committing.
 *
 * The shim is compiled with cc into a temp dir once per process.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SHIM_C = `#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>
/* IPT_SO_GET_REVISION_MATCH/TARGET = 66/67 (IPPROTO_IP), IP6T_... = 68/69 (IPPROTO_IPV6). */
int getsockopt(int fd, int level, int name, void *val, socklen_t *len) {
  static int (*real)(int, int, int, void *, socklen_t *);
  if (!real) real = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
  int r = real(fd, level, name, val, len);
  if (r < 0 && errno == ENOENT && (level == 0 || level == 41) && name >= 66 && name <= 69) { errno = 0; return 0; }
  return r;
}
`;

let shimPath: string | null | undefined;

/** The compiled shim, or null (with the reason in `shimProblem`) when cc, root or iptables-legacy is missing. */
export function addonsShim(): string | null {
  if (shimPath !== undefined) return shimPath;
  shimPath = null;
  if (process.getuid?.() !== 0) {
    shimProblem = 'needs root';
    return null;
  }
  if (!spawnSync('iptables-legacy', ['--version'], { encoding: 'utf8' }).stdout?.includes('v1.8.9')) {
    shimProblem = 'needs iptables-legacy 1.8.9';
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'xtr-addons-shim-'));
  writeFileSync(join(dir, 'rev.c'), SHIM_C);
  const cc = spawnSync('cc', ['-shared', '-fPIC', '-o', join(dir, 'rev.so'), join(dir, 'rev.c'), '-ldl'], { encoding: 'utf8' });
  if (cc.status !== 0) {
    shimProblem = `cc failed: ${cc.stderr}`;
    return null;
  }
  shimPath = join(dir, 'rev.so');
  return shimPath;
}

export let shimProblem = '';

/** iptables-legacy / ip6tables-legacy `args` in namespace `ns` with the shim preloaded. */
export function addonsIptables(ns: string, family: 4 | 6, args: readonly string[]): { status: number; stdout: string; stderr: string } {
  const shim = addonsShim();
  if (!shim) throw new Error(`addons parser: ${shimProblem}`);
  const r = spawnSync('ip', ['netns', 'exec', ns, family === 4 ? 'iptables-legacy' : 'ip6tables-legacy', ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    env: { ...process.env, LD_PRELOAD: shim },
  });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
