/**
 * psd and lscan under attack-sized load, through the xtr lab (TUN):
 *
 * A SYN scan (bench/detect-scan.py: raw SYNs with valid checksums from
 * --sources random 10/8 addresses, each to random destination ports,
 * round-robin at --scan-pps for the round's duration) runs from the client
 * namespace towards the server while a legitimate UDP flow (bench/native/
 * udpgen, 64-byte payloads, 198.51.100.2 -> 203.0.113.2:9000) is measured.
 * Each round measures both, alternating, under the same scan:
 *   - without rules (FORWARD ACCEPT, nothing tracked);
 *   - with the detection rules
 *       -A FORWARD -i eth0 -p tcp -m lscan --stealth --synscan --cnscan --grscan -j DROP
 *       -A FORWARD -i eth0 -m psd -j DROP
 *     (lscan turns conntrack on, so every scan SYN is also tracked).
 * `ratio_psd_under_scan` = legitimate rate with the rules / without, the
 * median of the per-round ratios (goal >= 0.8). After each rules round the
 * psd table (net/xt_psd/ipv4) gives the detection rate: scanning sources
 * whose weight reached the threshold / scanning sources; the router's RSS
 * (VmRSS, VmHWM) and the psd entries against the table bound (256 by
 * default, settings.psd.hosts) are printed. The legitimate source must never
 * be flagged (checked: it would also show as lost traffic).
 *
 *   npm run bench:detect [-- --rounds N --duration S --sources N --scan-pps N --rules both|psd|lscan --hosts N]
 *
 * More scanning sources than the psd table holds (--sources 2000 with the
 * default 256) evict each other before any reaches the threshold: the
 * detection rate shows it; --hosts 4096 (settings.psd.hosts) sizes the table.
 *
 * The last line is one `key=value` line for scripts.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { exec, REPO_ROOT, startLab, uniquePrefix, type Lab } from '../test/helpers/netns.js';
import { cpuCount, fmt, loadAverage, measure, median, type Measure } from './lib.js';

const SERVER = '203.0.113.2';
const LEGIT = '198.51.100.2';
const PAYLOAD = 64;

interface Args {
  rounds: number;
  duration: number;
  sources: number;
  scanPps: number;
  /** Which detection rules the "with" side loads (both by default; psd or lscan alone to see each one's share). */
  rules: 'both' | 'psd' | 'lscan';
  /** settings.psd.hosts (the source table's size); null = upstream's 256. */
  hosts: number | null;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { rounds: 3, duration: 3, sources: 200, scanPps: 20000, rules: 'both', hosts: null };
  for (let i = 0; i < argv.length; i++) {
    const v = Number(argv[i + 1]);
    if (argv[i] === '--rounds') a.rounds = v;
    else if (argv[i] === '--duration') a.duration = v;
    else if (argv[i] === '--sources') a.sources = v;
    else if (argv[i] === '--scan-pps') a.scanPps = v;
    else if (argv[i] === '--hosts') a.hosts = v;
    else if (argv[i] === '--rules' && ['both', 'psd', 'lscan'].includes(argv[i + 1])) a.rules = argv[i + 1] as Args['rules'];
    else throw new Error(`bench:detect: unknown argument ${argv[i]} (--rounds N, --duration S, --sources N, --scan-pps N, --rules both|psd|lscan, --hosts N)`);
    i++;
  }
  if (!(Number.isInteger(a.rounds) && a.rounds >= 1 && a.rounds <= 20)) throw new Error('--rounds must be an integer from 1 to 20');
  if (!(a.duration > 0 && a.duration <= 60)) throw new Error('--duration must be between 0 and 60 seconds');
  if (!(Number.isInteger(a.sources) && a.sources >= 1 && a.sources <= 100_000)) throw new Error('--sources must be an integer from 1 to 100000');
  if (a.hosts !== null && !(Number.isInteger(a.hosts) && a.hosts >= 1 && a.hosts <= 1 << 20)) throw new Error('--hosts must be an integer from 1 to 1048576');
  if (!(a.scanPps > 0 && a.scanPps <= 1_000_000)) throw new Error('--scan-pps must be between 0 and 1000000');
  return a;
}

const LSCAN_RULE = '-A FORWARD -i eth0 -p tcp -m lscan --stealth --synscan --cnscan --grscan -j DROP\n';
const PSD_RULE = '-A FORWARD -i eth0 -m psd -j DROP\n';
function rulesOf(which: Args['rules']): string {
  const body = (which === 'psd' ? '' : LSCAN_RULE) + (which === 'lscan' ? '' : PSD_RULE);
  return `*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n${body}COMMIT\n`;
}
const NO_RULES = '*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n';

