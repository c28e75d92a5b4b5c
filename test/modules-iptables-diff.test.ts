/**
 * The save texts and error messages of the module tables, checked against
 * the real iptables 1.8.9 (legacy) in a private network namespace: each
 * rule is added there, `-S` is read back, and our `-m NAME` + save() must
 * be the same line; each bad rule must fail with status 2 and the same
 * message. Skipped when not root or iptables-legacy is absent.
 */
import test from 'ava';
import { execFileSync, spawnSync } from 'node:child_process';
import type { Family } from '../xt/packet.js';
import type { Extension, RuleInfo } from '../xt/extension.js';
import tcp from '../modules/tcp.js';
import udp from '../modules/udp.js';
import icmp from '../modules/icmp.js';
import icmp6 from '../modules/icmp6.js';
import multiport from '../modules/multiport.js';
import state from '../modules/state.js';
import conntrack from '../modules/conntrack.js';
import limit from '../modules/limit.js';
import mac from '../modules/mac.js';
import mark from '../modules/mark.js';
import connmark from '../modules/connmark.js';
import comment from '../modules/comment.js';
import length from '../modules/length.js';
import ttl from '../modules/ttl.js';
import hl from '../modules/hl.js';
import iprange from '../modules/iprange.js';
import recent from '../modules/recent.js';
import { MATCH_ERRORS, MATCH_SAVES, TARGET_SAVES, words } from './modules-fixtures.js';

const EXT: Record<string, Extension> = { tcp, udp, icmp, icmp6, multiport, state, conntrack, limit, mac, mark, connmark, comment, length, ttl, hl, iprange, recent };

/** The options column of an `iptables -L` line (after target, prot, opt, source, destination). */
function optionsColumn(line: string): string {
  return /^\S*\s+\S+\s+\S+\s+\S+\s+\S+\s+(.*)$/.exec(line)?.[1] ?? `(unparsed: ${line})`;
}

const RECENT_ROWS: [string, Family, string, string][] = [
  ['recent', 4, '', '--set'],
  ['recent', 4, '', '! --update --seconds 10 --reap --hitcount 3 --rttl --rdest --mask 255.255.0.0'],
  ['recent', 4, '', '--rcheck --name X'],
  ['recent', 6, '', '--remove --mask ffff:ffff::'],
];
const PROTO: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, icmpv6: 58 };
const PRINTED_PROTO: Record<string, string> = { tcp: 'tcp', udp: 'udp', icmp: 'icmp', icmpv6: 'ipv6-icmp' };

const have = process.getuid?.() === 0 && spawnSync('iptables-legacy', ['--version']).status === 0 && spawnSync('ip', ['-V']).status === 0;
const ns = `xmdiff${process.pid}`;

function argv(text: string): string[] {
  return text.match(/"[^"]*"|\S+/g)?.map((x) => x.replace(/^"|"$/g, '')) ?? [];
}

function ipt(family: Family, args: string[]) {
  return spawnSync('ip', ['netns', 'exec', ns, family === 4 ? 'iptables-legacy' : 'ip6tables-legacy', ...args], { encoding: 'utf8' });
}

const rule = (family: Family, proto: string, table: RuleInfo['table'] = 'filter'): RuleInfo => ({ family, table, chain: 'INPUT', proto: PROTO[proto] ?? 0, protoInverted: false });

