/**
 * CLI conventions of every xtr command-line tool (issue 13, item 8): `--help`
 * (stdout, exit 0), `--version` (`TOOL (xtr) VERSION`, exit 0), exit status 0
 * ok / 1 runtime failure / 2 usage error, `-q` silencing the builders' report,
 * and a closed pipe (`tool | head -1`) ending the tool quietly. The tools run
 * as users run them: bin/xtr.js and the launchers in scripts/.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DOCUMENTED_COMMANDS } from '../router/cli.js';
import { REPO_ROOT, startLab } from './helpers/netns.js';
import { randomBytes } from 'node:crypto';

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const work = mkdtempSync(join(tmpdir(), 'xx3-cli-'));
test.after.always(() => rmSync(work, { recursive: true, force: true }));

const NO_SOCKET = join(work, 'no-router.sock');

function tool(name: string): string[] {
  return name === 'xtr' ? [process.execPath, join(REPO_ROOT, 'bin', 'xtr.js')] : [join(REPO_ROOT, 'scripts', name)];
}

function run(name: string, args: readonly string[], env: Record<string, string> = {}): { status: number | null; stdout: string; stderr: string } {
  const [cmd, ...pre] = tool(name);
  const r = spawnSync(cmd!, [...pre, ...args], {
    encoding: 'utf8',
    cwd: work,
    timeout: 60_000,
    env: { ...process.env, XTR_SOCKET: NO_SOCKET, XTR_SYSRQ_PASSWORD: 'pw', XTR_KNOCK_SECRET: 'sekret', ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// A small country database for the query tools and the EPIPE case: enough
// ranges that the query's output is far beyond a pipe's 64 KiB buffer.
const db = join(work, 'db');
mkdirSync(db);
const csvPath = join(work, 'in.csv');
{
  const lines: string[] = [];
  for (let i = 0; i < 20000; i++) {
    const a = 1 + (i >> 8);
    const b = i & 255;
    lines.push(`${a}.${b}.0.0,${a}.${b}.0.127,DE`);
  }
  writeFileSync(csvPath, lines.join('\n') + '\n');
}

interface Row {
  tool: string;
  /** An invocation that fails at run time (exit 1). */
  runtime: string[];
  /** An invocation the tool refuses as usage (exit 2). */
  usage: string[];
  /** A successful invocation (exit 0), when one works without network or router. */
  ok?: string[];
}

const ROWS: Row[] = [
  { tool: 'xtr', runtime: ['status'], usage: ['--bogus'] },
  { tool: 'xt_geoip_build', runtime: ['-D', join(work, 'nope'), '-i', csvPath], usage: ['-Z'], ok: ['-q', '-D', db, '-i', csvPath] },
  { tool: 'xt_geoip_build_maxmind', runtime: ['-S', join(work, 'nope')], usage: ['--frobnicate'] },
  { tool: 'xt_asn_build', runtime: ['-D', join(work, 'nope'), '-i', csvPath], usage: ['-Z'] },
  { tool: 'xt_geoip_query', runtime: ['-D', join(work, 'nope'), 'DE'], usage: ['-Z', 'DE'], ok: ['-D', db, '-4', 'DE'] },
  { tool: 'xt_asn_query', runtime: ['-D', join(work, 'nope'), '1'], usage: ['--bogus', '1'] },
  // The download tools (scripts/geoip-fetch.ts): a refused connection is a runtime failure; their
  // successful runs need a server (test/geoip-update.test.ts).
  { tool: 'xt_geoip_dl', runtime: ['--url', 'http://127.0.0.1:9/dbip-country-lite.csv.gz'], usage: ['--bogus'] },
  { tool: 'xt_geoip_dl_maxmind', runtime: ['--license-key-file', join(work, 'missing')], usage: ['key1', 'key2'] },
  { tool: 'xt_asn_dl', runtime: ['--url', 'http://127.0.0.1:9/dbip-asn-lite.csv.gz'], usage: ['--url'] },
  { tool: 'xt_geoip_update', runtime: ['-D', join(work, 'nope')], usage: ['--frequency', 'often'] },
  { tool: 'iptaccount', runtime: ['-a'], usage: ['-x'] },
  { tool: 'xtr-knock', runtime: ['--spa', '--secret-file', join(work, 'missing'), '127.0.0.1', '1'], usage: ['--bogus'], ok: ['--spa', '--minute', '1', '--print', '-s', '127.0.0.1', '127.0.0.1', '9'] },
  { tool: 'xtr-sysrq', runtime: ['--password-file', join(work, 'missing'), '127.0.0.1', 's'], usage: ['-p', '0', '127.0.0.1', 's'], ok: ['-n', '-s', '5', '--salt', 'x', '127.0.0.1', 's'] },
];

