/**
 * The four `recent` recipes of ../shared/seeds/003_*.txt, taken from the seed at
 * test time and run as users would paste them (`iptables` → `$IPTABLES`, with
 * IPTABLES set to real iptables in the kernel reference or "xtr iptables" in
 * xtr's lab), first exactly as written and then with the one fix each needs
 * to do what its text promises. Outcomes (connections, pings, procfs writes),
 * per-rule counters, loaded rules and recent tables must be the kernel's.
 *
 * What the kernel says about the recipes as written:
 * 1. reverse knocking: `-m recent --name dbout --rdest` has no command, so the
 *    OUTPUT rule is refused (exit 2) and the inbound port never opens;
 * 2. log clog: works as written (the curly quotes become part of the prefix);
 * 3. auth port: `-j ALLOW` is no target (exit 2), so no rule and no
 *    /proc/net/xt_recent/authok exists; and a bare `echo IP` is rejected
 *    (EINVAL) even where the table exists — it needs `+IP`;
 * 4. quick IDS: a packet for 127.0.0.0/8 arriving on eth0 is a martian that
 *    routing drops before FORWARD, so nothing is ever blacklisted as written;
 *    with a routable trap address it blacklists the sender for 60 s.
 */
import test, { type ExecutionContext } from 'ava';
import {
  ADDR,
  KernelRouter,
  PacketAgent,
  XtrRouter,
  counterLines,
  parseRecent,
  parseSaveCounters,
  recentSummary,
  ruleLines,
  sleep,
  type Topology,
} from './helpers/kernel-router.js';
import { listen, ping, probeTcp, readSeed, runRecordedScript, type RecordedCommand } from './helpers/knock.js';

// ---------------------------------------------------------------------------
// The recipes, from the seed.

interface SeedRecipes {
  /** iptables lines per recipe number (1..4), as printed in the seed. */
  lines: Record<number, string[]>;
  /** The recipe-3 procfs write, as printed (`echo [IP] >> /proc/net/xt_recent/[name]`). */
  echo: string;
}

function seedRecipes(): SeedRecipes {
  const text = readSeed('003').text;
  const lines: Record<number, string[]> = {};
  let section = 0;
  for (const line of text.split('\n')) {
    const head = /^(\d)\. "/.exec(line);
    if (head) section = Number(head[1]);
    else if (section > 0 && line.startsWith('iptables ')) (lines[section] ??= []).push(line.trim());
  }
  const echo = /echo \[IP\] >> \/proc\/net\/xt_recent\/\[name\]/.exec(text)?.[0];
  for (const n of [1, 2, 3, 4]) if (!lines[n]?.length) throw new Error(`seed 003: no iptables lines found for recipe ${n}`);
  if (!echo) throw new Error('seed 003: the recipe-3 "echo [IP] >> /proc/net/xt_recent/[name]" line is gone');
  return { lines, echo };
}

const SEED = seedRecipes();

/** `iptables ...` → `$IPTABLES ...` and the recipes' placeholders → lab addresses. */
function asScript(lines: string[], edits: Array<[string | RegExp, string]> = []): string {
  return lines
    .map((l) => {
      let out = l.replace(/^iptables /, '$IPTABLES ');
      for (const [from, to] of edits) out = out.replace(from, to);
      return out;
    })
    .join('\n');
}

const RESET = [
  'for t in filter mangle raw nat; do $IPTABLES -t $t -F; $IPTABLES -t $t -X; $IPTABLES -t $t -Z; done',
  '$IPTABLES -P INPUT ACCEPT; $IPTABLES -P FORWARD ACCEPT; $IPTABLES -P OUTPUT ACCEPT',
].join('\n');

/** What the recipes assume around them ("normally the port is closed"). */
const CLOSED_INPUT = ['$IPTABLES -P INPUT DROP', '$IPTABLES -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT'].join('\n');

// ---------------------------------------------------------------------------
// One recipe run on one router.

interface RecipeEnv {
  topo: Topology;
  agent: PacketAgent;
}

interface RecipeResult {
  /** Exit status of each recipe command (context and reset excluded). */
  statuses: string[];
  /** stderr of each refused recipe command. */
  errors: string[];
  rules: string[];
  outcomes: string[];
  counters: string[];
  recent: string[];
}

interface Recipe {
  name: string;
  /** Script lines using $IPTABLES: context, then the recipe. */
  context?: string;
  recipe: string;
  recentTables: string[];
  act(env: RecipeEnv): Promise<string[]>;
  /** What the kernel gives (checked so the recipe tests what it claims). */
  expected: { statuses: number[]; outcomes: string[] };
}

