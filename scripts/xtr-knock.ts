/**
 * xtr-knock: the client of `-m pknock` (docs/knocking.md).
 *
 *   xtr-knock [-4|-6] [-u] [-d MS] [-v] HOST PORT[:tcp|:udp] [PORT[:proto]]...
 *       a knock sequence, as knockd's `knock`: one TCP SYN (a connect that is
 *       abandoned at once) or one empty UDP datagram per port, in order,
 *       MS milliseconds apart (default 0).
 *
 *   xtr-knock --spa [-4|-6] [-s SOURCE] [--secret-file FILE] [--minute N] [--print] HOST PORT
 *       one UDP SPA packet (replacing upstream's Python 2 gen_hmac.py +
 *       knock.sh): 64 lower-case hex digits of HMAC-SHA256(secret, source
 *       address in network order || epoch minute as u32 little-endian) and a
 *       newline. The secret comes from --secret-file (first line, without its
 *       newline) or the XTR_KNOCK_SECRET environment variable, never from
 *       the command line (which other users can read in ps). Only the first
 *       31 bytes count, as iptables keeps only those. SOURCE is the address
 *       the router sees (default: the address this host would send from to
 *       HOST); the packet is sent from it. --print writes the payload instead.
 *
 *   xtr-knock --code --span LO:HI [--span LO:HI]... --key-file FILE --open PORT[:tcp|:udp]
 *             [--expiry SECONDS] [-u] [-d MS] [-s SOURCE] [--print] HOST
 *       an encrypted knock for `-m knockcode` (docs/knocking.md): (port, protocol,
 *       expiry) sealed with ChaCha20-Poly1305 under the key file's 32-byte key,
 *       the source address as associated data, sent as knocks on the span's
 *       ports (TCP SYNs, or UDP with -u), 2 ms apart unless -d says otherwise.
 */
import { createCipheriv, createHmac, randomBytes } from 'node:crypto';
import { AAD_PREFIX, NONCE_BYTES, TAG_BYTES, encodeSymbols, portOf, readKeyFile, spanBits } from '../modules/knockcode.js';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { helpOrVersion, quietEpipe } from '../xt/version.js';

const USAGE = `usage: xtr-knock [-4|-6] [-u] [-d MS] [-v] HOST PORT[:tcp|:udp] [PORT[:proto]]...
       xtr-knock --spa [-4|-6] [-s SOURCE] [--secret-file FILE] [--minute N] [--print] HOST PORT
       xtr-knock --code --span LO:HI [--span ...] --key-file FILE --open PORT[:proto] [--expiry S] [-u] [-d MS] [-s SOURCE] [--print] HOST
       xtr-knock --help | --version
  -v prints each knock, -q prints nothing (the default: only --print output)
  the SPA secret comes from --secret-file or $XTR_KNOCK_SECRET
exit status: 0 ok, 1 failure (unreachable host, unreadable key), 2 usage error
`;

class UsageError extends Error {}

interface Options {
  family: 4 | 6 | 0;
  udp: boolean;
  delay: number;
  verbose: boolean;
  spa: boolean;
  source: string | null;
  secretFile: string | null;
  minute: number | null;
  print: boolean;
  code: boolean;
  spans: [number, number][];
  keyFile: string | null;
  open: string | null;
  expiry: number;
  delaySet: boolean;
  rest: string[];
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = { family: 0, udp: false, delay: 0, verbose: false, spa: false, source: null, secretFile: null, minute: null, print: false, code: false, spans: [], keyFile: null, open: null, expiry: 60, delaySet: false, rest: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      if (i + 1 >= argv.length) throw new UsageError(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '-4' || a === '--ipv4') o.family = 4;
    else if (a === '-6' || a === '--ipv6') o.family = 6;
    else if (a === '-u' || a === '--udp') o.udp = true;
    else if (a === '-v' || a === '--verbose') o.verbose = true;
    else if (a === '-q' || a === '--quiet') o.verbose = false;
    else if (a === '-d' || a === '--delay') {
      o.delay = Number(value());
      if (!Number.isInteger(o.delay) || o.delay < 0) throw new UsageError(`--delay ${argv[i]}: milliseconds, a non-negative integer`);
      o.delaySet = true;
    } else if (a === '--spa') o.spa = true;
    else if (a === '--code') o.code = true;
    else if (a === '--span') {
      const m = /^(\d+):(\d+)$/.exec(value());
      if (!m || +m[1] > +m[2] || +m[2] > 65535) throw new UsageError(`--span ${argv[i]}: LO:HI`);
      o.spans.push([+m[1], +m[2]]);
    } else if (a === '--key-file') o.keyFile = value();
    else if (a === '--open') o.open = value();
    else if (a === '--expiry') {
      o.expiry = Number(value());
      if (!Number.isInteger(o.expiry) || o.expiry < 1) throw new UsageError(`--expiry ${argv[i]}: seconds, a positive integer`);
    }
    else if (a === '-s' || a === '--source') o.source = value();
    else if (a === '--secret-file') o.secretFile = value();
    else if (a === '--minute') {
      o.minute = Number(value());
      if (!Number.isInteger(o.minute) || o.minute < 0 || o.minute > 0xffffffff) throw new UsageError(`--minute ${argv[i]}: an epoch minute`);
    } else if (a === '--print') o.print = true;
    else if (a.startsWith('-') && a !== '-') throw new UsageError(`unknown option ${a}`);
    else o.rest.push(a);
  }
  return o;
}