async function xtrOk(lab: Lab, args: string[], input: string | null = null): Promise<string> {
  const r = await lab.xtr(args, input);
  if (r.status !== 0) throw new Error(`xtr ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The router's pid: the node process in the router namespace serving this lab's socket. */
async function routerPid(lab: Lab): Promise<number> {
  const out = (await exec(['ip', 'netns', 'pids', lab.ns.r])).stdout.trim().split('\n');
  for (const p of out) {
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('main.js')) return Number(p);
    } catch {
      // gone
    }
  }
  throw new Error('bench:detect: router process not found');
}

function memory(pid: number): { rssMb: number; hwmMb: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? 0);
  return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
}

interface ScanRun {
  sent: number;
  sources: string[];
}

/** One round: the scan in the background, the legitimate flow measured meanwhile. */
async function round(lab: Lab, a: Args, seed: number): Promise<{ legit: Measure; scan: ScanRun }> {
  const scanSeconds = a.duration + 2;
  const scan = exec(['python3', join(REPO_ROOT, 'bench', 'detect-scan.py'), SERVER, String(a.sources), String(a.scanPps), String(scanSeconds), String(seed)], {
    netns: lab.ns.c,
    timeoutMs: (scanSeconds + 60) * 1000,
  });
  await new Promise((r) => setTimeout(r, 1500)); // the scan builds its packets and starts
  const legit = await measure(lab.ns.c, lab.ns.s, SERVER, PAYLOAD, a.duration);
  const r = await scan;
  if (r.code !== 0) throw new Error(`detect-scan.py: ${r.stderr}`);
  const sent = Number(/sent=(\d+)/.exec(r.stdout)?.[1] ?? NaN);
  const sources = r.stdout.split('sources:\n')[1]?.trim().split('\n') ?? [];
  return { legit, scan: { sent, sources } };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  console.log(`bench:detect  rules=${a.rules} psd_hosts=${a.hosts ?? 'default'} rounds=${a.rounds} duration=${a.duration}s sources=${a.sources} scan_pps=${a.scanPps}  cpus=${await cpuCount()} load=${await loadAverage()}`);
  const hosts = a.hosts;
  const lab = await startLab({
    prefix: uniquePrefix('xw3a'),
    mode: 'tun',
    patch: (doc) => {
      if (hosts !== null) doc.extensions = { ...(doc.extensions as object), psd: { hosts } };
    },
  });
  try {
    const pid = await routerPid(lab);
    const base = memory(pid);
    console.log(`router pid ${pid}: RSS at start ${base.rssMb.toFixed(1)} MB`);
    const without: Measure[] = [];
    const withRules: Measure[] = [];
    const ratios: number[] = [];
    const detection: number[] = [];
    const scanRates: number[] = [];
    let rssMax = base.rssMb;
    let entriesMax = 0;
    let tableMax = 0;
    for (let i = 0; i < a.rounds; i++) {
      await xtrOk(lab, ['iptables-restore'], NO_RULES);
      const off = await round(lab, a, 1000 + i);
      without.push(off.legit);
      await xtrOk(lab, ['iptables-restore'], rulesOf(a.rules));
      const on = await round(lab, a, 1000 + i); // the same scan (same seed) as the round without rules
      withRules.push(on.legit);
      scanRates.push(on.scan.sent / (a.duration + 2));
      const proc = a.rules === 'lscan' ? '' : await xtrOk(lab, ['proc', 'cat', 'net/xt_psd/ipv4']);
      const weights = new Map<string, number>();
      for (const line of proc.split('\n')) {
        const m = /^(\S+) weight=(\d+) /.exec(line);
        if (m) weights.set(m[1], Number(m[2]));
      }
      const head = /sources=(\d+)\/(\d+)/.exec(proc);
      entriesMax = Math.max(entriesMax, Number(head?.[1] ?? 0));
      tableMax = Number(head?.[2] ?? 0);
      const flagged = on.scan.sources.filter((s) => (weights.get(s) ?? 0) >= 21).length;
      detection.push(flagged / on.scan.sources.length);
      if ((weights.get(LEGIT) ?? 0) >= 21) throw new Error(`bench:detect: the legitimate source ${LEGIT} was flagged (weight ${weights.get(LEGIT)})`);
      const mem = memory(pid);
      rssMax = Math.max(rssMax, mem.rssMb);
      const ratio = off.legit.pps > 0 ? on.legit.pps / off.legit.pps : 0;
      ratios.push(ratio);
      console.log(
        `round ${i + 1}: legit without rules ${fmt(off.legit.pps)} pps, with psd+lscan ${fmt(on.legit.pps)} pps (ratio ${ratio.toFixed(3)}); ` +
          `scan sent ${fmt(on.scan.sent)} SYNs from ${on.scan.sources.length} sources; flagged ${flagged} (${(100 * detection[i]).toFixed(1)}%); ` +
          `psd entries ${head?.[1]}/${head?.[2]}; RSS ${mem.rssMb.toFixed(1)} MB (peak ${mem.hwmMb.toFixed(1)} MB)`,
      );
    }
    const final = memory(pid);
    console.log(`legit pps: without rules ${fmt(median(without.map((m) => m.pps)))}, with psd+lscan ${fmt(median(withRules.map((m) => m.pps)))} (medians)`);
    console.log(`psd table: at most ${entriesMax} of ${tableMax} entries; RSS start ${base.rssMb.toFixed(1)} MB, max ${rssMax.toFixed(1)} MB, peak (VmHWM) ${final.hwmMb.toFixed(1)} MB`);
    console.log(
      `ratio_psd_under_scan=${median(ratios).toFixed(3)} detection_rate=${median(detection).toFixed(3)} legit_pps_without=${Math.round(median(without.map((m) => m.pps)))} ` +
        `legit_pps_with=${Math.round(median(withRules.map((m) => m.pps)))} scan_pps=${Math.round(median(scanRates))} sources=${a.sources} psd_entries_max=${entriesMax} psd_table_max=${tableMax} ` +
        `rss_start_mb=${base.rssMb.toFixed(1)} rss_max_mb=${rssMax.toFixed(1)} rss_hwm_mb=${final.hwmMb.toFixed(1)} rounds=${a.rounds}`,
    );
  } finally {
    await lab.stop();
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
