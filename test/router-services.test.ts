import test from 'ava';
import { Writable } from 'node:stream';
import { MemDevice } from '../dataplane/memdev.js';
import { validateConfig } from '../router/config.js';
import { Router } from '../router/forward.js';
import { createLogger, silentLogger, syslogToPino } from '../router/log.js';
import { Services } from '../router/services.js';
import { udp4 } from './router-packets.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, logger: createLogger({ level: 'debug', pretty: false, destination: stream, levels: 'number' }) };
}

test('log: syslog severities map to pino levels and the line is the message', (t) => {
  const { lines, logger } = capture();
  const s = new Services({ injectLocal: () => undefined }, logger);
  s.log(4, 'IN=eth0 OUT= SRC=198.51.100.2 DST=198.51.100.1 LEN=60 PROTO=TCP SPT=1 DPT=22');
  s.log(7, 'debug line');
  s.log(0, 'emergency');
  t.deepEqual(
    lines.map((l) => [l.level, l.msg, l.syslog]),
    [
      [40, 'IN=eth0 OUT= SRC=198.51.100.2 DST=198.51.100.1 LEN=60 PROTO=TCP SPT=1 DPT=22', 4],
      [20, 'debug line', 7],
      [60, 'emergency', 0],
    ],
  );
  t.deepEqual([0, 1, 2, 3, 4, 5, 6, 7].map(syslogToPino), ['fatal', 'fatal', 'error', 'error', 'warn', 'info', 'info', 'debug']);
});

test('now() is monotonic milliseconds', (t) => {
  const s = new Services({ injectLocal: () => undefined }, silentLogger());
  const a = s.now();
  const b = s.now();
  t.true(b >= a);
  t.true(Math.abs(a - performance.now()) < 1000);
  const fake = new Services({ injectLocal: () => undefined }, silentLogger(), () => 42);
  t.is(fake.now(), 42);
});

test('emitLocal hands a copy to the sink with its family', (t) => {
  const got: [number[], number][] = [];
  const s = new Services({ injectLocal: (b, o, l, f) => got.push([[...b.subarray(o, o + l)], f]) }, silentLogger());
  s.emitLocal(Uint8Array.of(9, 0x45, 1, 2, 9), 1, 3, 4);
  t.deepEqual(got, [[[0x45, 1, 2], 4]]);
});

test('Router refuses a config interface without a device, or with a device of the wrong kind', (t) => {
  const config = validateConfig({ interfaces: [{ name: 'eth0', mode: 'tap', addresses: ['10.0.0.1/24'] }] });
  t.throws(() => new Router({ config, devices: new Map(), host: null, logger: silentLogger() }), { message: 'interface eth0: no device given to the router' });
  t.throws(() => new Router({ config, devices: new Map([['eth0', new MemDevice('eth0')]]), host: null, logger: silentLogger() }), {
    message: 'interface eth0: config says tap but the device is tun',
  });
});

test('gateway mode (no host interface): local packets go back into their ingress TUN for the kernel', (t) => {
  const config = validateConfig({ interfaces: [{ name: 'eth0', addresses: ['10.0.0.1/24'] }, { name: 'eth1', addresses: ['10.1.0.1/24'] }] });
  const eth0 = new MemDevice('eth0');
  const eth1 = new MemDevice('eth1');
  const r = new Router({ config, devices: new Map([['eth0', eth0], ['eth1', eth1]]), host: null, logger: silentLogger() });
  r.start();
  const pkt = udp4({ src: '10.0.0.2', dst: '10.0.0.1' });
  eth0.inject(pkt);
  r.drain(r.interfaces[1]);
  t.deepEqual(eth0.takeSent(), [pkt]);
  t.is(eth1.takeSent().length, 0);
  r.stop();
  eth0.close();
  eth1.close();
});

test('the router reads by itself once started (device wake-ups), and stops reading after stop()', async (t) => {
  const config = validateConfig({ interfaces: [{ name: 'eth0', addresses: ['10.0.0.1/24'] }, { name: 'eth1', addresses: ['10.1.0.1/24'] }] });
  const eth0 = new MemDevice('eth0');
  const eth1 = new MemDevice('eth1');
  const r = new Router({ config, devices: new Map([['eth0', eth0], ['eth1', eth1]]), host: null, logger: silentLogger() });
  r.start();
  eth0.inject(udp4({ src: '10.0.0.2', dst: '10.1.0.2' }));
  await new Promise((res) => setTimeout(res, 20));
  t.is(eth1.takeSent().length, 1);
  r.stop();
  eth0.inject(udp4({ src: '10.0.0.2', dst: '10.1.0.2' }));
  await new Promise((res) => setTimeout(res, 20));
  t.is(eth1.takeSent().length, 0);
  t.false(r.status().running);
  // the owner closes the devices after stop() (a level-triggered device would otherwise keep waking)
  eth0.close();
  eth1.close();
});
