import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig, parseConfigText } from '../router/config.js';
import { applyEnvOverrides, configPathFromEnv, ENV_OVERRIDES } from '../router/config-env.js';

const BASE = `
logLevel: info
interfaces:
  - { name: lan, addresses: [10.61.1.1/24], attach: eth1 }
  - { name: wan, addresses: [10.61.2.1/24], attach: eth0 }
netfilter:
  policy: accept
  rulesFiles: { v4: /etc/xtr/examples/rules.v4 }
metrics: { listen: "127.0.0.1:9108", maxEventLoopLagMs: 500 }
`;

// Each row: the environment, then what the loaded configuration must show.
const rows: [string, Record<string, string>, (c: ReturnType<typeof parseConfigText>) => unknown, unknown][] = [
  ['no variables: the file as is', {}, (c) => [c.logLevel, c.netfilter, c.metrics?.port, c.failOpen], ['info', { policy: 'accept', rulesFiles: { v4: '/etc/xtr/examples/rules.v4' } }, 9108, false]],
  ['XTR_LOG_LEVEL', { XTR_LOG_LEVEL: 'debug' }, (c) => c.logLevel, 'debug'],
  ['XTR_STATE_DIR', { XTR_STATE_DIR: '/data/xtr' }, (c) => c.stateDir, '/data/xtr'],
  ['XTR_SOCKET', { XTR_SOCKET: '/run/x/x.sock' }, (c) => c.control.socket, '/run/x/x.sock'],
  ['XTR_RULES_V4 replaces the file\'s v4, keeps the other netfilter keys', { XTR_RULES_V4: '/etc/xtr/rules.v4' }, (c) => c.netfilter, { policy: 'accept', rulesFiles: { v4: '/etc/xtr/rules.v4' } }],
  ['XTR_RULES_V6 adds v6 beside the file\'s v4', { XTR_RULES_V6: '/etc/xtr/rules.v6' }, (c) => c.netfilter.rulesFiles, { v4: '/etc/xtr/examples/rules.v4', v6: '/etc/xtr/rules.v6' }],
  ['XTR_METRICS_LISTEN keeps the file\'s other metrics keys', { XTR_METRICS_LISTEN: '127.0.0.2:9200' }, (c) => [c.metrics?.host, c.metrics?.port, c.metrics?.maxEventLoopLagMs], ['127.0.0.2', 9200, 500]],
  ['XTR_METRICS_LISTEN=off turns the file\'s endpoint off', { XTR_METRICS_LISTEN: 'off' }, (c) => c.metrics, null],
  ['XTR_FAIL_OPEN=true', { XTR_FAIL_OPEN: 'true' }, (c) => c.failOpen, true],
  ['XTR_FAIL_OPEN=0', { XTR_FAIL_OPEN: '0' }, (c) => c.failOpen, false],
  ['XTR_NAT_PORTS', { XTR_NAT_PORTS: '40000-40999' }, (c) => c.gateway.natPorts, [40000, 40999]],
  ['XTR_FORWARD_PORTS: comma or space separated', { XTR_FORWARD_PORTS: 'tcp/2222, udp/5000-5010' }, (c) => c.gateway.forwardPorts, [{ proto: 'tcp', lo: 2222, hi: 2222 }, { proto: 'udp', lo: 5000, hi: 5010 }]],
  ['XTR_WORKERS', { XTR_WORKERS: '4' }, (c) => c.workers, 4],
  ['an empty variable counts as unset', { XTR_LOG_LEVEL: '', XTR_RULES_V4: '  ' }, (c) => [c.logLevel, c.netfilter.rulesFiles], ['info', { v4: '/etc/xtr/examples/rules.v4' }]],
  ['variables not XTR_* are ignored', { LOG_LEVEL: 'debug', xtr_log_level: 'debug' }, (c) => c.logLevel, 'info'],
];
for (const [name, env, pick, want] of rows) {
  test(`env override: ${name}`, (t) => {
    t.deepEqual(pick(parseConfigText(BASE, 'x.yaml', env)), want);
  });
}

