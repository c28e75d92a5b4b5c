/**
 * The Prometheus endpoint and /healthz in the lab (issue 13, items 1-2):
 * xtr's router namespace serves /metrics on the monitor link's router address
 * (metrics.allowGuarded, since that address is one xtr guards); a real
 * Prometheus (Debian's 2.42) runs in the monitor namespace and scrapes it; the
 * counters must move with what the client sent. The exposition is checked
 * with `promtool check metrics` and with a strict line grammar. /healthz (and
 * `xtr health`) must fail when the event loop stalls (the router SIGSTOPped)
 * and when a device goes down.
 */
import test from 'ava';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startLab, sleep, waitFor, type Lab } from './helpers/netns.js';

const LISTEN = '192.0.2.1:9108';
const URL_METRICS = `http://${LISTEN}/metrics`;
const URL_HEALTH = `http://${LISTEN}/healthz`;
const SERVER4 = '203.0.113.2';

type Samples = Map<string, number>;

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"`;
const SAMPLE_RE = new RegExp(`^(${NAME})(\\{(?:${LABEL})(?:,${LABEL})*\\})? (-?(?:[0-9.]+(?:e[+-]?[0-9]+)?|\\+Inf|-Inf|NaN))(?: -?[0-9]+)?$`);

/** Parses the text exposition strictly: every line is HELP, TYPE or a sample of a declared family. */
function parseExposition(text: string): Samples {
  const out: Samples = new Map();
  const types = new Map<string, string>();
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  for (const line of text.slice(0, -1).split('\n')) {
    let m: RegExpExecArray | null;
    if (line === '') continue; // the format ignores empty lines (prom-client separates families with one)
    if ((m = new RegExp(`^# HELP (${NAME}) .*$`).exec(line))) continue;
    if ((m = new RegExp(`^# TYPE (${NAME}) (counter|gauge|histogram|summary|untyped)$`).exec(line))) {
      if (types.has(m[1]!)) throw new Error(`TYPE twice for ${m[1]}`);
      types.set(m[1]!, m[2]!);
      continue;
    }
    m = SAMPLE_RE.exec(line);
    if (!m) throw new Error(`not a valid exposition line: ${JSON.stringify(line)}`);
    const name = m[1]!;
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count|total|created)$/, '');
    if (!types.has(family) && !types.has(name)) throw new Error(`sample ${name} has no TYPE`);
    const key = name + (m[2] ?? '');
    if (out.has(key)) throw new Error(`duplicate sample ${key}`);
    out.set(key, Number(m[3]));
  }
  return out;
}

async function scrape(lab: Lab): Promise<{ text: string; samples: Samples }> {
  const r = await lab.exec('m', ['curl', '-sf', '--max-time', '10', URL_METRICS]);
  if (r.code !== 0) throw new Error(`scrape failed: curl exit ${r.code} ${r.stderr}`);
  const text = r.stdout;
  return { text, samples: parseExposition(text) };
}

async function healthz(lab: Lab): Promise<{ code: number; body: { healthy: boolean; checks: { name: string; ok: boolean; detail: string }[] } }> {
  const r = await lab.exec('m', ['curl', '-s', '--max-time', '10', '-o', '-', '-w', '\n%{http_code}', URL_HEALTH]);
  const nl = r.stdout.lastIndexOf('\n');
  return { code: Number(r.stdout.slice(nl + 1)), body: JSON.parse(r.stdout.slice(0, nl)) };
}

const get = (s: Samples, key: string): number => {
  const v = s.get(key);
  if (v === undefined) throw new Error(`no sample ${key}`);
  return v;
};