function parsePort(word: string, udpDefault: boolean): { port: number; udp: boolean } {
  const [p, proto] = word.split(':');
  const port = Number(p);
  if (!/^\d+$/.test(p) || port < 1 || port > 65535) throw new UsageError(`${word}: a port 1..65535, optionally :tcp or :udp`);
  if (proto !== undefined && proto !== 'tcp' && proto !== 'udp') throw new UsageError(`${word}: protocol must be tcp or udp`);
  return { port, udp: proto === undefined ? udpDefault : proto === 'udp' };
}

function familyOf(host: string, wanted: 4 | 6 | 0): 4 | 6 {
  const f = net.isIP(host);
  if (f === 0) throw new UsageError(`${host}: give an IPv4 or IPv6 address`);
  if (wanted !== 0 && wanted !== f) throw new UsageError(`${host} is not an IPv${wanted} address`);
  return f as 4 | 6;
}

/** The bytes of an address in network order. */
export function addressBytes(addr: string): Buffer {
  if (net.isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  if (!net.isIPv6(addr)) throw new UsageError(`${addr}: not an IP address`);
  let text = addr;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = addressBytes(v4[1]);
    text = text.slice(0, -v4[1].length) + `${b.readUInt16BE(0).toString(16)}:${b.readUInt16BE(2).toString(16)}`;
  }
  const [head, tail = null] = text.split('::') as [string, string | null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

/** The SPA payload: hex HMAC-SHA256(secret, address || u32le(minute)) and "\n" (65 bytes). */
export function spaPayload(secret: Buffer, source: string, minute: number): Buffer {
  const m = Buffer.alloc(4);
  m.writeUInt32LE(minute >>> 0);
  const hex = createHmac('sha256', secret.subarray(0, 31)).update(Buffer.concat([addressBytes(source), m])).digest('hex');
  return Buffer.from(`${hex}\n`, 'latin1');
}

function readSecret(o: Options): Buffer {
  if (o.secretFile !== null) {
    const text = readFileSync(o.secretFile, 'utf8');
    const first = text.split('\n')[0].replace(/\r$/, '');
    if (first === '') throw new UsageError(`${o.secretFile}: empty secret`);
    return Buffer.from(first, 'utf8');
  }
  const env = process.env.XTR_KNOCK_SECRET;
  if (env) return Buffer.from(env, 'utf8');
  throw new UsageError('no secret: give --secret-file FILE or set XTR_KNOCK_SECRET');
}

/** The local address the kernel would use towards host (a connected UDP socket sends nothing). */
function sourceFor(host: string, family: 4 | 6): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.connect(9, host, () => {
      const a = s.address().address;
      s.close();
      resolve(a);
    });
  });
}

function sendUdp(host: string, port: number, family: 4 | 6, payload: Buffer, source: string | null): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(family === 4 ? 'udp4' : 'udp6');
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    const send = () =>
      s.send(payload, port, host, (err) => {
        s.close();
        if (err) reject(err);
        else resolve();
      });
    if (source !== null) s.bind({ address: source, port: 0 }, send);
    else send();
  });
}

