/**
 * The seed-001 port-knocking script as users have it, adapted only where the
 * brief allows (which iptables, the undefined $EXT_IF, and INPUT→FORWARD for the
 * "server behind the router" placement), and the scenarios that exercise it
 * with real clients: knockd's `knock` for the sequence, nmap's connect scan for
 * the final connection, ping for the icmp-packets chain. Also what the seed-003
 * recipes share with it: reading seeds, running a script with every $IPTABLES
 * call recorded (exit status, stderr), listeners and probes.
 */
import { readdirSync, readFileSync, existsSync, rmSync } from 'node:fs';
import type { ExecutionContext, TestFn } from 'ava';
import { join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import {
  ADDR,
  REPO_ROOT,
  counterLines,
  counters,
  parseListCounters,
  parseRecent,
  parseSaveCounters,
  ruleLines,
  recentSummary,
  sleep,
  startBackground,
  type Background,
  type RunResult,
  type Topology,
} from './kernel-router.js';

/** ../shared/seeds beside the checkout (where CI puts it). */
export const SEEDS_DIR = resolve(REPO_ROOT, '..', 'shared', 'seeds');

/** The text of `../shared/seeds/<number>_*.txt`; throws a clear error when it is not there. */
export function readSeed(number: string): { path: string; text: string } {
  if (!existsSync(SEEDS_DIR)) {
    throw new Error(`seed directory ${SEEDS_DIR} not found: these tests need ../shared/seeds beside the checkout`);
  }
  const name = readdirSync(SEEDS_DIR).find((f) => f.startsWith(`${number}_`) && f.endsWith('.txt'));
  if (!name) throw new Error(`no ${number}_*.txt in ${SEEDS_DIR}`);
  const path = join(SEEDS_DIR, name);
  return { path, text: readFileSync(path, 'utf8') };
}

/** The complete script of seed 001: from `#!/bin/bash` to its last command, `$IPTABLES -D OUTPUT 1`. */
export function extractKnockScript(seedText: string): string {
  const lines = seedText.split('\n');
  const start = lines.findIndex((l) => l.trim() === '#!/bin/bash');
  const end = lines.findIndex((l) => l.trim() === '$IPTABLES -D OUTPUT 1');
  if (start < 0 || end < start) {
    throw new Error('seed 001 no longer contains the script (from "#!/bin/bash" to "$IPTABLES -D OUTPUT 1")');
  }
  return lines.slice(start, end + 1).join('\n') + '\n';
}

export type Placement = 'INPUT' | 'FORWARD';

export interface ScriptChange {
  line: number;
  from: string;
  to: string;
}

/**
 * Adapts the seed script: `IPTABLES=` set to the router's command, `EXT_IF=eth0`
 * defined after it (the script uses $EXT_IF without defining it; eth0 is the
 * client side in the lab, as the script's OUTPUT `-o eth0` assumes), and for
 * FORWARD the rules of its "Now the real part" section appended to FORWARD
 * instead of INPUT. Everything else is byte-for-byte the seed's.
 */
export function adaptKnockScript(script: string, opts: { iptables: string; placement: Placement }): { script: string; changes: ScriptChange[] } {
  const lines = script.split('\n');
  const changes: ScriptChange[] = [];
  const out: string[] = [];
  let inRealPart = false;
  let sawIptables = false;
  let sawRealPart = false;
  lines.forEach((line, i) => {
    if (line.startsWith('#### Now the real part')) {
      inRealPart = true;
      sawRealPart = true;
    } else if (line.startsWith('#### Now delete')) {
      inRealPart = false;
    }
    if (line === 'IPTABLES=/sbin/iptables') {
      sawIptables = true;
      const to = `IPTABLES="${opts.iptables}"`;
      changes.push({ line: i + 1, from: line, to: `${to}\nEXT_IF=eth0` });
      out.push(to, 'EXT_IF=eth0');
      return;
    }
    if (opts.placement === 'FORWARD' && inRealPart && line.startsWith('$IPTABLES -A INPUT ')) {
      const to = line.replace('$IPTABLES -A INPUT ', '$IPTABLES -A FORWARD ');
      changes.push({ line: i + 1, from: line, to });
      out.push(to);
      return;
    }
    out.push(line);
  });
  if (!sawIptables) throw new Error('seed script has no "IPTABLES=/sbin/iptables" line to adapt');
  if (!sawRealPart) throw new Error('seed script has no "#### Now the real part" section');
  return { script: out.join('\n'), changes };
}

export interface RecordedCommand {
  status: number;
  /** The arguments after the iptables command. */
  args: string;
  stderr: string;
}

/**
 * Runs a script in the router namespace with $IPTABLES set to a recorder in
 * front of the router's iptables command: it passes every invocation on
 * unchanged and logs its exit status and stderr.
 */
export async function runRecordedScript(topo: Topology, body: (iptables: string) => string): Promise<{ result: RunResult; commands: RecordedCommand[] }> {
  const logFile = `/tmp/${topo.prefix}${randomBytes(3).toString('hex')}-commands.log`;
  const recorder = [
    'xk_record() {',
    '  local err rc',
    '  err=$("$@" 2>&1 >/dev/null); rc=$?',
    `  printf '%s\\t%s\\t%s\\n' "$rc" "$*" "$(printf %s "$err" | tr '\\n\\t' '  ')" >> ${logFile}`,
    '  [ -n "$err" ] && printf "%s\\n" "$err" >&2',
    '  return $rc',
    '}',
  ].join('\n');
  const script = body(`xk_record ${topo.iptablesCommand(4)}`);
  const shebang = script.startsWith('#!') ? script.slice(0, script.indexOf('\n') + 1) : '#!/bin/bash\n';
  const rest = script.startsWith('#!') ? script.slice(shebang.length) : script;
  const result = await topo.runScript(`${shebang}${recorder}\n: > ${logFile}\n${rest}`, 180_000);
  let log = '';
  try {
    log = readFileSync(logFile, 'utf8');
  } finally {
    rmSync(logFile, { force: true });
  }
  const command = `${topo.iptablesCommand(4)} `;
  const commands = log
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [status, argv, stderr] = l.split('\t');
      const args = (argv ?? '').startsWith(command) ? (argv ?? '').slice(command.length) : (argv ?? '');
      return { status: Number(status), args, stderr: (stderr ?? '').trim() };
    });
  return { result, commands };
}

