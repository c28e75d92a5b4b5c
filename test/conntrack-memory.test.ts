/**
 * Issue 12 §3: the conntrack table is compact and bounded. A child process
 * (test/helpers/ct-refill.ts, under --expose-gc so memory can be read after
 * full GCs) fills a table of the default size with a mix of flows, overflows
 * it, lets it expire and refills it; here we assert what it measured:
 * bytes per entry (V8 heap + external, the table included) within the
 * issue's 256, no growth from one refill to the next, and that lookups and
 * NAT tuple uniqueness hold on recycled slots. Memory only, never time.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers/netns.js';
import type { Round } from './helpers/ct-refill.js';


const MAX = 65536;
const ROUNDS = 3;

test('a full default table costs at most 256 bytes per entry, refills without growing, and keeps lookups and NAT tuples unique on recycled slots', (t) => {
  const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', join(REPO_ROOT, 'test/helpers/ct-refill.ts')], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
    env: { ...process.env, CT_MAX: String(MAX), CT_ROUNDS: String(ROUNDS) },
    timeout: 240_000,
  });
  t.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { bytesPerEntry: number; tableBytes: number; rounds: Round[] };
  t.log(`bytes per entry ${out.bytesPerEntry.toFixed(1)}, table slabs ${(out.tableBytes / 1048576).toFixed(1)} MiB, held per round ${out.rounds.map((x) => (x.heldBytes / 1048576).toFixed(2)).join(' / ')} MiB`);
  t.true(out.bytesPerEntry <= 256, `bytes per entry ${out.bytesPerEntry}`);
  t.true(out.tableBytes < 20 * 1048576, `table slabs ${out.tableBytes} bytes`);
  t.is(out.rounds.length, ROUNDS);
  out.rounds.forEach((x, i) => {
    const at = `round ${i}`;
    t.is(x.count, MAX, at);
    t.is(x.refused, 0, at);
    t.is(x.distinctHandles, MAX, `${at}: one handle per entry`);
    t.is(x.distinctOrig, MAX, `${at}: original tuples unique`);
    t.is(x.distinctRepl, MAX, `${at}: reply tuples unique`);
    t.is(x.natFlows, MAX / 16, at);
    t.is(x.natDistinctReplyPorts, x.natFlows, `${at}: every SNATed flow got its own port`);
    t.true(x.repliesChecked > MAX / 6, at);
    t.is(x.repliesWrong, 0, `${at}: replies find their own entry`);
    t.is(x.earlyDrops, MAX / 4, `${at}: the overflow evicted unassured entries`);
    t.is(x.leftAfterExpiry, 0, at);
  });
  // Generous: a refill reuses the slabs, so what is held may move by GC noise only (1 MiB is 16 bytes per entry).
  const growth = out.rounds[ROUNDS - 1].heldBytes - out.rounds[0].heldBytes;
  t.true(growth < 1048576, `held memory grew by ${growth} bytes from the first fill to the last refill`);
});
