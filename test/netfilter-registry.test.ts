import test from 'ava';
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { loadExtensions, extensions } from '../modules/registry.js';

const record = (kind: string, name: string, families = '[4, 6]') =>
  `export default { kind: '${kind}', name: '${name}', families: ${families}, options: [], parse: () => null, check: () => ({}), save: () => '' };\n`;

function dirWith(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'xtr-registry-'));
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

test('every file of modules/ is registered by name, kind and family (lib/ and registry skipped)', async (t) => {
  const r = await extensions();
  t.truthy(r.match('tcp', 4));
  t.truthy(r.match('tcp', 6));
  t.is(r.match('icmp', 6), undefined, 'icmp is IPv4 only');
  t.truthy(r.target('REJECT', 4));
  t.is(r.match('REJECT', 4), undefined, 'kinds are separate');
  t.false(r.all().some((e) => e.name === 'types' || e.name === 'registry'));
});

test('a match and a target may share a name; a duplicate of the same kind and family is an error naming both files', async (t) => {
  const ok = dirWith({ 'mark.ts': record('match', 'mark'), 'MARK.ts': record('target', 'MARK'), 'lib/helpers.ts': 'export {};\n' });
  try {
    const r = await loadExtensions(ok);
    t.truthy(r.match('mark', 4));
    t.truthy(r.target('MARK', 6));
  } finally {
    rmSync(ok, { recursive: true });
  }
  const dup = dirWith({ 'a.ts': record('match', 'same'), 'b.ts': record('match', 'same', '[6]') });
  try {
    const e = await t.throwsAsync(loadExtensions(dup));
    t.regex(e!.message, /b\.ts: match "same" is already registered by a\.ts/);
  } finally {
    rmSync(dup, { recursive: true });
  }
  const perFamily = dirWith({ 'a.ts': record('match', 'fam', '[4]'), 'b.ts': record('match', 'fam', '[6]') });
  try {
    const r = await loadExtensions(perFamily);
    t.not(r.match('fam', 4), r.match('fam', 6));
  } finally {
    rmSync(perFamily, { recursive: true });
  }
});

test('a file without a record, or that fails to load, is an error naming it', async (t) => {
  const none = dirWith({ 'x.ts': 'export const y = 1;\n' });
  try {
    t.regex((await t.throwsAsync(loadExtensions(none)))!.message, /x\.ts: no default export/);
  } finally {
    rmSync(none, { recursive: true });
  }
  const broken = dirWith({ 'z.ts': "throw new Error('kaput');\n" });
  try {
    t.regex((await t.throwsAsync(loadExtensions(broken)))!.message, /z\.ts: extension failed to load: kaput/);
  } finally {
    rmSync(broken, { recursive: true });
  }
  const notRecord = dirWith({ 'w.ts': 'export default { name: 1 };\n' });
  try {
    t.regex((await t.throwsAsync(loadExtensions(notRecord)))!.message, /w\.ts: default export is not an extension record/);
  } finally {
    rmSync(notRecord, { recursive: true });
  }
});