/** Runs the adapted seed-001 script, recording every $IPTABLES invocation. */
export async function runKnockScript(topo: Topology, placement: Placement): Promise<{ result: RunResult; commands: RecordedCommand[] }> {
  const seed = extractKnockScript(readSeed('001').text);
  return runRecordedScript(topo, (iptables) => adaptKnockScript(seed, { iptables, placement }).script);
}

// ---------------------------------------------------------------------------
// Clients

export const KNOCK_PORTS = [1223, 569, 715] as const;

/** knockd's client: one TCP SYN per port (connect, then close), `delayMs` apart. */
export async function knock(topo: Topology, target: string, ports: readonly number[], delayMs: number): Promise<RunResult> {
  return topo.exec(topo.ns.client, ['knock', '-d', String(delayMs), target, ...ports.map(String)], { timeoutMs: 20_000 });
}

export type ProbeOutcome = 'open' | 'closed' | 'filtered';

/**
 * One TCP connect attempt with nmap's connect scan: open = handshake completed
 * (then reset: SYN, SYN-ACK, ACK, RST), closed = RST, filtered = no answer.
 * Its 700 ms timeout (room for a loaded machine) is below the client kernel's 1 s SYN retransmission, so a
 * dropped attempt is exactly one SYN.
 */
export async function probeTcp(
  topo: Topology,
  target: string,
  port: number,
  source: string = ADDR.client,
  fromNs: string = topo.ns.client,
): Promise<ProbeOutcome> {
  const bind = fromNs === topo.ns.client ? ['-S', source, '-e', 'c0'] : [];
  const r = await topo.exec(
    fromNs,
    ['nmap', '-n', '-Pn', '-sT', '--max-retries', '0', '--initial-rtt-timeout', '700ms', '--max-rtt-timeout', '700ms', ...bind, '-p', String(port), target],
    { timeoutMs: 20_000 },
  );
  const m = new RegExp(`^${port}/tcp\\s+(open|closed|filtered)`, 'm').exec(r.stdout);
  if (!m) throw new Error(`nmap gave no port state (exit ${r.status}): ${r.stdout}${r.stderr}`);
  return m[1] as ProbeOutcome;
}

/** One echo request; true when the reply came back within 1 s. */
export async function ping(topo: Topology, target: string): Promise<boolean> {
  const r = await topo.exec(topo.ns.client, ['ping', '-n', '-c', '1', '-W', '1', target], { timeoutMs: 5000 });
  return r.status === 0;
}