async function runRecipe(env: RecipeEnv, r: Recipe): Promise<RecipeResult> {
  const prep = await runRecordedScript(env.topo, (ipt) => `IPTABLES="${ipt}"\n${RESET}\n${r.context ?? ''}\n`);
  const prepFailed = prep.commands.filter((c) => c.status !== 0);
  if (prepFailed.length > 0) throw new Error(`${env.topo.kind}: reset/context command failed: ${prepFailed[0]!.args}: ${prepFailed[0]!.stderr}`);
  const run = await runRecordedScript(env.topo, (ipt) => `IPTABLES="${ipt}"\n${r.recipe}\n`);
  const rules = ruleLines(parseSaveCounters(await env.topo.save(4)));
  const outcomes = await r.act(env);
  await sleep(300);
  const counters = counterLines(parseSaveCounters(await env.topo.save(4)), { tables: ['filter'] });
  const recent: string[] = [];
  for (const name of r.recentTables) {
    const rd = await env.topo.recentRead(name);
    recent.push(`${name}: ${rd.status === 0 ? recentSummary(parseRecent(rd.stdout)).join(' | ') : 'absent'}`);
  }
  return {
    statuses: run.commands.map((c) => `${c.status} ${c.args}`),
    errors: run.commands.filter((c) => c.status !== 0).map((c) => c.stderr),
    rules,
    outcomes,
    counters,
    recent,
  };
}

/** A UDP datagram from the client namespace (socat), source chosen. */
async function sendUdp(topo: Topology, source: string, target: string, port: number): Promise<void> {
  const r = await topo.exec(topo.ns.client, ['socat', '-u', '-', `UDP4-SENDTO:${target}:${port},bind=${source}`], { input: 'netbios\n', timeoutMs: 5000 });
  if (r.status !== 0) throw new Error(`socat UDP send failed: ${r.stderr}`);
}

async function pingFrom(topo: Topology, source: string, target: string): Promise<string> {
  const r = await topo.exec(topo.ns.client, ['ping', '-n', '-c', '1', '-W', '1', '-I', source, target], { timeoutMs: 5000 });
  return r.status === 0 ? 'reply' : 'no-reply';
}

/** procfs write outcome: `ok` or `rejected (exit N)`. */
async function write(topo: Topology, name: string, text: string): Promise<string> {
  const r = await topo.recentWrite(name, text, true);
  return r.status === 0 ? `write ${text}: ok` : `write ${text}: rejected (exit ${r.status})`;
}

async function withListeners<T>(topo: Topology, where: Array<[string, string, number]>, body: () => Promise<T>): Promise<T> {
  const started = [];
  try {
    for (const [ns, addr, port] of where) started.push(await listen(topo, ns, addr, port));
    return await body();
  } finally {
    for (const l of started) await l.stop();
  }
}

// ---------------------------------------------------------------------------

const TRAP = '203.0.113.99';

