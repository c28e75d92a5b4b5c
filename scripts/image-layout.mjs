#!/usr/bin/env node
// The gateway image's runtime files, assembled in the Dockerfile's build stage
// (after `tsc` and `npm prune --omit=dev`) into OUT, which the runtime stage
// copies as one layer:
//   OUT/opt/xtr/{package.json, node_modules, build/Release/xtr_tun.node, bin/, dist/}
//   OUT/opt/xtr/scripts/<launcher>      the user tools' launchers
//   OUT/usr/local/bin/<tool> -> /opt/xtr/...
// dist/ without the tests, benchmarks and source maps (nor node_modules' maps). The tools on PATH are
// every package.json `bin` entry (whatever it holds at build time) plus every
// tool with a man page in docs/man/ whose launcher is in scripts/ (the user
// tools that are not in `bin`); a `bin` entry whose file is missing fails the
// build rather than shipping a dangling link.
//
// Usage (in the build stage, cwd = the source tree): node scripts/image-layout.mjs OUT
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';

const out = process.argv[2];
if (!out) {
  process.stderr.write('usage: node scripts/image-layout.mjs OUT\n');
  process.exit(2);
}
const src = process.cwd();
const app = join(out, 'opt/xtr');
const PREFIX = '/opt/xtr';
const NOT_SHIPPED_DIST = new Set(['test', 'bench']);

mkdirSync(app, { recursive: true });
cpSync(join(src, 'package.json'), join(app, 'package.json'));
// Packages' source maps and type declarations are not run either.
cpSync(join(src, 'node_modules'), join(app, 'node_modules'), {
  recursive: true,
  verbatimSymlinks: true,
  filter: (p) => !p.endsWith('.map') && !p.endsWith('.d.ts') && !p.endsWith('.d.mts') && !p.endsWith('.d.cts'),
});
mkdirSync(join(app, 'build/Release'), { recursive: true });
cpSync(join(src, 'build/Release/xtr_tun.node'), join(app, 'build/Release/xtr_tun.node'));
cpSync(join(src, 'bin'), join(app, 'bin'), { recursive: true });
for (const d of readdirSync(join(src, 'dist'))) {
  if (NOT_SHIPPED_DIST.has(d)) continue;
  cpSync(join(src, 'dist', d), join(app, 'dist', d), {
    recursive: true,
    filter: (p) => !p.endsWith('.map') && !p.endsWith('.d.ts'),
  });
}

const pkg = JSON.parse(readFileSync(join(src, 'package.json'), 'utf8'));
const bin = typeof pkg.bin === 'string' ? { [pkg.name]: pkg.bin } : (pkg.bin ?? {});
const tools = new Map(); // name -> path relative to the source tree
for (const [name, p] of Object.entries(bin)) {
  if (!existsSync(join(src, p))) throw new Error(`package.json bin.${name}: ${p} does not exist`);
  tools.set(name, p);
}
const manDir = join(src, 'docs/man');
if (existsSync(manDir)) {
  for (const f of readdirSync(manDir)) {
    const name = f.replace(/\.1$/, '');
    if (name === f || tools.has(name)) continue;
    const launcher = join('scripts', name);
    if (existsSync(join(src, launcher)) && statSync(join(src, launcher)).mode & 0o111) tools.set(name, launcher);
  }
}

const binDir = join(out, 'usr/local/bin');
mkdirSync(binDir, { recursive: true });
for (const [name, p] of [...tools].sort()) {
  const rel = relative(src, resolve(src, p));
  // bin/ and dist/ are already there; a launcher under scripts/ is copied beside dist/.
  if (!existsSync(join(app, rel))) {
    mkdirSync(dirname(join(app, rel)), { recursive: true });
    cpSync(join(src, rel), join(app, rel));
  }
  chmodSync(join(app, rel), 0o755);
  symlinkSync(join(PREFIX, rel), join(binDir, basename(name)));
  process.stdout.write(`${name} -> ${join(PREFIX, rel)}\n`);
}
