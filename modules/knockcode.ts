/**
 * `-m knockcode`: encrypted knocks over a port span (issue 11 §6; seed 004's
 * knockdaemon idea with an AEAD cipher). Not an upstream extension: xtr's
 * own, documented in docs/knocking.md "Encrypted knocks".
 *
 * The client encrypts (port to open, protocol flags, expiry) under a shared
 * 32-byte key with ChaCha20-Poly1305, binding its own source address as
 * associated data, and sends the 31 wire bytes (8-byte random nonce, 7 bytes
 * of ciphertext, 16-byte tag) as a sequence of knocks: each knock's
 * destination port, taken as its index within the configured span(s) (a
 * power-of-two number of ports, non-contiguous ranges allowed), carries
 * log2(span) bits, most significant first. The router keeps a queue of
 * symbols per source; when a queue is full it decrypts:
 *  - a wrong key, a knock sent from another address (the address is in the
 *    AAD), a lost or reordered knock: the tag fails, nothing opens;
 *  - an expiry in the past or further than --max-open ahead: refused;
 *  - a nonce seen before (until its expiry): refused as a replay;
 *  - else the source is granted exactly the encoded port (and protocol) until
 *    the expiry; `-m knockcode --name N --granted` matches its packets to it.
 *
 * Message (before encryption, 7 bytes): port u16 BE, flags u8 (bit 0 TCP,
 * bit 1 UDP; 0 = both), expiry u32 BE (unix seconds). AEAD nonce = 4 zero
 * bytes || the 8 random bytes. AAD = "xtr-knockcode/1" || source address
 * (4 bytes IPv4, 16 bytes IPv6, network order).
 */
import { createDecipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Family, PacketContext } from '../xt/packet.js';
import { XtError, type CheckEnv, type MatchExtension } from '../xt/extension.js';
import type { StateSpec } from '../xt/state.js';
import { ipv4ToString, ipv6ToString } from '../dataplane/addr.js';
import { parseUint } from './lib/numbers.js';

const TCP = 6;
const UDP = 17;
export const WIRE_BYTES = 31;
export const NONCE_BYTES = 8;
export const TAG_BYTES = 16;
export const AAD_PREFIX = 'xtr-knockcode/1';
const DEFAULT_TIME = 5;
const DEFAULT_MAX_OPEN = 3600;
const DEFAULT_MAX_SOURCES = 16384;

export interface KnockcodeParams {
  name: string;
  /** [lo, hi] ranges in order; their total size is a power of two. */
  spans: [number, number][];
  keyFile: string | null;
  time: number;
  maxOpen: number;
  check: boolean;
}

/** Bits per knock for spans of this total size. */
export function spanBits(spans: readonly [number, number][]): number {
  const size = spans.reduce((a, [lo, hi]) => a + hi - lo + 1, 0);
  return Math.log2(size);
}

/** Knocks a message takes with `bits` per knock. */
export function symbolCount(bits: number): number {
  return Math.ceil((WIRE_BYTES * 8) / bits);
}

/** Port -> symbol (index within the spans), -1 outside them. */
function symbolOf(spans: readonly [number, number][], port: number): number {
  let base = 0;
  for (const [lo, hi] of spans) {
    if (port >= lo && port <= hi) return base + port - lo;
    base += hi - lo + 1;
  }
  return -1;
}

/** Bytes -> symbols (big-endian bit stream, last symbol zero-padded): what the client sends. */
export function encodeSymbols(bytes: Uint8Array, bits: number): number[] {
  const out: number[] = [];
  let acc = 0;
  let n = 0;
  for (const b of bytes) {
    acc = (acc << 8) | b;
    n += 8;
    while (n >= bits) {
      out.push((acc >>> (n - bits)) & ((1 << bits) - 1));
      n -= bits;
    }
    acc &= (1 << n) - 1;
  }
  if (n > 0) out.push((acc << (bits - n)) & ((1 << bits) - 1));
  return out;
}

