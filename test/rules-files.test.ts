/**
 * `netfilter.rulesFiles` (issue 8 §5, docs/config.md): iptables-restore files
 * loaded at start, over the saved state (each table a file names replaces the
 * saved one; other tables and extension state are kept), both checked before
 * either is committed; a bad file refuses the start naming the key, the file
 * and the line. Config rows, the appliance (engine level), and one gateway
 * lab: MASQUERADE from boot with no `xtr iptables` command.
 */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, validateConfig, type XtrConfig } from '../router/config.js';
import { buildAppliance, checkRulesFiles, loadRulesFiles, RulesFileError } from '../router/appliance.js';
import { Netfilter, netfilterCommands } from '../router/netfilter/index.js';
import { RecordingServices } from '../router/netfilter/testkit.js';
import { loadExtensions } from '../modules/registry.js';
import type { Router } from '../router/forward.js';
import type { Logger } from '../router/log.js';
import { Namespaces, exec, run, startRouter, uniquePrefix, vethPair, type RouterProcess } from './helpers/netns.js';

const NAT_RULES = [
  '*nat',
  ':PREROUTING ACCEPT [0:0]',
  ':INPUT ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':POSTROUTING ACCEPT [0:0]',
  '# a comment line',
  '-A PREROUTING -i wan -p tcp -m tcp --dport 2222 -j DNAT --to-destination 10.1.0.10:22',
  '-A POSTROUTING -o wan -j MASQUERADE',
  'COMMIT',
  '',
].join('\n');

const configRows: [string, unknown, string | null][] = [
  ['absent', undefined, null],
  ['v4 only', { v4: '/etc/xtr/rules.v4' }, null],
  ['both', { v4: '/etc/xtr/rules.v4', v6: '/etc/xtr/rules.v6' }, null],
  ['not an object', '/etc/xtr/rules.v4', 'netfilter.rulesFiles: expected an object, got "/etc/xtr/rules.v4"'],
  ['unknown key', { v5: '/x' }, 'netfilter.rulesFiles.v5: unknown key (allowed: v4, v6)'],
  ['relative path', { v4: 'rules.v4' }, 'netfilter.rulesFiles.v4: "rules.v4" must be an absolute path'],
  ['empty', { v6: '' }, 'netfilter.rulesFiles.v6: expected a non-empty string, got ""'],
  ['number', { v4: 4 }, 'netfilter.rulesFiles.v4: expected a non-empty string, got 4'],
];
for (const [name, value, error] of configRows) {
  test(`config netfilter.rulesFiles: ${name}`, (t) => {
    const doc = value === undefined ? {} : { netfilter: { rulesFiles: value } };
    if (error === null) {
      t.deepEqual(validateConfig(doc).netfilter.rulesFiles, value);
    } else {
      const e = t.throws(() => validateConfig(doc), { instanceOf: ConfigError });
      t.is(e?.message, error);
    }
  });
}

const registryP = loadExtensions();
const quietLog = { info() {}, warn() {}, error() {}, debug() {} } as unknown as Logger;
const routerOf = () => ({ services: new RecordingServices() }) as unknown as Router;
const body = (save: string) => save.split('\n').filter((l) => l !== '' && !l.startsWith('#'));

