/**
 * The layering rules (.dependency-cruiser.cjs) hold for the whole tree, and
 * each rule really fails on a violation: one planted import per rule, in a
 * throwaway tree laid out like the repository.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(dirname(new URL(import.meta.url).pathname), '..');
const depcruise = join(root, 'node_modules', '.bin', 'depcruise');

function plain(text: string): string {
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}

async function cruise(cwd: string, dirs: string[]): Promise<{ code: number; out: string }> {
  try {
    // Under CI=true dependency-cruiser colours its report even into a pipe: ask for none, and strip any left.
    const env = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' };
    const r = await run(depcruise, ['--config', '.dependency-cruiser.cjs', '--output-type', 'err', ...dirs], { cwd, env, timeout: 110_000 });
    return { code: 0, out: plain(r.stdout + r.stderr) };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof err.code === 'number' ? err.code : -1, out: plain(`${err.stdout ?? ''}${err.stderr ?? ''}`) };
  }
}

test('the tree keeps its floors: no layering violation', async (t) => {
  const dirs = ['xt', 'dataplane', 'geoip-db', 'modules', 'router', 'scripts', 'bench', 'test'];
  const r = await cruise(root, dirs);
  t.is(r.code, 0, r.out);
});

/** [rule, importing file, imported file]: each must be reported under that rule's name. */
const PLANTED: readonly (readonly [string, string, string])[] = [
  ['xt-imports-nothing', 'xt/packet.ts', 'router/forward.ts'],
  ['dataplane-imports-only-xt', 'dataplane/parse.ts', 'router/forward.ts'],
  ['dataplane-imports-only-xt', 'dataplane/build.ts', 'modules/REJECT.ts'],
  ['geoip-db-below-modules', 'geoip-db/loader.ts', 'modules/geoip.ts'],
  ['modules-not-router', 'modules/connmark.ts', 'router/conntrack.ts'],
  ['extension-imports-no-extension', 'modules/CONNMARK.ts', 'modules/MARK.ts'],
  ['lib-imports-no-extension', 'modules/lib/marks.ts', 'modules/MARK.ts'],
  ['product-imports-no-tests-or-benches', 'router/main.ts', 'test/helpers/netns.ts'],
];

test('every rule fails on a planted violation (type-only imports count)', async (t) => {
  for (const [rule, from, to] of PLANTED) {
    const dir = mkdtempSync(join(tmpdir(), 'xtr-layering-'));
    try {
      copyFileSync(join(root, '.dependency-cruiser.cjs'), join(dir, '.dependency-cruiser.cjs'));
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }));
      const rel = (a: string, b: string) => {
        let r = join(...dirname(a).split('/').map(() => '..'), b).replace(/\.ts$/, '.js');
        if (!r.startsWith('.')) r = `./${r}`;
        return r;
      };
      mkdirSync(join(dir, dirname(from)), { recursive: true });
      mkdirSync(join(dir, dirname(to)), { recursive: true });
      writeFileSync(join(dir, to), 'export interface Thing { readonly n: number }\n');
      writeFileSync(join(dir, from), `import type { Thing } from '${rel(from, to)}';\nexport type Planted = Thing;\n`);
      const r = await cruise(dir, [from.split('/')[0]]);
      t.not(r.code, 0, `${rule}: ${from} -> ${to} was not refused`);
      t.regex(r.out, new RegExp(`${rule}: ${from.replace(/\./g, '\\.')} → ${to.replace(/\./g, '\\.')}`), `${rule}: ${from} -> ${to}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});