const recipes: Recipe[] = [
  {
    name: '1 reverse knocking, as written (--rdest without --set is refused)',
    context: CLOSED_INPUT,
    recipe: asScript(SEED.lines[1]!),
    recentTables: ['dbout'],
    act: ({ topo }) =>
      withListeners(topo, [[topo.ns.client, ADDR.client, 3306], [topo.ns.router, ADDR.routerClientSide, 3306]], async () => [
        `in before: ${await probeTcp(topo, ADDR.routerClientSide, 3306)}`,
        `out: ${await probeTcp(topo, ADDR.client, 3306, ADDR.client, topo.ns.router)}`,
        `in after: ${await probeTcp(topo, ADDR.routerClientSide, 3306)}`,
      ]),
    expected: { statuses: [2, 0], outcomes: ['in before: filtered', 'out: open', 'in after: filtered'] },
  },
  {
    name: '1 reverse knocking with --set added: the outbound connection opens the inbound port for that peer only',
    context: CLOSED_INPUT,
    recipe: asScript(SEED.lines[1]!, [['--rdest -j ACCEPT', '--rdest --set -j ACCEPT']]),
    recentTables: ['dbout'],
    act: ({ topo }) =>
      withListeners(topo, [[topo.ns.client, ADDR.client, 3306], [topo.ns.router, ADDR.routerClientSide, 3306]], async () => [
        `in before: ${await probeTcp(topo, ADDR.routerClientSide, 3306)}`,
        `out: ${await probeTcp(topo, ADDR.client, 3306, ADDR.client, topo.ns.router)}`,
        `in after: ${await probeTcp(topo, ADDR.routerClientSide, 3306)}`,
        `in from the second client: ${await probeTcp(topo, ADDR.routerClientSide, 3306, ADDR.client2)}`,
      ]),
    expected: { statuses: [0, 0], outcomes: ['in before: filtered', 'out: open', 'in after: open', 'in from the second client: filtered'] },
  },
  {
    // The core three lines, without the "(optional)" DROP and --hitcount 100 lines.
    name: '2 log clog, core lines: the first UDP 138 datagram per source is logged, the rest dropped unlogged',
    recipe: asScript(SEED.lines[2]!.slice(0, 3)),
    recentTables: ['udp-138'],
    act: async ({ topo }) => {
      for (let i = 0; i < 3; i++) {
        await sendUdp(topo, ADDR.client, ADDR.routerClientSide, 138);
        await sleep(100);
      }
      await sendUdp(topo, ADDR.client2, ADDR.routerClientSide, 138);
      return [];
    },
    expected: { statuses: [0, 0, 0], outcomes: [] },
  },
  {
    name: '2 log clog, with the optional lines: the first UDP 138 datagram per source is logged, the rest suppressed',
    recipe: asScript(SEED.lines[2]!),
    recentTables: ['udp-138'],
    act: async ({ topo }) => {
      for (let i = 0; i < 3; i++) {
        await sendUdp(topo, ADDR.client, ADDR.routerClientSide, 138);
        await sleep(100);
      }
      await sendUdp(topo, ADDR.client2, ADDR.routerClientSide, 138);
      return [`tcp 22: ${await probeTcp(topo, ADDR.routerClientSide, 22)}`];
    },
    expected: { statuses: [0, 0, 0, 0, 0], outcomes: ['tcp 22: filtered'] },
  },
  {
    name: '3 auth port, as written: -j ALLOW is refused, so the procfs file does not exist',
    recipe: asScript(SEED.lines[3]!, [[/\[server\]/g, ADDR.routerClientSide]]),
    recentTables: ['authok'],
    act: async ({ topo }) => [await write(topo, 'authok', ADDR.client)],
    expected: { statuses: [2, 2], outcomes: [`write ${ADDR.client}: rejected (exit 1)`] },
  },
  {
    name: '3 auth port with ACCEPT: a bare address is rejected, +IP opens port 80 for that address, -IP closes it',
    context: CLOSED_INPUT,
    recipe: asScript(SEED.lines[3]!, [[/\[server\]/g, ADDR.routerClientSide], [/-j ALLOW$/, '-j ACCEPT']]),
    recentTables: ['authok'],
    act: ({ topo }) =>
      withListeners(topo, [[topo.ns.router, ADDR.routerClientSide, 443], [topo.ns.router, ADDR.routerClientSide, 80]], async () => {
        const out = [`443: ${await probeTcp(topo, ADDR.routerClientSide, 443)}`, `80: ${await probeTcp(topo, ADDR.routerClientSide, 80)}`];
        out.push(await write(topo, 'authok', ADDR.client));
        out.push(`80 after bare write: ${await probeTcp(topo, ADDR.routerClientSide, 80)}`);
        out.push(await write(topo, 'authok', `+${ADDR.client}`));
        const table = await topo.recentRead('authok');
        out.push(`table: ${recentSummary(parseRecent(table.stdout)).join(' | ')}`);
        out.push(`80 after +: ${await probeTcp(topo, ADDR.routerClientSide, 80)}`);
        out.push(`80 from the second client: ${await probeTcp(topo, ADDR.routerClientSide, 80, ADDR.client2)}`);
        out.push(await write(topo, 'authok', `-${ADDR.client}`));
        out.push(`80 after -: ${await probeTcp(topo, ADDR.routerClientSide, 80)}`);
        return out;
      }),
    expected: {
      statuses: [0, 0],
      outcomes: [
        '443: open',
        '80: filtered',
        `write ${ADDR.client}: rejected (exit 1)`,
        '80 after bare write: filtered',
        `write +${ADDR.client}: ok`,
        `table: ${ADDR.client} ttl=0 stamps=1 oldest_pkt=1`,
        '80 after +: open',
        '80 from the second client: filtered',
        `write -${ADDR.client}: ok`,
        '80 after -: filtered',
      ],
    },
  },
  {
    name: '4 quick IDS, as written: a packet for 127.0.0.0/8 never reaches FORWARD (martian), nobody is blacklisted',
    recipe: asScript(SEED.lines[4]!),
    recentTables: ['noplacelike'],
    act: async ({ topo, agent }) => {
      const out = [`ping server: ${await pingFrom(topo, ADDR.client, ADDR.server)}`];
      await agent.send(["IP(src=C,dst='127.0.0.1')/UDP(sport=4444,dport=80)", "IP(src=C,dst='127.0.0.1')/TCP(sport=4444,dport=80,flags='S')"]);
      await sleep(200);
      out.push(`ping server after: ${await pingFrom(topo, ADDR.client, ADDR.server)}`);
      return out;
    },
    expected: { statuses: [0, 0, 0], outcomes: ['ping server: reply', 'ping server after: reply'] },
  },
  {
    name: '4 quick IDS with a routable trap address: the sender is blacklisted, others are not',
    recipe: asScript(SEED.lines[4]!, [['-d 127.0.0.0/8', `-d ${TRAP}/32`]]),
    recentTables: ['noplacelike'],
    act: async ({ topo }) => [
      `ping server: ${await pingFrom(topo, ADDR.client, ADDR.server)}`,
      `ping trap: ${await pingFrom(topo, ADDR.client, TRAP)}`,
      `ping server after: ${await pingFrom(topo, ADDR.client, ADDR.server)}`,
      `second client pings server: ${await pingFrom(topo, ADDR.client2, ADDR.server)}`,
    ],
    expected: { statuses: [0, 0, 0], outcomes: ['ping server: reply', 'ping trap: no-reply', 'ping server after: no-reply', 'second client pings server: reply'] },
  },
];