function tmp(t: { teardown(f: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'xx5-rules-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('appliance: a start with a rules file has exactly its rules (iptables-save)', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'rules.v4'), NAT_RULES);
  const config = { stateDir: join(dir, 'state'), netfilter: { rulesFiles: { v4: join(dir, 'rules.v4') } }, extensions: {} } as unknown as XtrConfig;
  const app = buildAppliance(config, routerOf(), quietLog, await registryP);
  const nat = await app.commands['iptables-save']!(['-t', 'nat'], null);
  t.is(nat.status, 0);
  t.deepEqual(body(nat.stdout), body(NAT_RULES).filter((l) => l !== '# a comment line'));
  const filter = await app.commands['iptables-save']!(['-t', 'filter'], null);
  t.false(/^-A /m.test(filter.stdout), filter.stdout);
  app.persist();
});

test('appliance: the rules file replaces the saved rules of the tables it names; other saved tables are kept', async (t) => {
  const dir = tmp(t);
  const stateDir = join(dir, 'state');
  const registry = await registryP;
  const first = buildAppliance({ stateDir, netfilter: {}, extensions: {} } as unknown as XtrConfig, routerOf(), quietLog, registry);
  for (const args of [['-A', 'FORWARD', '-p', 'udp', '-j', 'DROP'], ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'lan', '-j', 'MASQUERADE']]) {
    t.is((await first.commands.iptables!(args, null)).status, 0);
  }
  first.persist();
  writeFileSync(join(dir, 'rules.v4'), NAT_RULES);
  const config = { stateDir, netfilter: { rulesFiles: { v4: join(dir, 'rules.v4') } }, extensions: {} } as unknown as XtrConfig;
  const again = buildAppliance(config, routerOf(), quietLog, registry);
  const nat = body((await again.commands['iptables-save']!(['-t', 'nat'], null)).stdout).filter((l) => l.startsWith('-A'));
  t.deepEqual(nat, ['-A PREROUTING -i wan -p tcp -m tcp --dport 2222 -j DNAT --to-destination 10.1.0.10:22', '-A POSTROUTING -o wan -j MASQUERADE']);
  const filter = body((await again.commands['iptables-save']!(['-t', 'filter'], null)).stdout).filter((l) => l.startsWith('-A'));
  t.deepEqual(filter, ['-A FORWARD -p udp -j DROP']);
  again.persist();
});

test('appliance: a bad rules file refuses the start, naming the key, the file and the line', async (t) => {
  const dir = tmp(t);
  const path = join(dir, 'rules.v4');
  writeFileSync(path, '*nat\n-A POSTROUTING -o wan -j MASQUERADE\n-A POSTROUTING -j NOSUCHTARGET\nCOMMIT\n');
  const config = { stateDir: join(dir, 'state'), netfilter: { rulesFiles: { v4: path } }, extensions: {} } as unknown as XtrConfig;
  const await0 = await registryP;
  const e = t.throws(() => buildAppliance(config, routerOf(), quietLog, await0), { instanceOf: RulesFileError });
  t.true(e!.message.startsWith(`netfilter.rulesFiles.v4: ${path}: `), e!.message);
  t.regex(e!.message, /Couldn't load target `NOSUCHTARGET'.*Error occurred at line: 3$/);
  const missing = { stateDir: join(dir, 'state'), netfilter: { rulesFiles: { v6: join(dir, 'nope.v6') } }, extensions: {} } as unknown as XtrConfig;
  const m = t.throws(() => buildAppliance(missing, routerOf(), quietLog, await0), { instanceOf: RulesFileError });
  t.regex(m!.message, new RegExp(`^netfilter\\.rulesFiles\\.v6: cannot read ${join(dir, 'nope.v6')}: .*ENOENT`));
});

test('a bad v6 file leaves the good v4 file unloaded too (nothing half-loaded)', async (t) => {
  const dir = tmp(t);
  writeFileSync(join(dir, 'rules.v4'), NAT_RULES);
  writeFileSync(join(dir, 'rules.v6'), '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 10.0.0.1 -j DROP\nCOMMIT\n');
  const nf = new Netfilter({ registry: await registryP, services: new RecordingServices() });
  const config = { netfilter: { rulesFiles: { v4: join(dir, 'rules.v4'), v6: join(dir, 'rules.v6') } } } as unknown as XtrConfig;
  const e = t.throws(() => loadRulesFiles(nf, config, quietLog), { instanceOf: RulesFileError });
  t.regex(e!.message, /^netfilter\.rulesFiles\.v6: .*rules\.v6: .*Error occurred at line: 3$/);
  const save = netfilterCommands(nf)['iptables-save']!(['-t', 'nat'], null) as { stdout: string };
  t.false(/^-A /m.test(save.stdout), save.stdout);
});