/** One TCP knock: the SYN leaves with connect(); the attempt is dropped right after. */
function tcpKnock(host: string, port: number): Promise<void> {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    sock.on('error', () => undefined);
    // Node connects on the next tick; after one event-loop turn the SYN has been sent.
    setTimeout(() => {
      sock.destroy();
      resolve();
    }, 1);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The knockcode wire bytes: nonce8 || ChaCha20-Poly1305(port u16, flags u8, expiry u32) || tag16, source address in the AAD. */
export function sealKnock(key: Buffer, source: string, port: number, flags: number, expiry: number, nonce = randomBytes(NONCE_BYTES)): Buffer {
  const plain = Buffer.alloc(7);
  plain.writeUInt16BE(port, 0);
  plain[2] = flags;
  plain.writeUInt32BE(expiry >>> 0, 3);
  const c = createCipheriv('chacha20-poly1305', key, Buffer.concat([Buffer.alloc(4), nonce]), { authTagLength: TAG_BYTES });
  c.setAAD(Buffer.concat([Buffer.from(AAD_PREFIX), addressBytes(source)]), { plaintextLength: 7 });
  const ct = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([nonce, ct, c.getAuthTag()]);
}

export async function main(argv: readonly string[]): Promise<number> {
  const std = helpOrVersion('xtr-knock', argv, USAGE);
  if (std !== null) return std;
  let o: Options;
  try {
    o = parseArgs(argv);
    if (o.code) {
      if (o.rest.length !== 1) throw new UsageError('--code takes one host');
      if (!o.spans.length || o.keyFile === null || o.open === null) throw new UsageError('--code needs --span, --key-file and --open');
      const bits = spanBits(o.spans);
      if (!Number.isInteger(bits) || bits < 1 || bits > 16) throw new UsageError('the spans must hold a power of two number of ports');
      const host = o.rest[0];
      const family = familyOf(host, o.family);
      const [openPort, openProto] = o.open.split(':');
      const port = Number(openPort);
      if (!/^\d+$/.test(openPort) || port > 65535) throw new UsageError(`--open ${o.open}: PORT[:tcp|:udp]`);
      const flags = openProto === undefined ? 0 : openProto === 'tcp' ? 1 : openProto === 'udp' ? 2 : -1;
      if (flags < 0) throw new UsageError(`--open ${o.open}: protocol must be tcp or udp`);
      let key: Buffer;
      try {
        key = readKeyFile(o.keyFile);
      } catch (e) {
        throw new UsageError((e as Error).message.replace(/^xt_knockcode: /, ''));
      }
      const source = o.source ?? (await sourceFor(host, family));
      const wire = sealKnock(key, source, port, flags, Math.floor(Date.now() / 1000) + o.expiry);
      const ports = encodeSymbols(wire, bits).map((sym) => portOf(o.spans, sym));
      if (o.print) {
        process.stdout.write(ports.join(' ') + '\n');
        return 0;
      }
      const delay = o.delaySet ? o.delay : 2;
      for (let i = 0; i < ports.length; i++) {
        if (o.udp) await sendUdp(host, ports[i], family, Buffer.alloc(0), o.source);
        else await tcpKnock(host, ports[i]);
        if (delay && i < ports.length - 1) await sleep(delay);
      }
      if (o.verbose) process.stdout.write(`${ports.length} knocks to ${host} as ${source}: open ${o.open} for ${o.expiry} s\n`);
      return 0;
    }
    if (o.rest.length < 2) throw new UsageError(o.rest.length === 0 ? '' : 'give a host and at least one port');
    const host = o.rest[0];
    const family = familyOf(host, o.family);
    if (o.spa) {
      if (o.rest.length !== 2) throw new UsageError('--spa takes one host and one port');
      const { port } = parsePort(o.rest[1], true);
      const secret = readSecret(o);
      const source = o.source ?? (await sourceFor(host, family));
      if (familyOf(source, family) !== family) throw new UsageError(`source ${source} and host ${host} are of different families`);
      const minute = o.minute ?? Math.floor(Date.now() / 60000);
      const payload = spaPayload(secret, source, minute);
      if (o.print) {
        process.stdout.write(payload);
        return 0;
      }
      await sendUdp(host, port, family, payload, o.source);
      if (o.verbose) process.stdout.write(`SPA to ${host}:${port}/udp as ${source}, minute ${minute}\n`);
      return 0;
    }
    const ports = o.rest.slice(1).map((w) => parsePort(w, o.udp));
    for (let i = 0; i < ports.length; i++) {
      const { port, udp } = ports[i];
      if (o.verbose) process.stdout.write(`hitting ${udp ? 'udp' : 'tcp'} ${host}:${port}\n`);
      if (udp) await sendUdp(host, port, family, Buffer.alloc(0), o.source);
      else await tcpKnock(host, port);
      if (o.delay && i < ports.length - 1) await sleep(o.delay);
    }
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(e.message ? `xtr-knock: ${e.message}\n${USAGE}` : USAGE);
      return 2;
    }
    process.stderr.write(`xtr-knock: ${(e as Error).message}\n`);
    return 1;
  }
}

const invoked = process.argv[1] ?? '';
if (/xtr-knock(\.ts|\.js)?$/.test(invoked)) {
  quietEpipe();
  main(process.argv.slice(2)).then((code) => process.exit(code));
}
