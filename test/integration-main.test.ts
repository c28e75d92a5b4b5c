/**
 * The router process and the lab script as users drive them: argument and
 * config errors are clear and exit non-zero, a failed start undoes what it
 * had done, SIGHUP does not stop the router, SIGTERM removes everything, and
 * `scripts/lab up|status|down` is idempotent.
 */
import test from 'ava';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createNamespace, deleteNamespace, exec, REPO_ROOT, routerMain, run, sleep, startRouter, uniquePrefix, waitFor } from './helpers/netns.js';
import { defaultConfigDocument } from '../router/default-config.js';

const dir = mkdtempSync(join(tmpdir(), 'xtr-main-test-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const nsExists = (ns: string) => existsSync(`/run/netns/${ns}`);

test('argument and configuration errors are clear and exit non-zero', async (t) => {
  const main = routerMain();
  const cases: { args: string[]; code: number; msg: RegExp; file?: string }[] = [
    { args: ['--bogus'], code: 2, msg: /unknown argument "--bogus"/ },
    { args: ['--config'], code: 2, msg: /--config needs a value/ },
    { args: ['--config', 'x.yaml', '--lab-prefix', 'p-'], code: 2, msg: /--lab-prefix applies to the embedded configuration only/ },
    { args: ['--lab-mode', 'bridge'], code: 2, msg: /--lab-mode "bridge": must be tun or tap/ },
    { args: ['--config', join(dir, 'missing.yaml')], code: 1, msg: /cannot read config file .*missing\.yaml/ },
    {
      args: ['--config', join(dir, 'bad.yaml')],
      file: 'interfaces:\n  - name: eth0\n    addresses: [198.51.100.300/24]\n',
      code: 1,
      msg: /configuration error: interfaces\[0\]\.addresses\[0\]: "198\.51\.100\.300\/24" is not an IPv4\/IPv6 prefix/,
    },
    { args: ['--config', join(dir, 'bad2.yaml')], file: 'interfaces: [\n', code: 1, msg: /not valid YAML/ },
  ];
  for (const c of cases) {
    if (c.file) writeFileSync(c.args[1], c.file);
    const r = await exec([process.execPath, main, ...c.args], { timeoutMs: 20_000 });
    t.is(r.code, c.code, `${c.args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, c.msg, c.args.join(' '));
  }
});

test('a start that fails half-way undoes devices and the namespaces it created', async (t) => {
  const p = uniquePrefix();
  const routerNs = `${p}r`;
  await createNamespace(routerNs);
  t.teardown(async () => {
    for (const s of ['r', 'c', 's', 'm']) await deleteNamespace(`${p}${s}`);
  });
  // The peers' namespaces do not exist (xtr creates them); the host interface
  // name is taken by loopback, so opening it fails after the links were placed.
  const doc = defaultConfigDocument({ prefix: p, socket: `/run/xtr/${p}fail.sock`, hostInterface: 'lo', stateDir: join(dir, `${p}fail-state`) });
  const cfg = join(dir, `${p}fail.json`);
  writeFileSync(cfg, JSON.stringify(doc));
  const r = await exec(['ip', 'netns', 'exec', routerNs, process.execPath, routerMain(), '--config', cfg], { timeoutMs: 30_000 });
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /failed to start: hostInterface: cannot open tun device lo/);
  for (const s of ['c', 's', 'm']) t.false(nsExists(`${p}${s}`), `${p}${s} was removed`);
  t.false(existsSync(`/run/xtr/${p}fail.sock`));
  const links = await run(['ip', '-n', routerNs, '-o', 'link', 'show']);
  t.notRegex(links, /\b(eth[0-2]|c0|s0|m0|xtr0)\b/, links);
});

test('SIGHUP keeps the router running; SIGTERM removes its devices and socket', async (t) => {
  const p = uniquePrefix();
  const names = ['r', 'c', 's', 'm'].map((s) => `${p}${s}`);
  for (const n of names) await createNamespace(n);
  t.teardown(async () => {
    for (const n of names) await deleteNamespace(n);
  });
  const router = await startRouter({ netns: `${p}r`, socket: `/run/xtr/${p}sig.sock`, config: defaultConfigDocument({ prefix: p }) });
  t.teardown(() => router.stop().then(() => undefined));
  t.regex(await run(['ip', '-n', `${p}c`, 'link', 'show', 'c0']), /c0/);
  router.proc.proc.kill('SIGHUP');
  t.true(await waitFor(() => router.log().includes('SIGHUP: reloading'), 5000), router.log());
  await sleep(200);
  t.is((await router.xtr(['ping'])).stdout, 'pong\n');
  t.is(await router.stop(), 0);
  t.false(existsSync(`/run/xtr/${p}sig.sock`));
  // The peers' netdevs went with the file descriptors; the namespaces (ours) stay.
  for (const [ns, dev] of [['c', 'c0'], ['s', 's0'], ['m', 'm0']]) {
    const r = await exec(['ip', '-n', `${p}${ns}`, 'link', 'show', dev]);
    t.not(r.code, 0, `${dev} still exists`);
  }
  t.true(nsExists(`${p}c`));
});

test('scripts/lab up, up again, status, down, down again', async (t) => {
  const p = uniquePrefix();
  const stateDir = join(dir, `${p}state`);
  const env = { XTR_LAB_NO_SETUP: '1', XTR_SOCKET: `/run/xtr/${p}lab.sock`, XTR_LAB_STATE_DIR: stateDir };
  const lab = (action: string, ...extra: string[]) =>
    exec(['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'bash', join(REPO_ROOT, 'scripts', 'lab'), action, '--prefix', p, ...extra], {
      timeoutMs: 60_000,
    });
  t.teardown(async () => {
    await lab('down');
  });
  const up = await lab('up', '--mode', 'tap');
  t.is(up.code, 0, up.stderr + up.stdout);
  t.regex(up.stdout, /lab: up/);
  t.regex(up.stdout, new RegExp(`log: +/var/log/xtr/${p}lab\\.log`));
  t.regex(up.stdout, /^eth0\s+tap\s+c0@/m);
  t.regex(up.stdout, new RegExp(`state ${stateDir.replaceAll('/', '\\/')}`));
  // Issue 12: what xtr and the script create is root-only (the log holds addresses and ports).
  const mode = (path: string) => (statSync(path).mode & 0o777).toString(8);
  t.is(mode(`/var/log/xtr/${p}lab.log`), '600');
  t.is(mode('/var/log/xtr'), '700');
  t.is(mode('/run/xtr'), '700');
  t.is(mode(env.XTR_SOCKET), '600');
  const cli = (...args: string[]) => exec(['node', join(REPO_ROOT, 'bin', 'xtr.js'), '--socket', env.XTR_SOCKET, ...args], { timeoutMs: 30_000 });
  t.is((await cli('iptables', '-A', 'FORWARD', '-p', 'udp', '--dport', '9', '-j', 'DROP')).code, 0);
  t.is(mode(stateDir), '700');
  t.is(mode(join(stateDir, 'netfilter.json')), '600');
  for (const s of ['c', 'r', 's', 'm']) t.true(nsExists(`${p}${s}`));
  const again = await lab('up');
  t.is(again.code, 0);
  t.regex(again.stdout, /already up/);
  const st = await lab('status');
  t.is(st.code, 0, st.stdout + st.stderr);
  t.regex(st.stdout, /xtr: running, pid \d+/);
  t.regex(await run(['ping', '-c', '1', '-W', '2', '203.0.113.2'], { netns: `${p}c` }), /1 received/);
  const down = await lab('down');
  t.is(down.code, 0, down.stderr);
  for (const s of ['c', 'r', 's', 'm']) t.false(nsExists(`${p}${s}`));
  t.false(existsSync(env.XTR_SOCKET));
  t.is((await lab('down')).code, 0);
  const st2 = await lab('status');
  t.is(st2.code, 3);
  t.regex(st2.stdout, /xtr: not running/);
});