/** Symbols -> the first WIRE_BYTES bytes. */
function decodeSymbols(symbols: Uint16Array, count: number, bits: number, out: Buffer): void {
  let acc = 0;
  let n = 0;
  let k = 0;
  for (let i = 0; i < count && k < WIRE_BYTES; i++) {
    acc = ((acc << bits) | symbols[i]) >>> 0;
    n += bits;
    while (n >= 8 && k < WIRE_BYTES) {
      out[k++] = (acc >>> (n - 8)) & 0xff;
      n -= 8;
    }
    acc &= (1 << n) - 1;
  }
}

/** Symbol -> port (the client's side). */
export function portOf(spans: readonly [number, number][], symbol: number): number {
  let base = 0;
  for (const [lo, hi] of spans) {
    const size = hi - lo + 1;
    if (symbol < base + size) return lo + symbol - base;
    base += size;
  }
  throw new RangeError(`symbol ${symbol} outside the span`);
}

/** The key file: its first line, 64 hex digits (32 bytes). */
export function readKeyFile(path: string): Buffer {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new XtError(`xt_knockcode: --key-file ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 1, 'ENOENT');
  }
  const line = text.split('\n')[0].trim();
  if (!/^[0-9a-fA-F]{64}$/.test(line)) throw new XtError(`xt_knockcode: --key-file ${path}: the first line must be 64 hex digits (a 32-byte key)`, 1, 'EINVAL');
  return Buffer.from(line, 'hex');
}

interface Queue {
  readonly symbols: Uint16Array;
  n: number;
  /** Monotonic seconds of the last knock. */
  last: number;
}
interface Grant {
  port: number;
  flags: number;
  /** Unix seconds. */
  expiry: number;
}
class CodeTable {
  readonly queues = new Map<number | string, Queue>();
  readonly grants = new Map<number | string, Grant[]>();
  /** Nonce (hex) -> expiry (unix seconds): refused until then. */
  readonly replay = new Map<string, number>();
  readonly stats = { opened: 0, failed: 0, refused: 0 };
  constructor(readonly maxSources: number) {}
}

function keyOf(pkt: PacketContext): number | string {
  return pkt.family === 4 ? pkt.src4 : `${pkt.src6[0]}:${pkt.src6[1]}:${pkt.src6[2]}:${pkt.src6[3]}`;
}

function keyText(key: number | string): string {
  if (typeof key === 'number') return ipv4ToString(key);
  return ipv6ToString(Uint32Array.from(key.split(':').map(Number)));
}

function parseSpan(v: string): [number, number] {
  const m = /^(\d+)(?::(\d+))?$/.exec(v);
  const lo = m ? parseUint(m[1], 65535) : -1;
  const hi = m ? (m[2] === undefined ? lo : parseUint(m[2], 65535)) : -1;
  if (lo < 0 || hi < 0 || lo > hi) throw new XtError(`knockcode: --span "${v}": a port range LO:HI (0..65535, LO <= HI)`);
  return [lo, hi];
}

const knockcode: MatchExtension<KnockcodeParams> = {
  kind: 'match',
  name: 'knockcode',
  families: [4, 6],
  options: [
    { name: 'name', arg: 'required' },
    { name: 'span', arg: 'required' },
    { name: 'key-file', arg: 'required' },
    { name: 'time', arg: 'required' },
    { name: 'max-open', arg: 'required' },
    { name: 'granted', arg: 'none' },
  ],
  parse(opts, rule) {
    const p: KnockcodeParams = { name: '', spans: [], keyFile: null, time: DEFAULT_TIME, maxOpen: DEFAULT_MAX_OPEN, check: false };
    const once = new Set<string>();
    for (const o of opts) {
      if (o.name !== 'span' && once.has(o.name)) throw new XtError(`knockcode: option "--${o.name}" can only be used once.\n`);
      once.add(o.name);
      const v = o.value ?? '';
      if (o.name === 'name') p.name = v;
      else if (o.name === 'span') p.spans.push(parseSpan(v));
      else if (o.name === 'key-file') p.keyFile = v;
      else if (o.name === 'granted') p.check = true;
      else {
        const n = parseUint(v, 0xffffffff);
        if (n <= 0) throw new XtError(`knockcode: Bad value for "--${o.name}" option: "${v}"\n`);
        if (o.name === 'time') p.time = n;
        else p.maxOpen = n;
      }
    }
    if (!p.name || p.name.includes('/')) throw new XtError('knockcode: --name NAME is required (no "/")\n');
    if (p.check) {
      if (p.spans.length || p.keyFile !== null) throw new XtError('knockcode: --granted takes only --name\n');
      return p;
    }
    if (rule.proto !== TCP && rule.proto !== UDP) throw new XtError("knockcode: needs `-p tcp' or `-p udp'\n");
    if (!p.spans.length || p.keyFile === null) throw new XtError('knockcode: give --span and --key-file (or --granted)\n');
    const bits = spanBits(p.spans);
    if (!Number.isInteger(bits) || bits < 1 || bits > 16) throw new XtError('knockcode: the spans must hold a power of two number of ports (2..65536)\n');
    for (let i = 0; i < p.spans.length; i++) {
      for (let j = i + 1; j < p.spans.length; j++) {
        if (p.spans[i][0] <= p.spans[j][1] && p.spans[j][0] <= p.spans[i][1]) throw new XtError('knockcode: spans overlap\n');
      }
    }
    return p;
  },
  check(p: KnockcodeParams, env: CheckEnv) {
    const s = (env.settings.knockcode ?? {}) as Record<string, unknown>;
    const maxSources = typeof s.max_sources === 'number' && Number.isInteger(s.max_sources) && s.max_sources > 0 ? s.max_sources : DEFAULT_MAX_SOURCES;
    const services = env.services;
    const wallS = () => Math.floor(services.wallNow() / 1000);
    const spec: StateSpec<CodeTable> = {
      key: `knockcode:${p.name}`,
      create: () => new CodeTable(maxSources),
      limit: { max: maxSources, eviction: 'oldest partial knock queue; grants never (new sources ignored)', count: (t) => t.queues.size + t.grants.size },
      proc: {
        path: `net/xt_knockcode/${p.name}`,
        read: (t) => {
          let out = '';
          const now = wallS();
          for (const [k, list] of t.grants) for (const g of list) out += `src=${keyText(k)} port=${g.port} proto=${g.flags === 1 ? 'tcp' : g.flags === 2 ? 'udp' : 'any'} expires_in=${Math.max(0, g.expiry - now)}\n`;
          for (const [k, q] of t.queues) out += `src=${keyText(k)} queued=${q.n}\n`;
          return out;
        },
      },
      save: (t) => ({ grants: [...t.grants].map(([k, g]) => [k, g]), replay: [...t.replay] }),
      load: (t, saved) => {
        const v = saved as { grants?: [number | string, Grant[]][]; replay?: [string, number][] };
        for (const [k, g] of v.grants ?? []) if (Array.isArray(g)) t.grants.set(k, g.filter((x) => typeof x?.port === 'number' && typeof x.expiry === 'number'));
        for (const [n, e] of v.replay ?? []) if (typeof n === 'string' && typeof e === 'number') t.replay.set(n, e);
      },
      tick: {
        everyMs: 1000,
        run: (t, now) => {
          const w = wallS();
          const nowS = Math.floor(now / 1000);
          for (const [k, list] of t.grants) {
            const left = list.filter((g) => g.expiry > w);
            if (left.length) t.grants.set(k, left);
            else t.grants.delete(k);
          }
          for (const [n, e] of t.replay) if (e <= w) t.replay.delete(n);
          for (const [k, q] of t.queues) if (nowS > q.last + p.time) t.queues.delete(k);
        },
      },
    };
    const t = env.state.declare(spec);
    const destroy = () => env.state.release(spec.key);
    if (p.check) {
      return {
        match: (pkt: PacketContext) => {
          if (pkt.proto !== TCP && pkt.proto !== UDP) return false;
          const list = t.grants.get(keyOf(pkt));
          if (list === undefined) return false;
          const now = wallS();
          const flag = pkt.proto === TCP ? 1 : 2;
          for (const g of list) if (g.port === pkt.dport && (g.flags === 0 || g.flags & flag) && g.expiry > now) return true;
          return false;
        },
        destroy,
      };
    }
    const key = readKeyFile(p.keyFile!);
    const bits = spanBits(p.spans);
    const need = symbolCount(bits);
    const wire = Buffer.alloc(WIRE_BYTES);
    const report = (what: string, pkt: PacketContext, extra: Record<string, string | number>) => {
      if (what === 'open') t.stats.opened++;
      else if (what === 'failed') t.stats.failed++;
      else t.stats.refused++;
      services.event(`knockcode.${what}`, { name: p.name, ip: pkt.family === 4 ? ipv4ToString(pkt.src4) : ipv6ToString(pkt.src6), family: pkt.family, ...extra });
    };
    const decode = (pkt: PacketContext, q: Queue): void => {
      decodeSymbols(q.symbols, need, bits, wire);
      const src = pkt.family === 4 ? Buffer.alloc(4) : Buffer.alloc(16);
      if (pkt.family === 4) src.writeUInt32BE(pkt.src4 >>> 0);
      else for (let i = 0; i < 4; i++) src.writeUInt32BE(pkt.src6[i] >>> 0, i * 4);
      const nonce = Buffer.concat([Buffer.alloc(4), wire.subarray(0, NONCE_BYTES)]);
      let plain: Buffer;
      try {
        const d = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_BYTES });
        d.setAAD(Buffer.concat([Buffer.from(AAD_PREFIX), src]), { plaintextLength: 7 });
        d.setAuthTag(wire.subarray(NONCE_BYTES + 7));
        plain = Buffer.concat([d.update(wire.subarray(NONCE_BYTES, NONCE_BYTES + 7)), d.final()]);
      } catch {
        report('failed', pkt, { reason: 'decrypt' });
        return;
      }
      const port = plain.readUInt16BE(0);
      const flags = plain[2] & 3;
      const expiry = plain.readUInt32BE(3);
      const now = wallS();
      if (expiry <= now || expiry > now + p.maxOpen) {
        report('refused', pkt, { reason: 'expiry', port });
        return;
      }
      const nonceHex = wire.toString('hex', 0, NONCE_BYTES);
      if (t.replay.has(nonceHex)) {
        report('refused', pkt, { reason: 'replay', port });
        return;
      }
      t.replay.set(nonceHex, expiry);
      const k = keyOf(pkt);
      const list = t.grants.get(k) ?? [];
      list.push({ port, flags, expiry });
      t.grants.set(k, list);
      report('open', pkt, { port, proto: flags === 1 ? 'tcp' : flags === 2 ? 'udp' : 'any', expiry });
    };
    return {
      match: (pkt: PacketContext) => {
        if ((pkt.proto !== TCP && pkt.proto !== UDP) || (pkt.isFragment && pkt.fragmentOffset !== 0)) return false;
        const sym = symbolOf(p.spans, pkt.dport);
        if (sym < 0) return false;
        const k = keyOf(pkt);
        const nowS = Math.floor(pkt.now / 1000);
        let q = t.queues.get(k);
        if (q !== undefined && nowS > q.last + p.time) {
          t.queues.delete(k);
          q = undefined;
        }
        if (q === undefined) {
          if (t.queues.size >= t.maxSources) {
            for (const oldest of t.queues.keys()) {
              t.queues.delete(oldest);
              break;
            }
          }
          q = { symbols: new Uint16Array(need), n: 0, last: nowS };
          t.queues.set(k, q);
        }
        q.symbols[q.n++] = sym;
        q.last = nowS;
        if (q.n === need) {
          t.queues.delete(k);
          decode(pkt, q);
        }
        return false;
      },
      destroy,
    };
  },
  save(p) {
    if (p.check) return ` --name ${p.name} --granted`;
    return ` --name ${p.name}${p.spans.map(([lo, hi]) => ` --span ${lo === hi ? lo : `${lo}:${hi}`}`).join('')} --key-file ${p.keyFile} --time ${p.time} --max-open ${p.maxOpen}`;
  },
};

export default knockcode;
