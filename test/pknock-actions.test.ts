/**
 * knockdaemon-style actions (modules/lib/actions.ts) with real processes:
 * argv templates substituted word by word without a shell, a delayed action
 * only when its time has come (the owner's tick), a failing and a hanging
 * command logged (the hang killed at its timeout) while the caller - the
 * packet path - never waits. Then pknock firing them from knocks.
 */
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ActionRunner, parseActions, substitute, type PendingAction } from '../modules/lib/actions.js';
import { RecordingServices } from '../router/netfilter/testkit.js';
import { XtHarness } from './helpers/xt-harness.js';
import { ip4, tcpSeg } from './modules-fixtures.js';
import pknock from '../modules/pknock.js';
import { waitFor } from './helpers/netns.js';

const dir = mkdtempSync(join(tmpdir(), 'xw4-actions-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test('substitution: whole upper-case words only, each argv element on its own, no shell', (t) => {
  const fields = { IP: '10.0.0.2', PORT: '22', NAME: 'SSH' };
  t.deepEqual(substitute(['/sbin/iptables', '-s', 'IP/32', '--dport', 'PORT', 'IPX', 'iptables', '$(reboot) IP;NAME'], fields), [
    '/sbin/iptables',
    '-s',
    '10.0.0.2/32',
    '--dport',
    '22',
    'IPX',
    'iptables',
    '$(reboot) 10.0.0.2;SSH',
  ]);
});

test('settings refused with the field that is wrong', (t) => {
  const bad: [unknown, RegExp][] = [
    [{}, /actions: must be an array/],
    [[{ argv: ['x'] }], /actions\[0\]\.on/],
    [[{ on: 'open', argv: [] }], /actions\[0\]\.argv/],
    [[{ on: 'open', argv: ['/bin/true'], delay: -1 }], /actions\[0\]\.delay/],
    [[{ on: 'open', argv: ['/bin/true'], timeout: 0 }], /actions\[0\]\.timeout/],
    [[{ on: 'open', name: 3, argv: ['/bin/true'] }], /actions\[0\]\.name/],
  ];
  for (const [raw, re] of bad) t.throws(() => parseActions('pknock', raw), { message: re });
});

test('immediate, delayed, failing and hanging actions: run, wait for their tick, logged; onEvent never waits', async (t) => {
  const s = new RecordingServices();
  s.wallClock = Date.now();
  const pending: PendingAction[] = [];
  const r = new ActionRunner('pknock', s, pending);
  const actions = parseActions('pknock', [
    { on: 'open', argv: ['/usr/bin/touch', `${dir}/now-IP-PORT`] },
    { on: 'open', name: 'SSH', argv: ['/usr/bin/touch', `${dir}/later-IP`], delay: 30 },
    { on: 'open', name: 'OTHER', argv: ['/usr/bin/touch', `${dir}/never`] },
    { on: 'open', argv: ['/bin/false'] },
    { on: 'open', argv: ['/bin/sleep', '30'], timeout: 0.5 },
    { on: 'close', argv: ['/usr/bin/touch', `${dir}/close`] },
  ]);
  const before = Date.now();
  r.onEvent(actions, 'open', { name: 'SSH', ip: '10.0.0.2', port: 4004 });
  t.true(Date.now() - before < 1000 && r.running === 0, 'nothing started inside onEvent');
  t.is(pending.length, 1);
  t.true(await waitFor(() => existsSync(join(dir, 'now-10.0.0.2-4004')), 5000));
  t.true(await waitFor(() => s.logged.some((l) => /\["\/bin\/sleep","30"\] for pknock\.open: timeout/.test(l.line)), 5000), 'the hang was killed and logged');
  t.true(s.logged.some((l) => /\["\/bin\/false"\] for pknock\.open: exit 1/.test(l.line)));
  t.false(existsSync(join(dir, 'never')), 'name condition');
  t.false(existsSync(join(dir, 'close')), 'event condition');
  // The delayed one: not before its time, then on the tick after it.
  r.due(s.wallClock + 29_000);
  await new Promise((res) => setTimeout(res, 300));
  t.false(existsSync(join(dir, 'later-10.0.0.2')));
  r.due(s.wallClock + 30_000);
  t.true(await waitFor(() => existsSync(join(dir, 'later-10.0.0.2')), 5000));
  t.is(pending.length, 0);
  const results = s.events.filter((e) => e.kind === 'pknock.action').map((e) => e.fields.result).sort();
  t.deepEqual(results, ['exit 1', 'ok', 'ok', 'timeout']);
});

test('pknock runs the configured action on an open, with the knock\'s fields; delayed ones are saved with the state', async (t) => {
  const settings = {
    pknock: {
      actions: [
        { on: 'open', name: 'SSH', argv: ['/usr/bin/touch', `${dir}/knock-IP-PORT-NAME-PROTO`] },
        { on: 'open', argv: ['/usr/bin/touch', `${dir}/delayed-IP`], delay: 60 },
      ],
    },
  };
  const h = new XtHarness({ settings });
  h.services.wallClock = Date.now();
  const knock = h.match(pknock, '--knockports 4002,4001 --time 10 --name SSH', { table: 'filter', chain: 'INPUT', proto: 'tcp' });
  h.activateAll();
  for (const port of [4002, 4001]) knock.match(h.packet(ip4('10.1.2.3', '192.0.2.1', tcpSeg(1, port, 2))));
  t.true(await waitFor(() => existsSync(join(dir, 'knock-10.1.2.3-4001-SSH-tcp')), 5000));
  const saved = JSON.parse(JSON.stringify(h.state.exportAll()));
  const pendingSaved = JSON.stringify(saved).includes(`${dir}/delayed-10.1.2.3`);
  t.true(pendingSaved, 'the delayed action is in the saved state');
  // Another process later: the tick runs it once its time has come.
  const h2 = new XtHarness({ settings });
  h2.services.wallClock = h.services.wallClock + 61_000;
  h2.state.expectSaved(saved);
  h2.match(pknock, '--knockports 4002,4001 --time 10 --name SSH', { table: 'filter', chain: 'INPUT', proto: 'tcp' });
  h2.state.expectSaved(null);
  h2.advance(1000);
  t.true(await waitFor(() => existsSync(join(dir, 'delayed-10.1.2.3')), 5000));
  t.is(readFileSync(join(dir, 'delayed-10.1.2.3'), 'utf8'), '');
});
