#!/usr/bin/env node
// compose.yaml's `xtr` service as `podman run` flags, for scripts/check-image-compose
// (there is no compose engine on the development machine). Reads the file with the
// project's yaml package and refuses keys it does not translate, so the check
// cannot silently run something other than what compose.yaml says.
//
// Usage: node scripts/compose-to-podman.mjs COMPOSE_FILE SERVICE VOLUME_PREFIX OUT_DIR
//   OUT_DIR/flags     one `podman run` argument per line (no --network, no image)
//   OUT_DIR/networks  `NAME ADDRESS PRIORITY SUBNET GATEWAY INTERNAL` per network,
//                     highest priority first (the order compose connects them: eth0, eth1, ...)
//   OUT_DIR/volumes   the named volumes to create (prefixed)
import { mkdirSync, writeFileSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { createRequire } from 'node:module';

const [file, service, volPrefix, outDir] = process.argv.slice(2);
if (!outDir) {
  process.stderr.write('usage: node scripts/compose-to-podman.mjs COMPOSE_FILE SERVICE VOLUME_PREFIX OUT_DIR\n');
  process.exit(2);
}
const require = createRequire(join(dirname(new URL(import.meta.url).pathname), '..', 'package.json'));
const { parse } = require('yaml');
const doc = parse(readFileSync(file, 'utf8'));
const base = dirname(resolve(file));
const svc = doc.services?.[service];
if (!svc) throw new Error(`${file}: no service ${service}`);

const HANDLED = ['build', 'image', 'cap_add', 'devices', 'sysctls', 'environment', 'volumes', 'networks', 'healthcheck', 'stop_grace_period', 'restart'];
for (const k of Object.keys(svc)) if (!HANDLED.includes(k)) throw new Error(`services.${service}.${k}: not translated by compose-to-podman.mjs`);

const flags = [];
for (const c of svc.cap_add ?? []) flags.push('--cap-add', c);
for (const d of svc.devices ?? []) flags.push('--device', d);
const kv = (v) => (Array.isArray(v) ? v.map((s) => s.split('=', 2)) : Object.entries(v ?? {}));
// With --network ns:PATH podman writes --sysctl values into the joined namespace.
for (const [k, v] of kv(svc.sysctls)) flags.push('--sysctl', `${k}=${v}`);
for (const [k, v] of kv(svc.environment)) flags.push('-e', `${k}=${v ?? ''}`);
const volumes = new Set();
for (const v of svc.volumes ?? []) {
  const [src, dst, mode] = typeof v === 'string' ? v.split(':') : [v.source, v.target, v.read_only ? 'ro' : undefined];
  let source = src;
  if (src.startsWith('.') || src.startsWith('/')) {
    source = isAbsolute(src) ? src : resolve(base, src);
  } else {
    if (!doc.volumes || !(src in doc.volumes)) throw new Error(`volume ${src} is not declared under volumes:`);
    source = `${volPrefix}${src}`;
    volumes.add(source);
  }
  flags.push('-v', `${source}:${dst}${mode ? `:${mode}` : ''}`);
}
const hc = svc.healthcheck;
if (hc) {
  if (hc.disable) flags.push('--no-healthcheck');
  else {
    const test = Array.isArray(hc.test) ? hc.test : ['CMD-SHELL', hc.test];
    if (test[0] === 'CMD') flags.push('--health-cmd', JSON.stringify(test.slice(1)));
    else if (test[0] === 'CMD-SHELL') flags.push('--health-cmd', test[1]);
    else throw new Error(`healthcheck.test ${JSON.stringify(test)}: not translated`);
    if (hc.interval) flags.push('--health-interval', hc.interval);
    if (hc.timeout) flags.push('--health-timeout', hc.timeout);
    if (hc.retries !== undefined) flags.push('--health-retries', String(hc.retries));
    if (hc.start_period) flags.push('--health-start-period', hc.start_period);
  }
}
if (svc.stop_grace_period) {
  const m = /^(\d+)s$/.exec(String(svc.stop_grace_period));
  if (!m) throw new Error(`stop_grace_period ${svc.stop_grace_period}: only seconds are translated`);
  flags.push('--stop-timeout', m[1]);
}
if (svc.restart) flags.push('--restart', svc.restart);

const nets = [];
for (const [name, n] of Object.entries(svc.networks ?? {})) {
  const def = doc.networks?.[name];
  if (!def) throw new Error(`network ${name} is not declared under networks:`);
  const cfg = def.ipam?.config?.[0];
  if (!n?.ipv4_address || !cfg?.subnet) throw new Error(`network ${name}: needs ipv4_address and ipam.config[0].subnet`);
  nets.push({ name, addr: n.ipv4_address, prio: n.priority ?? 0, subnet: cfg.subnet, gw: cfg.gateway ?? '-', internal: def.internal ? 1 : 0 });
}
// Compose connects the networks in decreasing priority: the first becomes eth0.
nets.sort((a, b) => b.prio - a.prio);
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'flags'), flags.join('\n') + '\n');
writeFileSync(join(outDir, 'networks'), nets.map((n) => `${n.name} ${n.addr} ${n.prio} ${n.subnet} ${n.gw} ${n.internal}`).join('\n') + '\n');
writeFileSync(join(outDir, 'volumes'), [...volumes].join('\n') + (volumes.size ? '\n' : ''));