test.serial('lab: gateway mode with a rules file MASQUERADEs from boot (no xtr iptables); a bad file exits 1 naming file and line', async (t) => {
  const nss = new Namespaces(uniquePrefix('xx5'));
  const dir = tmp(t);
  let router: RouterProcess | null = null;
  try {
    const a = await nss.add('a');
    const g = await nss.add('g');
    const b = await nss.add('b');
    await vethPair({ ns: a, ifname: 'a0', addresses: ['10.1.0.2/24'] }, { ns: g, ifname: 'ga', addresses: ['10.1.0.1/24'] });
    await vethPair({ ns: g, ifname: 'gb', addresses: ['10.2.0.1/24'] }, { ns: b, ifname: 'b0', addresses: ['10.2.0.2/24'] });
    await run(['ip', 'route', 'add', 'default', 'via', '10.1.0.1'], { netns: a });
    for (const s of ['net.ipv4.ip_forward=1', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0', 'net.ipv4.conf.default.accept_local=1']) {
      await run(['sysctl', '-q', '-w', s], { netns: g });
    }
    const config = (rules: string) => ({
      logLevel: 'info',
      interfaces: [
        { name: 'lan', mode: 'tun', mtu: 1500, addresses: ['10.1.0.1/24'], attach: 'ga' },
        { name: 'wan', mode: 'tun', mtu: 1500, addresses: ['10.2.0.1/24'], attach: 'gb' },
      ],
      routes: [],
      netfilter: { rulesFiles: { v4: rules } },
    });
    const bad = join(dir, 'bad.v4');
    writeFileSync(bad, '*nat\n-A POSTROUTING -o wan -j MASQUERADE --bogus\nCOMMIT\n');
    const refused = await t.throwsAsync(startRouter({ netns: g, socket: `/run/xtr/${nss.prefix}gw.sock`, config: config(bad) }));
    t.regex(refused!.message, /exit 1/);
    t.true(refused!.message.includes(`netfilter.rulesFiles.v4: ${bad}`), refused!.message);
    t.regex(refused!.message, /Error occurred at line: 2/);
    // Refused before any device opened: no policy rule placed, no TUN left (checkRulesFiles in main.ts).
    t.false(/iif (ga|gb)|xtr-/.test(await run(['ip', 'rule', 'show'], { netns: g })));
    t.false(/xtr-/.test(await run(['ip', 'link', 'show'], { netns: g })));

    const good = join(dir, 'rules.v4');
    writeFileSync(good, '*nat\n-A POSTROUTING -o wan -j MASQUERADE\nCOMMIT\n');
    router = await startRouter({ netns: g, socket: `/run/xtr/${nss.prefix}gw.sock`, config: config(good) });
    const ping = await exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', '10.2.0.2'], { netns: a, timeoutMs: 15_000 });
    t.regex(ping.stdout, / 2 received/);
    const ct = (await router.xtr(['conntrack', '-L'])).stdout;
    t.regex(ct, /^icmp .*src=10\.1\.0\.2 dst=10\.2\.0\.2 .*src=10\.2\.0\.2 dst=10\.2\.0\.1 /m, ct);
    const nat = (await router.xtr(['iptables-save', '-t', 'nat'])).stdout;
    t.true(nat.split('\n').includes('-A POSTROUTING -o wan -j MASQUERADE'), nat);
  } finally {
    if (router) await router.stop();
    await nss.cleanup();
  }
});

test('checkRulesFiles (main.ts, before any device opens): refuses a bad file, accepts a good one', async (t) => {
  const await0 = await registryP;
  const dir = tmp(t);
  writeFileSync(join(dir, 'good.v4'), NAT_RULES);
  writeFileSync(join(dir, 'bad.v4'), '*nat\n-A POSTROUTING -o wan -j MASQUERADE --nosuchopt\nCOMMIT\n');
  const cfg = (v4: string) => ({ netfilter: { rulesFiles: { v4 } }, extensions: {} }) as unknown as XtrConfig;
  t.notThrows(() => checkRulesFiles(cfg(join(dir, 'good.v4')), await0, quietLog));
  const e = t.throws(() => checkRulesFiles(cfg(join(dir, 'bad.v4')), await0, quietLog), { instanceOf: RulesFileError });
  t.regex(e!.message, /^netfilter\.rulesFiles\.v4: .*bad\.v4: .*Error occurred at line: 2$/);
});