// A bad value is refused like the same value in the file, but the error names the variable.
const errors: [Record<string, string>, RegExp][] = [
  [{ XTR_LOG_LEVEL: 'loud' }, /^logLevel: "loud" is not a log level .* \(from the environment: XTR_LOG_LEVEL\)$/],
  [{ XTR_RULES_V4: 'rules.v4' }, /^netfilter\.rulesFiles\.v4: "rules\.v4" must be an absolute path \(from the environment: XTR_RULES_V4\)$/],
  [{ XTR_METRICS_LISTEN: '0.0.0.0:9108' }, /^metrics\.listen: 0\.0\.0\.0 would expose metrics .*\(from the environment: XTR_METRICS_LISTEN\)$/],
  [{ XTR_METRICS_LISTEN: '10.61.1.1:9108' }, /^metrics\.listen: 10\.61\.1\.1 is an address of an interface xtr guards.*XTR_METRICS_LISTEN\)$/],
  [{ XTR_FAIL_OPEN: 'maybe' }, /^failOpen: XTR_FAIL_OPEN="maybe" is not a boolean/],
  [{ XTR_NAT_PORTS: '70000' }, /^gateway\.natPorts: .*XTR_NAT_PORTS\)$/],
  [{ XTR_WORKERS: 'two' }, /^workers: "two" must be an integer from 1 to 64 .*\(from the environment: XTR_WORKERS\)$/],
  [{ XTR_FORWARD_PORTS: 'tcp/22,icmp/1' }, /^gateway\.forwardPorts\[1\]: "icmp\/1" is not PROTO\/PORT.*XTR_FORWARD_PORTS\)$/],
];
for (const [env, re] of errors) {
  test(`env override refused: ${Object.keys(env)[0]}=${Object.values(env)[0]}`, (t) => {
    const e = t.throws(() => parseConfigText(BASE, 'x.yaml', env), { instanceOf: ConfigError });
    t.regex(e!.message, re);
  });
}

test('an error in the file itself is not blamed on a variable', (t) => {
  const e = t.throws(() => parseConfigText(`${BASE}failOpen: 3\n`, 'x.yaml', { XTR_LOG_LEVEL: 'debug' }), { instanceOf: ConfigError });
  t.is(e!.message, 'failOpen: 3 must be true or false');
});

test('a variable under a key the file has as a non-mapping is refused naming both', (t) => {
  const e = t.throws(() => parseConfigText('netfilter: [1]\n', 'x.yaml', { XTR_RULES_V4: '/r.v4' }), { instanceOf: ConfigError });
  t.regex(e!.message, /XTR_RULES_V4 sets netfilter\.rulesFiles\.v4, but the file's netfilter is not a mapping/);
});

test('an empty file with overrides: the variables alone make the settings', (t) => {
  const c = parseConfigText('', 'x.yaml', { XTR_LOG_LEVEL: 'warn', XTR_RULES_V4: '/r.v4' });
  t.is(c.logLevel, 'warn');
  t.deepEqual(c.netfilter, { rulesFiles: { v4: '/r.v4' } });
});

test('applyEnvOverrides does not modify the parsed document', (t) => {
  const doc = { netfilter: { rulesFiles: { v4: '/a' } } };
  const { doc: out, used } = applyEnvOverrides(doc, { XTR_RULES_V4: '/b' });
  t.deepEqual(doc, { netfilter: { rulesFiles: { v4: '/a' } } });
  t.deepEqual(out, { netfilter: { rulesFiles: { v4: '/b' } } });
  t.deepEqual([...used], [['netfilter.rulesFiles.v4', 'XTR_RULES_V4']]);
});

test('loadConfig reads the environment it is given (process.env by default)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xtr-env-'));
  try {
    const f = join(dir, 'x.yaml');
    writeFileSync(f, BASE);
    t.is(loadConfig(f, { XTR_LOG_LEVEL: 'trace' }).logLevel, 'trace');
    t.is(loadConfig(f, {}).logLevel, 'info');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('XTR_CONFIG: trimmed, empty is unset', (t) => {
  t.is(configPathFromEnv({ XTR_CONFIG: ' /etc/xtr/xtr.yaml ' }), '/etc/xtr/xtr.yaml');
  t.is(configPathFromEnv({ XTR_CONFIG: '' }), undefined);
  t.is(configPathFromEnv({}), undefined);
});

test('docs/config.md documents every variable', async (t) => {
  const { readFileSync } = await import('node:fs');
  const doc = readFileSync(fileURLToPath(new URL('../docs/config.md', import.meta.url)), 'utf8');
  for (const v of ['XTR_CONFIG', ...Object.keys(ENV_OVERRIDES)]) t.true(doc.includes(`\`${v}\``), `${v} in docs/config.md`);
});

// The router process: XTR_CONFIG names the file, XTR_LOG_LEVEL is checked, and the
// error names the variable (exit 1 before any device is opened).
test('main.js: XTR_CONFIG and a bad override refuse the start naming the variable', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xtr-env-'));
  try {
    const f = join(dir, 'x.yaml');
    writeFileSync(f, BASE);
    const main = fileURLToPath(new URL('../router/main.ts', import.meta.url));
    const run = (env: Record<string, string>) =>
      spawnSync(process.execPath, ['--import', 'tsx', main], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });
    const r = run({ XTR_CONFIG: f, XTR_LOG_LEVEL: 'loud' });
    t.is(r.status, 1);
    t.regex(r.stderr, /configuration error: logLevel: "loud" is not a log level .*\(from the environment: XTR_LOG_LEVEL\)/);
    const missing = run({ XTR_CONFIG: join(dir, 'none.yaml') });
    t.is(missing.status, 1);
    t.regex(missing.stderr, /cannot read config file .*none\.yaml/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