test('metrics and /healthz in the lab, scraped by a real Prometheus', async (t) => {
  const lab = await startLab({
    prefix: `xx3-${randomBytes(1).toString('hex')}-`,
    patch: (doc) => {
      doc.metrics = { listen: LISTEN, allowGuarded: true, maxEventLoopLagMs: 500 };
    },
  });
  const work = mkdtempSync(join(tmpdir(), 'xx3-prom-'));
  try {
    // xtr status --json names the URL.
    const st = JSON.parse((await lab.xtr(['status', '--json'])).stdout) as { metrics?: { url: string; healthz: string } };
    t.deepEqual(st.metrics, { url: URL_METRICS, healthz: URL_HEALTH });

    const before = await scrape(lab);
    // promtool's linter on the exposition, when Debian's prometheus is installed.
    if (existsSync('/usr/bin/promtool')) {
      const p = await lab.exec('m', ['promtool', 'check', 'metrics'], { input: before.text });
      t.is(p.code, 0, `promtool check metrics: ${p.stdout}${p.stderr}`);
    } else t.fail('promtool not installed (bash scripts/ensure-setup installs Debian prometheus)');
    for (const k of ['process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'xtr_conntrack_max', 'xtr_event_loop_max_lag_seconds']) t.true(before.samples.has(k), k);

    // A real Prometheus in the monitor namespace, scraping every second.
    const promDir = join(work, 'prom');
    writeFileSync(join(work, 'prometheus.yml'), `global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: xtr\n    static_configs:\n      - targets: ['${LISTEN}']\n`);
    lab.background('m', ['prometheus', `--config.file=${join(work, 'prometheus.yml')}`, `--storage.tsdb.path=${promDir}`, '--web.listen-address=127.0.0.1:9090', '--log.level=warn']);
    const promQuery = async (q: string): Promise<number | null> => {
      const r = await lab.exec('m', ['curl', '-sf', '--max-time', '5', '--data-urlencode', `query=${q}`, 'http://127.0.0.1:9090/api/v1/query']);
      if (r.code !== 0) return null;
      const v = JSON.parse(r.stdout) as { data: { result: { value: [number, string] }[] } };
      return v.data.result.length ? Number(v.data.result[0]!.value[1]) : null;
    };
    const RX = 'xtr_interface_receive_packets_total{interface="eth0"}';
    t.true(await waitFor(async () => (await promQuery(RX)) !== null, 30_000, 500), 'Prometheus scraped xtr');
    t.is(await promQuery('up{job="xtr"}'), 1);
    const promBefore = (await promQuery(RX))!;

    // Traffic: 20 echo requests of 128 bytes (IPv4) to the server, and 5 to an unroutable address.
    const a = await scrape(lab);
    const statusA = JSON.parse((await lab.xtr(['status', '--json'])).stdout) as { drops: Record<string, number> };
    await lab.run('c', ['ping', '-n', '-q', '-c', '20', '-i', '0.02', '-s', '100', SERVER4]);
    await lab.exec('c', ['ping', '-n', '-q', '-c', '5', '-i', '0.02', '-W', '1', '10.99.99.99']);
    const b = await scrape(lab);
    const statusB = JSON.parse((await lab.xtr(['status', '--json'])).stdout) as { drops: Record<string, number> };
    const d = (k: string) => get(b.samples, k) - (a.samples.get(k) ?? 0);
    const rx = d(RX);
    t.true(rx >= 25 && rx <= 30, `eth0 received ${rx} packets for 25 sent (plus at most a few IPv6 ND/RS)`);
    // 20 x (20 + 8 + 100) and 5 x (20 + 8 + 56) bytes of IPv4.
    const rxBytes = d('xtr_interface_receive_bytes_total{interface="eth0"}');
    t.true(rxBytes >= 20 * 128 + 5 * 84 && rxBytes <= 20 * 128 + 5 * 84 + 5 * 200, `eth0 received ${rxBytes} bytes`);
    const tx = d('xtr_interface_transmit_packets_total{interface="eth1"}');
    t.true(tx >= 20 && tx <= 25, `eth1 sent ${tx} packets for 20 forwarded`);
    // Drops by reason: the reasons whose status counter moved by the 5 unroutable pings move in the metrics by the same amount.
    const moved = Object.keys(statusB.drops).filter((r) => statusB.drops[r]! - (statusA.drops[r] ?? 0) >= 5);
    t.true(moved.length > 0, `a drop reason counted the unroutable pings: ${JSON.stringify(statusB.drops)}`);
    for (const r of moved) {
      t.is(get(b.samples, `xtr_drops_total{reason="${r}"}`), statusB.drops[r]!, `xtr_drops_total{reason="${r}"}`);
      t.true(d(`xtr_interface_drops_total{interface="eth0",reason="${r}"}`) >= 5, `eth0 drops ${r}`);
    }
    const ctCount = Number((await lab.xtr(['conntrack', '-C'])).stdout.trim());
    const ctMetric = get((await scrape(lab)).samples, 'xtr_conntrack_entries');
    t.true(Math.abs(ctMetric - ctCount) <= 2, `conntrack entries ${ctMetric} vs conntrack -C ${ctCount}`);

    // Prometheus sees the same movement.
    t.true(await waitFor(async () => ((await promQuery(RX)) ?? 0) - promBefore >= 25, 20_000, 500), 'Prometheus saw the 25 packets');
    const promNow = (await promQuery(RX))!;
    t.true(promNow - promBefore <= 40, `Prometheus delta ${promNow - promBefore}`);

    // Health: healthy, then a stalled event loop (SIGSTOP 1.5 s), then a device down.
    const h0 = await healthz(lab);
    t.is(h0.code, 200, JSON.stringify(h0.body));
    t.true(h0.body.healthy);
    t.is((await lab.router.cli(['health'])).code, 0);
    const pid = lab.router.proc.proc.pid!;
    process.kill(pid, 'SIGSTOP');
    await sleep(1500);
    process.kill(pid, 'SIGCONT');
    await sleep(300);
    const h1 = await healthz(lab);
    t.is(h1.code, 503, JSON.stringify(h1.body));
    t.false(h1.body.checks.find((c) => c.name === 'event-loop')!.ok, 'event-loop check fails after a stall');
    t.true(get((await scrape(lab)).samples, 'xtr_event_loop_max_lag_seconds') >= 1);
    const cliBad = await lab.router.cli(['health']);
    t.is(cliBad.code, 1, cliBad.stdout);
    t.regex(cliBad.stdout, /^UNHEALTHY\n/);

    await lab.run('c', ['ip', 'link', 'set', 'c0', 'down']);
    const h2 = await healthz(lab);
    t.is(h2.code, 503);
    const dev = h2.body.checks.find((c) => c.name === 'device:eth0')!;
    t.false(dev.ok);
    t.regex(dev.detail, /c0 in netns .* is down/);
    t.true(h2.body.checks.find((c) => c.name === 'device:eth1')!.ok);
  } finally {
    await lab.stop();
    rmSync(work, { recursive: true, force: true });
  }
});

test('metrics config: off by default, refused on a guarded address or a wildcard unless allowed', async (t) => {
  const { validateConfig } = await import('../router/config.js');
  const { defaultConfigDocument } = await import('../router/default-config.js');
  // The lab's embedded document enables metrics on loopback; without the key they are off.
  const { metrics: labMetrics, ...base } = defaultConfigDocument({ prefix: 'xx3-q-' });
  t.deepEqual(labMetrics, { listen: '127.0.0.1:9108' });
  const doc = (metrics: unknown) => ({ ...base, ...(metrics === undefined ? {} : { metrics }) });
  t.is(validateConfig(doc(undefined)).metrics, null);
  t.deepEqual(validateConfig(doc({ listen: '127.0.0.1:9108' })).metrics, { host: '127.0.0.1', port: 9108, maxEventLoopLagMs: 1000, allowGuarded: false, ruleCounters: false });
  t.is(validateConfig(doc({ listen: '[::1]:9108' })).metrics?.host, '::1');
  t.throws(() => validateConfig(doc({ listen: '192.0.2.1:9108' })), { message: /metrics\.listen: 192\.0\.2\.1 is an address of an interface xtr guards/ });
  t.throws(() => validateConfig(doc({ listen: '0.0.0.0:9108' })), { message: /metrics\.listen: 0\.0\.0\.0 would expose/ });
  t.throws(() => validateConfig(doc({ listen: '[2001:db8:c::1]:9108' })), { message: /guards/ });
  t.is(validateConfig(doc({ listen: '192.0.2.1:9108', allowGuarded: true })).metrics?.port, 9108);
  t.throws(() => validateConfig(doc({ listen: 'localhost:9108' })), { message: /metrics\.listen: "localhost:9108" is not ADDRESS:PORT/ });
  t.throws(() => validateConfig(doc({ listen: '127.0.0.1:70000' })), { message: /metrics\.listen/ });
  t.throws(() => validateConfig(doc({ listen: '127.0.0.1:9108', port: 1 })), { message: /metrics\.port: unknown key/ });
});