// ---------------------------------------------------------------------------

type Side = { env?: RecipeEnv; ready: Promise<RecipeEnv>; results: Map<string, Promise<RecipeResult>> };

function side(): Side {
  const ready = Promise.reject(new Error('not started'));
  ready.catch(() => {});
  return { ready, results: new Map() };
}

const sides = { kernel: side(), xtr: side() };

function start(s: Side, create: () => Promise<Topology>): Promise<unknown> {
  s.ready = (async () => {
    const topo = await create();
    try {
      const agent = await PacketAgent.start(topo.ns.client, 'c0', ADDR.routerClientSide, ADDR.router6ClientSide);
      s.env = { topo, agent };
      return s.env;
    } catch (err) {
      await topo.destroy();
      throw err;
    }
  })();
  s.ready.catch(() => {});
  let chain: Promise<unknown> = s.ready;
  for (const r of recipes) {
    const p = chain.catch(() => {}).then(async () => runRecipe(await s.ready, r));
    p.catch(() => {});
    s.results.set(r.name, p);
    chain = p;
  }
  return chain.catch(() => {});
}

let done: Promise<unknown> = Promise.resolve();
test.before(() => {
  done = Promise.all([start(sides.kernel, () => KernelRouter.create()), start(sides.xtr, () => XtrRouter.create())]);
});

test.after.always(async () => {
  await done;
  for (const s of [sides.kernel, sides.xtr]) {
    await s.env?.agent.stop().catch(() => {});
    await s.env?.topo.destroy().catch(() => {});
  }
});

async function xtrReady(t: ExecutionContext): Promise<boolean> {
  try {
    await sides.xtr.ready;
    return true;
  } catch (err) {
    t.fail(`xtr side not available: ${(err as Error).message}`);
    return false;
  }
}

test('the seed still holds the four recipes', (t) => {
  t.deepEqual(
    [1, 2, 3, 4].map((n) => SEED.lines[n]!.length),
    [2, 5, 2, 3],
  );
});

for (const r of recipes) {
  test.serial(`kernel: ${r.name}`, async (t) => {
    const k = await sides.kernel.results.get(r.name)!;
    t.log([...k.statuses, ...k.outcomes, ...k.counters.filter((l) => !l.endsWith('[0:0]')), ...k.recent].join('\n'));
    t.deepEqual(
      k.statuses.map((s) => Number(s.split(' ')[0])),
      r.expected.statuses,
      'exit status of each recipe command',
    );
    t.deepEqual(k.outcomes, r.expected.outcomes);
  });
  test.serial(`xtr = kernel: ${r.name}`, async (t) => {
    if (!(await xtrReady(t))) return;
    const k = await sides.kernel.results.get(r.name)!;
    const x = await sides.xtr.results.get(r.name)!;
    t.deepEqual(
      x.statuses,
      k.statuses,
      'exit status of each recipe command (a refused --hitcount above 20 is xtr\'s fixed 20-stamp ring, docs/compat.md; this kernel accepts up to 255)',
    );
    // Same refusal, and a message naming what was wrong (ALLOW, the missing recent command, ...).
    x.errors.forEach((e, i) => {
      const word = /ALLOW/.test(k.errors[i] ?? '') ? /ALLOW/ : /\S/;
      t.regex(e, word, `error text for refused command ${i + 1}: ${e}`);
    });
    t.deepEqual(x.rules, k.rules, 'the rule set the recipe leaves (iptables-save)');
    t.deepEqual(x.outcomes, k.outcomes, 'connections, pings and procfs writes');
    t.deepEqual(x.counters, k.counters, 'filter counters (policies and rules)');
    t.deepEqual(x.recent, k.recent, 'recent tables');
  });
}