/** A TCP listener (socat) on ADDR:PORT in a namespace; resolves once it is listening. */
export async function listen(topo: Topology, ns: string, addr: string, port: number): Promise<Background> {
  const bg = startBackground(['ip', 'netns', 'exec', ns, 'socat', `TCP4-LISTEN:${port},bind=${addr},reuseaddr,fork`, 'SYSTEM:sleep 2'], {
    maxLifetimeMs: 600_000,
  });
  for (let i = 0; i < 50; i++) {
    const r = await topo.exec(ns, ['ss', '-Hltn', `src ${addr}:${port}`]);
    if (r.stdout.includes(`:${port}`)) return bg;
    await sleep(100);
  }
  await bg.stop();
  throw new Error(`listener on ${addr}:${port} in ${ns} did not come up: ${bg.output().stderr}`);
}

// ---------------------------------------------------------------------------
// Scenarios

export type Step =
  /** knock from the client's primary address (knock cannot pick a source). */
  | { knock: readonly number[] }
  | { probe: number; from?: 'client' | 'client2' }
  | { ping: true }
  | { sleepMs: number };

export interface KnockCase {
  name: string;
  steps: Step[];
  /** The outcome of each probe/ping step, in order, as the kernel gives it. */
  expected: Outcome[];
  /** Where FORWARD placement differs (the echo reply from the server side has no accepting rule in FORWARD). */
  expectedForward?: Outcome[];
}

export type Outcome = ProbeOutcome | 'reply' | 'no-reply';

export function expectedFor(c: KnockCase, placement: Placement): Outcome[] {
  return placement === 'FORWARD' && c.expectedForward ? c.expectedForward : c.expected;
}

export interface CaseResult {
  outcomes: Outcome[];
  /** filter-table policy and per-rule counters, `table/CHAIN#n [p:b]`. */
  counters: string[];
  /** /proc/net/xt_recent/DEFAULT summarised (addresses, ttl, stamp counts). */
  recent: string[];
  /** `iptables -L -v -x -n` parsed: the counters as a user lists them. */
  listed: string[];
}

/** ms between knocks: keeps a case's SYNs inside the syn-flood limit (1/s, burst 4) so only the knocking logic decides. */
export const KNOCK_DELAY_MS = 400;
/** Quiet time before a case so the syn-flood bucket (burst 4 at 1/s) is full again. */
export const LIMIT_REFILL_MS = 4500;

/**
 * A knock-script router ready for cases: the script loaded once, a listener on
 * port 22 (on the router for INPUT, on the server for FORWARD). Between cases
 * the recent table is flushed through its procfs file, counters are zeroed and
 * the limit bucket refills, so each case starts from the state right after the
 * script ran.
 */
export class KnockBench {
  private lastTraffic = 0;
  private constructor(
    readonly topo: Topology,
    readonly placement: Placement,
    private readonly listener: Background,
    readonly scriptCommands: Array<{ status: number; args: string; stderr: string }>,
    /** The filter table right after the script, without counters. */
    readonly initialRules: string[],
  ) {}

  static async create(topo: Topology, placement: Placement): Promise<KnockBench> {
    const { result, commands } = await runKnockScript(topo, placement);
    if (commands.length === 0) throw new Error(`knock script ran no $IPTABLES command (exit ${result.status}): ${result.stderr}`);
    const notFound = commands.filter((c) => c.status === 127);
    if (notFound.length > 0) throw new Error(`iptables command not found on ${topo.kind}: ${notFound[0]!.stderr}`);
    const initialRules = ruleLines(parseSaveCounters(await topo.save(4)));
    const listener =
      placement === 'INPUT'
        ? await listen(topo, topo.ns.router, ADDR.routerClientSide, 22)
        : await listen(topo, topo.ns.server, ADDR.server, 22);
    return new KnockBench(topo, placement, listener, commands, initialRules);
  }

  get target(): string {
    return this.placement === 'INPUT' ? ADDR.routerClientSide : ADDR.server;
  }

  async reset(): Promise<void> {
    const flush = await this.topo.recentWrite('DEFAULT', '/');
    // The table exists from the script's rules on; a failing flush would carry state between cases.
    if (flush.status !== 0) throw new Error(`${this.topo.kind}: flushing xt_recent/DEFAULT failed: ${flush.stderr}`);
    for (const table of ['filter', 'nat']) {
      const z = await this.topo.iptables(4, ['-t', table, '-Z']);
      if (z.status !== 0) throw new Error(`${this.topo.kind}: iptables -t ${table} -Z failed: ${z.stderr}`);
    }
    const wait = this.lastTraffic + LIMIT_REFILL_MS - Date.now();
    if (wait > 0) await sleep(wait);
  }

