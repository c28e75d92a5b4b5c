// compose.yaml and its example files, checked without podman (scripts/check-image-compose
// runs them in the image; that takes minutes and is not part of npm test): the files the
// compose service mounts load with the real parsers, the networks and addresses agree,
// and compose-to-podman.mjs translates the service and refuses keys it cannot translate.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { loadConfig } from '../router/config.js';
import { checkRulesFiles } from '../router/appliance.js';
import { createLogger } from '../router/log.js';
import { extensions } from '../modules/registry.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const COMPOSE = join(ROOT, 'compose.yaml');

function translate(file: string): { status: number | null; stderr: string; flags: string[]; networks: string[]; volumes: string[] } {
  const out = mkdtempSync(join(tmpdir(), 'xtr-c2p-'));
  try {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts/compose-to-podman.mjs'), file, 'xtr', 'p-', out], { encoding: 'utf8' });
    const read = (n: string) => {
      try {
        return readFileSync(join(out, n), 'utf8').split('\n').filter((l) => l !== '');
      } catch {
        return [];
      }
    };
    return { status: r.status, stderr: r.stderr, flags: read('flags'), networks: read('networks'), volumes: read('volumes') };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

test('the xtr service translates to podman flags: each compose setting once', (t) => {
  const r = translate(COMPOSE);
  t.is(r.status, 0, r.stderr);
  const pairs = new Map<string, string[]>();
  for (let i = 0; i < r.flags.length; i += 2) pairs.set(r.flags[i]!, [...(pairs.get(r.flags[i]!) ?? []), r.flags[i + 1]!]);
  t.deepEqual(pairs.get('--cap-add'), ['NET_ADMIN']);
  t.deepEqual(pairs.get('--device'), ['/dev/net/tun']);
  t.true(pairs.get('--sysctl')!.includes('net.ipv4.ip_forward=1'));
  t.true(pairs.get('--sysctl')!.includes('net.ipv6.conf.all.forwarding=1'), 'xtr health needs both forwarding sysctls');
  t.true(pairs.get('-e')!.includes('XTR_RULES_V4=/etc/xtr/rules.v4'));
  t.deepEqual(pairs.get('-v'), [
    `${join(ROOT, 'examples/compose/xtr.yaml')}:/etc/xtr/xtr.yaml:ro`,
    `${join(ROOT, 'examples/compose/rules.v4')}:/etc/xtr/rules.v4:ro`,
    'p-xtr-state:/var/lib/xtr',
  ]);
  t.deepEqual(pairs.get('--health-cmd'), ['["xtr","health"]']);
  t.deepEqual(r.volumes, ['p-xtr-state']);
  // wan first (eth0), as examples/compose/xtr.yaml attaches it
  t.deepEqual(r.networks, ['wan 10.61.2.1 1000 10.61.2.0/24 10.61.2.254 0', 'lan 10.61.1.1 100 10.61.1.0/24 10.61.1.254 1']);
});

test('a compose key the translation does not know is refused, not ignored', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xtr-c2p-'));
  try {
    const doc = parse(readFileSync(COMPOSE, 'utf8'));
    doc.services.xtr.privileged = true;
    const f = join(dir, 'compose.yaml');
    writeFileSync(f, JSON.stringify(doc));
    const r = translate(f);
    t.is(r.status, 1);
    t.regex(r.stderr, /services\.xtr\.privileged: not translated/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the mounted xtr.yaml and rules.v4 load with the real parsers, addresses as compose assigns them', async (t) => {
  const doc = parse(readFileSync(COMPOSE, 'utf8'));
  const config = loadConfig(join(ROOT, 'examples/compose/xtr.yaml'), { XTR_RULES_V4: join(ROOT, 'examples/compose/rules.v4') });
  const byName = new Map(config.interfaces.map((i) => [i.name, i]));
  for (const [net, eth] of [['wan', 'eth0'], ['lan', 'eth1']] as const) {
    t.is(byName.get(net)!.attach, eth);
    t.deepEqual(byName.get(net)!.addresses, [`${doc.services.xtr.networks[net].ipv4_address}/24`]);
  }
  t.deepEqual(config.routes, [{ to: '0.0.0.0/0', via: doc.networks.wan.ipam.config[0].gateway, dev: 'wan' }]);
  // The client service's default route is xtr's LAN address.
  t.true(doc.services.client.entrypoint.join(' ').includes(`default via ${doc.services.xtr.networks.lan.ipv4_address}`));
  t.true(doc.networks.lan.internal);
  const log = createLogger({ level: 'silent' });
  const registry = await extensions();
  t.notThrows(() => checkRulesFiles(config, registry, log));
});

test('a broken rules file is refused by the same check (the one the image runs before placing anything)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xtr-rules-'));
  try {
    const bad = join(dir, 'rules.v4');
    writeFileSync(bad, readFileSync(join(ROOT, 'examples/compose/rules.v4'), 'utf8').replace('--dport ssh', '--dport no-such-service'));
    const config = loadConfig(join(ROOT, 'examples/compose/xtr.yaml'), { XTR_RULES_V4: bad });
    const registry = await extensions();
    const e = t.throws(() => checkRulesFiles(config, registry, createLogger({ level: 'silent' })));
    t.regex(e!.message, /no-such-service/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
