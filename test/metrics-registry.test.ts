/**
 * The metrics registry without a socket (router/metrics.ts createRegistry):
 * values come from the sources at scrape time, counters keep their value
 * across scrapes, and every metric the Grafana dashboard in docs/grafana
 * queries is one the registry exports.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { createRegistry, spellNaN, type ConntrackCounters } from '../router/metrics.js';
import { HealthMonitor } from '../router/health.js';
import type { StatusSnapshot } from '../router/control.js';
import { defaultConfig } from '../router/default-config.js';

const snap = (rx: number): StatusSnapshot => ({
  version: '0',
  pid: 1,
  uptimeSeconds: 5,
  interfaces: [{ name: 'eth0', kind: 'tun', device: 'c0', mtu: 1500, addresses: [], stats: { rxPackets: rx, rxBytes: rx * 100, txPackets: 1, txBytes: 2, txDropped: 0 }, drops: { 'no-route': 3 } }],
  drops: { 'no-route': 3 },
  state: [{ key: 'recent:DEFAULT', refs: 1, entries: 7, max: 200, eviction: 'lru', proc: null }],
  router: { running: true, readBatches: { '1': 5, '64-127': 2 } },
});

test('values come from the sources at each scrape; the dashboard queries only exported metrics', async (t) => {
  let rx = 10;
  const ct: ConntrackCounters = { count: () => 4, max: 65536, earlyDrops: 2, insertFailed: 1, tableFullDrops: 0 };
  const health = new HealthMonitor({ config: defaultConfig('xx3-r-'), gateway: false, running: () => true, rulesLoaded: () => true }, 1000);
  const reg = await createRegistry({ status: () => snap(rx), conntrack: () => ct, health });
  const first = await reg.metrics();
  t.regex(first, /^xtr_interface_receive_packets_total\{interface="eth0"\} 10$/m);
  t.regex(first, /^xtr_interface_receive_bytes_total\{interface="eth0"\} 1000$/m);
  t.regex(first, /^xtr_interface_drops_total\{interface="eth0",reason="no-route"\} 3$/m);
  t.regex(first, /^xtr_conntrack_entries 4$/m);
  t.regex(first, /^xtr_conntrack_early_drops_total 2$/m);
  t.regex(first, /^xtr_extension_state_entries\{key="recent:DEFAULT"\} 7$/m);
  t.regex(first, /^# TYPE xtr_interface_receive_packets_total counter$/m);
  t.regex(first, /^xtr_read_batches_total\{size="64-127"\} 2$/m);
  rx = 25;
  t.regex(await reg.metrics(), /^xtr_interface_receive_packets_total\{interface="eth0"\} 25$/m, 'a second scrape reads the source again, not 10 + 25');

  const names = new Set(first.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]!));
  const dash = JSON.parse(readFileSync(new URL('../docs/grafana/xtr-dashboard.json', import.meta.url), 'utf8')) as { panels: { targets: { expr: string }[] }[] };
  const used = new Set<string>();
  for (const p of dash.panels) for (const tg of p.targets) for (const m of tg.expr.matchAll(/\b(xtr_[a-z_]+|process_[a-z_]+|nodejs_[a-z0-9_]+)/g)) used.add(m[1]!);
  t.true(used.size >= 15);
  for (const u of used) {
    const family = names.has(u) ? u : u.replace(/_(sum|count|bucket)$/, '');
    t.true(names.has(family), `dashboard metric ${u} is exported`);
  }
});

test('metrics.ruleCounters: every rule and chain policy of a real rule set, with its comment; off by default', async (t) => {
  const { testEngine } = await import('../router/netfilter/testkit.js');
  const { ruleCounterRows, ruleComment } = await import('../router/metrics.js');
  const { validateMetricsConfig } = await import('../router/metrics-config.js');
  const e = await testEngine();
  const rules = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [7:700]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -p tcp -m tcp --dport 22 -m comment --comment "ssh \\"in\\"" -c 3 180 -j ACCEPT\n-A FORWARD -c 2 100 -j ACCEPT\nCOMMIT\n';
  const r = await e.run('iptables-restore -c', rules);
  t.is(r.status, 0, r.stderr);
  const rows = ruleCounterRows(e.nf);
  const fwd = rows.filter((x) => x.family === 4 && x.table === 'filter' && x.chain === 'FORWARD');
  t.deepEqual(fwd.map((x) => [x.rule, x.comment, x.pkts, x.bytes]), [
    ['policy', '', 7, 700],
    ['1', 'ssh "in"', 3, 180],
    ['2', '', 2, 100],
  ]);
  const health = new HealthMonitor({ config: defaultConfig('xx3-r-'), gateway: false, running: () => true, rulesLoaded: () => true }, 1000);
  const reg = await createRegistry({ status: () => snap(1), conntrack: () => null, health, rules: () => ruleCounterRows(e.nf) });
  const text = await reg.metrics();
  t.regex(text, /^xtr_rule_packets_total\{family="ipv4",table="filter",chain="FORWARD",rule="1",comment="ssh \\"in\\""\} 3$/m);
  t.regex(text, /^xtr_rule_bytes_total\{family="ipv4",table="filter",chain="FORWARD",rule="policy",comment=""\} 700$/m);
  const off = await (await createRegistry({ status: () => snap(1), conntrack: () => null, health })).metrics();
  t.notRegex(off, /xtr_rule_packets_total/);
  t.is(ruleComment(' -m comment --comment plain -j ACCEPT'), 'plain');
  t.is(validateMetricsConfig({ listen: '127.0.0.1:9108' }, [])?.ruleCounters, false);
  t.is(validateMetricsConfig({ listen: '127.0.0.1:9108', ruleCounters: true }, [])?.ruleCounters, true);
  t.throws(() => validateMetricsConfig({ listen: '127.0.0.1:9108', ruleCounters: 'yes' }, []), { message: 'metrics.ruleCounters: must be true or false' });
});

test('not-a-number is written NaN, as the exposition format spells it (prom-client writes "Nan")', async (t) => {
  t.is(spellNaN('a 1\nnodejs_eventloop_lag_mean_seconds Nan\nb{x="Nan"} Nan\n'), 'a 1\nnodejs_eventloop_lag_mean_seconds NaN\nb{x="Nan"} NaN\n');
  const ct: ConntrackCounters = { count: () => 0, max: 1, earlyDrops: 0, insertFailed: 0, tableFullDrops: 0 };
  const health = new HealthMonitor({ config: defaultConfig('xx3-n-'), gateway: false, running: () => true, rulesLoaded: () => true }, 1000);
  const reg = await createRegistry({ status: () => snap(1), conntrack: () => ct, health });
  // Back-to-back scrapes: the event-loop lag histogram has no sample between them (NaN).
  for (let i = 0; i < 3; i++) t.notRegex(await reg.metrics(), / Nan$/m);
});