  async runCase(c: KnockCase): Promise<CaseResult> {
    await this.reset();
    const outcomes: CaseResult['outcomes'] = [];
    for (const step of c.steps) {
      if ('knock' in step) {
        const r = await knock(this.topo, this.target, step.knock, KNOCK_DELAY_MS);
        if (r.status !== 0) throw new Error(`knock failed (exit ${r.status}): ${r.stderr}`);
        await sleep(KNOCK_DELAY_MS);
      } else if ('probe' in step) {
        const src = step.from === 'client2' ? ADDR.client2 : ADDR.client;
        outcomes.push(await probeTcp(this.topo, this.target, step.probe, src));
      } else if ('ping' in step) {
        outcomes.push((await ping(this.topo, this.target)) ? 'reply' : 'no-reply');
      } else {
        await sleep(step.sleepMs);
      }
    }
    this.lastTraffic = Date.now();
    // Let the last answers (RST after an open probe) cross the router before reading counters.
    await sleep(300);
    const snap = await counters(this.topo, 4);
    const recentText = await this.topo.recentRead('DEFAULT');
    if (recentText.status !== 0) throw new Error(`${this.topo.kind}: reading xt_recent/DEFAULT failed: ${recentText.stderr}`);
    const listing = await this.topo.iptables(4, ['-L', '-v', '-x', '-n']);
    if (listing.status !== 0) throw new Error(`${this.topo.kind}: iptables -L -v -x -n failed: ${listing.stderr}`);
    return {
      outcomes,
      counters: counterLines(snap, { tables: ['filter'] }),
      recent: recentSummary(parseRecent(recentText.stdout)),
      listed: parseListCounters(listing.stdout),
    };
  }

  async destroy(): Promise<void> {
    await this.listener.stop();
  }
}

/** The cases of the brief; the same for INPUT and FORWARD placement. */
export const KNOCK_CASES: KnockCase[] = [
  {
    name: 'right sequence opens port 22, ping answered',
    steps: [{ probe: 22 }, { knock: KNOCK_PORTS }, { probe: 22 }, { ping: true }],
    expected: ['filtered', 'open', 'reply'],
    expectedForward: ['filtered', 'open', 'no-reply'],
  },
  {
    name: 'the opening is used up by the connection (knocking-okey removes the entry)',
    steps: [{ knock: KNOCK_PORTS }, { probe: 22 }, { probe: 22 }],
    expected: ['open', 'filtered'],
  },
  {
    name: 'wrong order does not open',
    steps: [{ knock: [569, 1223, 715] }, { probe: 22 }],
    expected: ['filtered'],
  },
  {
    name: 'an interleaved wrong port does not open',
    steps: [{ knock: [1223, 569, 1000, 715] }, { probe: 22 }],
    expected: ['filtered'],
  },
  {
    // knocking-oops has no target: after its --remove the packet returns to
    // port-knocking, whose next rule --sets the address again.
    name: 'repeating the first port restarts the sequence, so it still opens',
    steps: [{ knock: [1223, 1223, 569, 715] }, { probe: 22 }],
    expected: ['open'],
  },
  {
    name: 'repeating the second port does not open',
    steps: [{ knock: [1223, 569, 569, 715] }, { probe: 22 }],
    expected: ['filtered'],
  },
  {
    name: 'a second client is unaffected by the first one\'s knock',
    steps: [{ knock: KNOCK_PORTS }, { probe: 22, from: 'client2' }, { probe: 22, from: 'client' }],
    expected: ['filtered', 'open'],
  },
];

/** Too slow: the real 20 s of the script's `--seconds 20`, waited once per placement. */
export const SLOW_CASE: KnockCase = {
  name: 'too slow (21 s between the first knock and the connection) does not open',
  steps: [{ knock: [KNOCK_PORTS[0]] }, { sleepMs: 21_000 }, { knock: [KNOCK_PORTS[1], KNOCK_PORTS[2]] }, { probe: 22 }],
  expected: ['filtered'],
};

// ---------------------------------------------------------------------------
// The test plan shared by test/knock-input.test.ts and test/knock-forward.test.ts.

interface Side {
  topo?: Topology;
  bench?: KnockBench;
  ready: Promise<KnockBench>;
  results: Map<string, Promise<CaseResult>>;
}

function settle<T>(p: Promise<T>): Promise<T> {
  p.catch(() => {});
  return p;
}

/**
 * Registers, for one placement: the script's command statuses and resulting
 * rule set (kernel, then xtr compared with it), and for every case a kernel test
 * (the outcomes the brief expects) and an xtr test (same outcomes, counters and
 * recent table as the kernel). Both routers run the cases at the same time, each
 * in its own order, so the 21 s timing case is waited once.
 */
