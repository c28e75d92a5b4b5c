/**
 * The control socket's limits in the config (issue 12 §5, docs/config.md
 * `control.*`): defaults, accepted values, and refusals that name the key.
 */
import test from 'ava';
import { ConfigError, validateConfig } from '../router/config.js';
import { DEFAULT_CONTROL_LIMITS } from '../router/control.js';

test('defaults: 64 connections, 1 MiB lines, 64 MiB of streamed input, 60 s idle', (t) => {
  const c = validateConfig({}).control;
  t.deepEqual(
    { maxConnections: c.maxConnections, maxLineBytes: c.maxLineBytes, maxInputBytes: c.maxInputBytes, idleTimeoutMs: c.idleTimeoutMs },
    { ...DEFAULT_CONTROL_LIMITS },
  );
  t.deepEqual(DEFAULT_CONTROL_LIMITS, { maxConnections: 64, maxLineBytes: 1 << 20, maxInputBytes: 64 << 20, idleTimeoutMs: 60_000 });
});

test('values are taken; idleTimeoutMs 0 means never', (t) => {
  const c = validateConfig({ control: { socket: '/run/x.sock', maxConnections: 3, maxLineBytes: 8192, maxInputBytes: 100_000, idleTimeoutMs: 0 } }).control;
  t.is(c.socket, '/run/x.sock');
  t.is(c.maxConnections, 3);
  t.is(c.maxLineBytes, 8192);
  t.is(c.maxInputBytes, 100_000);
  t.is(c.idleTimeoutMs, 0);
});

const refused: [string, unknown, string][] = [
  ['maxConnections', 0, 'control.maxConnections: 0 must be an integer from 1 to 65536'],
  ['maxConnections', 2.5, 'control.maxConnections: 2.5 must be an integer from 1 to 65536'],
  ['maxLineBytes', 100, 'control.maxLineBytes: 100 must be an integer from 4096 to 1073741824'],
  ['maxInputBytes', '1M', 'control.maxInputBytes: "1M" must be an integer from 65536 to 2147483648'],
  ['idleTimeoutMs', 50, 'control.idleTimeoutMs: 50 must be 0 (never) or an integer from 100 to 86400000'],
];
for (const [key, value, message] of refused) {
  test(`refused: control.${key} ${JSON.stringify(value)}`, (t) => {
    const e = t.throws(() => validateConfig({ control: { [key]: value } }), { instanceOf: ConfigError });
    t.is(e!.message, message);
  });
}