if (!have) {
  test.skip('iptables-legacy in a namespace (needs root and iptables-legacy)', () => {});
} else {
  test.before(() => execFileSync('ip', ['netns', 'add', ns]));
  test.after.always(() => spawnSync('ip', ['netns', 'del', ns]));

  test.serial('match save text equals iptables-save output', (t) => {
    for (const [name, family, proto, opts, _saved] of MATCH_SAVES) {
      const ext = EXT[name];
      const chain = family === 4 ? 'INPUT' : 'INPUT';
      ipt(family, ['-F', chain]);
      const r = ipt(family, ['-A', chain, ...(proto ? ['-p', proto] : []), '-m', name, ...argv(opts)]);
      t.is(r.status, 0, `${name} ${opts}: ${r.stderr}`);
      const real = ipt(family, ['-S', chain]).stdout.trim().split('\n').pop() ?? '';
      const ours = `-A ${chain}${proto ? ` -p ${PRINTED_PROTO[proto]}` : ''} -m ${name}${ext.save(ext.parse(words(ext, opts), rule(family, proto)) as never)}`;
      t.is(ours, real, `${name} ${opts}`);
    }
  });

  test.serial('target save text equals iptables-save output', (t) => {
    for (const [ext, family, proto, table, opts] of TARGET_SAVES) {
      const chain = table === 'raw' ? 'PREROUTING' : 'INPUT';
      ipt(family, ['-t', table, '-F', chain]);
      const r = ipt(family, ['-t', table, '-A', chain, ...(proto ? ['-p', proto] : []), '-j', ext.name, ...argv(opts)]);
      t.is(r.status, 0, `${ext.name} ${opts}: ${r.stderr}`);
      const real = ipt(family, ['-t', table, '-S', chain]).stdout.trim().split('\n').pop() ?? '';
      const params = ext.parse(words(ext, opts), { ...rule(family, proto, table), chain });
      t.is(`-A ${chain}${proto ? ` -p ${PRINTED_PROTO[proto]}` : ''} -j ${ext.name}${ext.save(params as never)}`, real, `${ext.name} ${opts}`);
    }
  });

  test.serial('iptables -L options text (numeric and with service names) equals iptables', (t) => {
    const rows: [string, Family, string, string][] = [...MATCH_SAVES.map(([n, f, p, o]) => [n, f, p, o] as [string, Family, string, string]), ...RECENT_ROWS];
    for (const [name, family, proto, opts] of rows) {
      const ext = EXT[name];
      ipt(family, ['-F', 'INPUT']);
      t.is(ipt(family, ['-A', 'INPUT', ...(proto ? ['-p', proto] : []), '-m', name, ...argv(opts)]).status, 0, `${name} ${opts}`);
      const params = ext.parse(words(ext, opts), rule(family, proto)) as never;
      for (const numeric of [true, false]) {
        const real = optionsColumn(ipt(family, ['-L', 'INPUT', ...(numeric ? ['-n'] : [])]).stdout.trim().split('\n').pop() ?? '');
        t.is(ext.print!(params, numeric).trimStart(), real, `${name} ${opts}${numeric ? ' -n' : ''}`);
      }
    }
    for (const [ext, family, proto, table, opts] of TARGET_SAVES) {
      const chain = table === 'raw' ? 'PREROUTING' : 'INPUT';
      ipt(family, ['-t', table, '-F', chain]);
      ipt(family, ['-t', table, '-A', chain, ...(proto ? ['-p', proto] : []), '-j', ext.name, ...argv(opts)]);
      const real = optionsColumn(ipt(family, ['-t', table, '-L', chain, '-n']).stdout.trim().split('\n').pop() ?? '');
      const params = ext.parse(words(ext, opts), { ...rule(family, proto, table), chain }) as never;
      t.is(ext.print!(params, true).trimStart(), real, `${ext.name} ${opts}`);
    }
  });

  test.serial('parse errors: same exit status 2 and message as iptables', (t) => {
    for (const [name, family, proto, opts, msg] of MATCH_ERRORS) {
      const r = ipt(family, ['-A', 'INPUT', ...(proto ? ['-p', proto] : []), '-m', name, ...argv(opts)]);
      t.is(r.status, 2, `${name} ${opts}`);
      // The whole message up to the help hint: libxtables' own messages end in a newline, so a blank line follows them.
      const hint = r.stderr.indexOf('Try `');
      const message = r.stderr.slice(0, hint < 0 ? undefined : hint).replace(/^ip6?tables v1\.8\.9 \(legacy\): /, '');
      t.is(message, `${msg}\n`, `${name} ${opts}`);
    }
  });
}