export function registerKnockTests(test: TestFn, placement: Placement, createXtr: () => Promise<Topology>, createKernel: () => Promise<Topology>): void {
  const cases = [...KNOCK_CASES, SLOW_CASE];
  const sides: Record<'kernel' | 'xtr', Side> = {
    kernel: { ready: Promise.reject(new Error('not started')), results: new Map() },
    xtr: { ready: Promise.reject(new Error('not started')), results: new Map() },
  };
  sides.kernel.ready.catch(() => {});
  sides.xtr.ready.catch(() => {});

  const start = (side: Side, create: () => Promise<Topology>) => {
    side.ready = settle(
      (async () => {
        side.topo = await create();
        side.bench = await KnockBench.create(side.topo, placement);
        return side.bench;
      })(),
    );
    let chain: Promise<unknown> = side.ready;
    for (const c of cases) {
      const p = settle(chain.catch(() => {}).then(async () => (await side.ready).runCase(c)));
      side.results.set(c.name, p);
      chain = p;
    }
    return chain.catch(() => {});
  };

  let done: Promise<unknown> = Promise.resolve();
  test.before(() => {
    done = Promise.all([start(sides.kernel, createKernel), start(sides.xtr, createXtr)]);
  });

  test.after.always(async () => {
    await done;
    for (const side of [sides.kernel, sides.xtr]) {
      await side.bench?.destroy().catch(() => {});
      await side.topo?.destroy().catch(() => {});
    }
  });

  const xtrBench = async (t: ExecutionContext): Promise<KnockBench | undefined> => {
    try {
      return await sides.xtr.ready;
    } catch (err) {
      t.fail(`xtr side not available: ${(err as Error).message}`);
      return undefined;
    }
  };

  test.serial(`kernel (${placement}): the script's commands exit as iptables 1.8.9 does`, async (t) => {
    const k = await sides.kernel.ready;
    const failed = k.scriptCommands.filter((c) => c.status !== 0);
    // `-i ! lo` / `-o ! lo`: getopt gives -i the argument "!", and "lo" is then a stray argument.
    t.deepEqual(
      failed.map((c) => [c.status, c.args]),
      [
        [2, '-I INPUT 1 -i ! lo -j DROP'],
        [2, '-I FORWARD 1 -i ! lo -j DROP'],
        [2, '-I OUTPUT 1 -o ! lo -j DROP'],
      ],
    );
    for (const c of failed) t.regex(c.stderr, /Bad argument `lo'/);
    t.is(k.scriptCommands.length, 53, 'every $IPTABLES line of the script ran');
    // So the closing `-D CHAIN 1`s delete the first rules that did get in.
    const rules = k.initialRules.join('\n');
    t.notRegex(rules, /-A INPUT -i lo -j ACCEPT/);
    t.notRegex(rules, /-A OUTPUT -o lo -j ACCEPT/);
    t.notRegex(rules, /-A FORWARD -s 10\.0\.0\.0\/8 -i eth0 -j DROP/);
    t.regex(rules, /-A INPUT -s 10\.0\.0\.0\/8 -i eth0 -j DROP/);
  });

  test.serial(`xtr (${placement}): the script's commands exit as on the kernel, same rule set`, async (t) => {
    const k = await sides.kernel.ready;
    const x = await xtrBench(t);
    if (!x) return;
    t.deepEqual(
      x.scriptCommands.map((c) => `${c.status} ${c.args}`),
      k.scriptCommands.map((c) => `${c.status} ${c.args}`),
    );
    for (const c of x.scriptCommands.filter((c) => c.status !== 0)) t.regex(c.stderr, /lo/, `error for "${c.args}" names the stray argument`);
    t.deepEqual(x.initialRules, k.initialRules);
  });

  for (const c of cases) {
    test.serial(`kernel (${placement}): ${c.name}`, async (t) => {
      const r = await sides.kernel.results.get(c.name)!;
      t.deepEqual(r.outcomes, expectedFor(c, placement));
      t.log(r.counters.filter((l) => !l.endsWith('[0:0]')).join('\n'));
    });
    test.serial(`xtr = kernel (${placement}): ${c.name}`, async (t) => {
      if (!(await xtrBench(t))) return;
      const k = await sides.kernel.results.get(c.name)!;
      const x = await sides.xtr.results.get(c.name)!;
      t.deepEqual(x.outcomes, k.outcomes, 'connection outcomes');
      t.deepEqual(x.counters, k.counters, 'filter table counters (policies and every rule)');
      t.deepEqual(x.recent, k.recent, 'xt_recent/DEFAULT entries');
      t.deepEqual(x.listed, k.listed, 'iptables -L -v -x -n (counters, targets, matches as listed)');
    });
  }
}