for (const row of ROWS) {
  test(`${row.tool}: --help, --version, exit 0/1/2`, (t) => {
    const help = run(row.tool, ['--help']);
    t.is(help.status, 0, help.stderr);
    t.regex(help.stdout, /usage: /);
    t.regex(help.stdout, /exit status: 0 /, 'the help states the exit statuses');
    t.is(help.stderr, '');
    const version = run(row.tool, ['--version']);
    t.is(version.status, 0, version.stderr);
    t.is(version.stdout, `${row.tool} (xtr) ${VERSION}\n`);
    const usage = run(row.tool, row.usage);
    t.is(usage.status, 2, `usage error: ${usage.stderr}`);
    t.notRegex(usage.stderr, /\n\s+at /, 'no stack trace');
    const failure = run(row.tool, row.runtime);
    t.is(failure.status, 1, `runtime failure: ${failure.stdout}${failure.stderr}`);
    t.notRegex(failure.stderr, /\n\s+at /, 'no stack trace');
    if (row.ok) {
      const ok = run(row.tool, row.ok);
      t.is(ok.status, 0, ok.stderr);
    }
  });
}

test('xtr: -h is --help, no command is a usage error', (t) => {
  t.is(run('xtr', ['-h']).status, 0);
  const none = run('xtr', []);
  t.is(none.status, 2);
  t.regex(none.stderr, /usage: xtr/);
});

test('-q: the builders print no report; without it they do', (t) => {
  const inputs = { geo: join(work, 'q-geo'), asn: join(work, 'q-asn') };
  for (const d of Object.values(inputs)) mkdirSync(d, { recursive: true });
  const asnCsv = join(work, 'asn.csv');
  writeFileSync(asnCsv, '1.0.0.0,1.0.0.255,13335,Cloudflare\n2.0.0.0,2.0.0.255,3215,Orange\n');
  const cases: [string, string[]][] = [
    ['xt_geoip_build', ['-D', inputs.geo, '-i', csvPath]],
    ['xt_asn_build', ['-D', inputs.asn, '-i', asnCsv]],
  ];
  for (const [name, args] of cases) {
    const loud = run(name, args);
    t.is(loud.status, 0, loud.stderr);
    t.not(loud.stdout, '', `${name} reports without -q`);
    const quiet = run(name, ['-q', ...args]);
    t.is(quiet.status, 0, quiet.stderr);
    t.is(quiet.stdout, '', `${name} -q prints no report`);
    t.is(quiet.stderr, '', `${name} -q prints no progress`);
  }
});

test('a closed pipe ends a tool quietly (xt_geoip_query ... | head -1)', (t) => {
  for (const [name, args] of [
    ['xt_geoip_query', ['-D', db, 'DE']],
    ['xtr', ['--help']],
  ] as [string, string[]][]) {
    const cmd = [...tool(name), ...args].map((w) => `'${w}'`).join(' ');
    const r = spawnSync('bash', ['-c', `${cmd} 2>${join(work, 'err')} | head -1; echo "rc=\${PIPESTATUS[0]}"`], { encoding: 'utf8', cwd: work, timeout: 60_000 });
    const lines = r.stdout.trim().split('\n');
    t.is(lines.length, 2, r.stdout);
    t.regex(lines[1]!, /^rc=0$/, `${name}: exit status after EPIPE`);
    t.is(readFileSync(join(work, 'err'), 'utf8'), '', `${name}: nothing on stderr`);
  }
});

test('xtr --help names every command a running router answers', async (t) => {
  const lab = await startLab({ prefix: `xx3-${randomBytes(1).toString('hex')}-` });
  try {
    const r = await lab.xtr(['no-such-command']);
    t.is(r.status, 2);
    const m = /known: (.*)$/m.exec(r.stderr);
    t.truthy(m, r.stderr);
    const known = m![1]!.split(', ').sort();
    // `events` is the socket's stream request, not in the command table.
    t.deepEqual(DOCUMENTED_COMMANDS.filter((c) => c !== 'events').sort(), known);
    const help = run('xtr', ['--help']).stdout;
    for (const c of known) t.regex(help, new RegExp(`^  ${c.replace(/[-]/g, '\\-')}\\b`, 'm'), `--help documents ${c}`);
    // The router's unknown-command answer is a usage error at the CLI too.
    const cli = await lab.router.cli(['no-such-command']);
    t.is(cli.code, 2);
  } finally {
    await lab.stop();
  }
});

test('man pages in docs/man are generated from --help and current; man renders them without warnings', async (t) => {
  const { generate, MAN_TOOLS } = await import('../scripts/gen-man.js');
  const pages = generate(VERSION);
  t.deepEqual(Object.keys(pages).sort(), Object.keys(MAN_TOOLS).map((n) => `${n}.1`).sort());
  for (const [name, text] of Object.entries(pages)) {
    const path = join(REPO_ROOT, 'docs', 'man', name);
    t.is(readFileSync(path, 'utf8'), text, `${name} is stale: run node --import tsx scripts/gen-man.ts`);
    const r = spawnSync('man', ['--warnings', '-l', path], { encoding: 'utf8', env: { ...process.env, MANWIDTH: '100', MANPAGER: 'cat', PAGER: 'cat' }, timeout: 30_000 });
    t.is(r.status, 0, r.stderr);
    t.is(r.stderr, '', `${name}: groff warnings`);
    t.regex(r.stdout, /usage: /);
  }
});
