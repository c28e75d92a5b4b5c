/**
 * `-j SYSRQ` (IPv4 and IPv6), as xtables-addons' libxt_SYSRQ + xt_SYSRQ
 * (revision 1, v1.37 and later): an authenticated UDP request triggers SysRq
 * keys. In an appliance the machine the keys act on is xtr itself
 * (docs/sysrq.md): `s` save rules and state, `b` restart xtr, `o` stop xtr,
 * `u` flush conntrack, `t` status to the log, through
 * services.applianceAction; the host's /proc/sysrq-trigger is written only
 * when the setting `hostTrigger` says so.
 *
 * The request (UDP or UDP-Lite payload):
 *
 *     <keys>,<seqno>,<salt>,<hexdigest>[anything]
 *
 * hexdigest = lowercase hex of HASH("<keys>,<seqno>,<salt>," + dst + "," +
 * password): the request's bytes up to and including the third comma, the
 * packet's destination address (dotted quad; IPv6 fully expanded, eight
 * groups of four hex digits) and the password. The sequence number is one
 * counter shared by every rule and both families: a request is taken only if
 * its seqno is strictly greater (checked before any hashing), and then
 * becomes the counter. Only the digits of the seqno field count.
 *
 * Verdict ACCEPT for a request taken, DROP for every other packet reaching
 * the rule. Without a password every request is refused.
 *
 * Settings (`extensions.SYSRQ` in the config): `password` or `passwordFile`
 * (cut at the first newline, at most 63 bytes), `hash` (any Node crypto hash
 * name; default sha1), `hostTrigger` (false; true = /proc/sysrq-trigger, or
 * a path), `debug` (log why a request was refused, as the module's debug
 * parameter). State: the counter, persisted with the rules (StateSpec
 * save/load) and readable/writable as net/xt_SYSRQ/seqno (the module's
 * /sys/module/xt_SYSRQ/parameters/seqno), and the request counts in
 * net/xt_SYSRQ/stats.
 */
import { createHash, getHashes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Verdict, type PacketContext } from '../xt/packet.js';
import { XtError, type TargetExtension } from '../xt/extension.js';
import type { ApplianceAction, RouterServices } from '../xt/services.js';
import type { StateSpec } from '../xt/state.js';
import { getU16 } from '../dataplane/bytes.js';

const PROTO_UDP = 17;
const PROTO_UDPLITE = 136;
const COMMA = 0x2c;
/** The kernel module's password parameter holds at most 63 bytes. */
const PASSWORD_MAX = 63;
const DEFAULT_HASH = 'sha1';
const DEFAULT_HOST_TRIGGER = '/proc/sysrq-trigger';

/** What each key does to the appliance (docs/sysrq.md). */
export const SYSRQ_ACTIONS: Readonly<Record<string, ApplianceAction>> = {
  s: 'save',
  b: 'restart',
  o: 'stop',
  u: 'flush-conntrack',
  t: 'status',
};

/** Why a packet reaching the rule was refused; each is counted. */
export const REFUSALS = ['malformed', 'no-password', 'old-seqno', 'short-digest', 'bad-digest', 'digest-failure'] as const;
type Refusal = (typeof REFUSALS)[number];

/** The one sequence number and the counts, shared by every SYSRQ rule. */
export interface SysrqState {
  seqno: number;
  accepted: number;
  refused: Record<Refusal, number>;
  /** "No password set" is logged once while the state lives, as the module does once while loaded. */
  warnedNoPassword: boolean;
}

/** The settings as check() read them. */
interface SysrqConfig {
  password: string;
  hash: string;
  digestHexLen: number;
  /** Path written with each key instead of the appliance action, or null. */
  hostTrigger: string | null;
  debug: boolean;
}

export const SEQNO_KEY = 'SYSRQ:seqno';

/** The destination address as it is hashed: dotted quad, or IPv6 fully expanded with leading zeros. */
export function sysrqAddress(pkt: PacketContext): string {
  if (pkt.family === 4) {
    const a = pkt.dst4;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  let s = '';
  for (let w = 0; w < 4; w++) {
    const v = pkt.dst6[w];
    s += `${w ? ':' : ''}${(v >>> 16).toString(16).padStart(4, '0')}:${(v & 0xffff).toString(16).padStart(4, '0')}`;
  }
  return s;
}

/** The source as the module's debug line prints it (IPv6 fully expanded). */
function sourceOf(pkt: PacketContext): string {
  if (pkt.family === 4) {
    const a = pkt.src4;
    return `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`;
  }
  let s = '';
  for (let w = 0; w < 4; w++) {
    const v = pkt.src6[w];
    s += `${w ? ':' : ''}${(v >>> 16).toString(16).padStart(4, '0')}:${(v & 0xffff).toString(16).padStart(4, '0')}`;
  }
  return s;
}

function objectSetting(settings: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const s = settings.SYSRQ;
  if (s === undefined || s === null) return {};
  if (typeof s !== 'object' || Array.isArray(s)) throw new XtError('xt_SYSRQ: settings extensions.SYSRQ must be an object', 1, 'EINVAL');
  return s as Record<string, unknown>;
}

/** Reads the settings once per rule check; a bad setting refuses the rule naming it. */
function readConfig(settings: Readonly<Record<string, unknown>>): SysrqConfig {
  const s = objectSetting(settings);
  const bad = (what: string) => new XtError(`xt_SYSRQ: extensions.SYSRQ.${what}`, 1, 'EINVAL');
  let password = '';
  if (s.password !== undefined && s.passwordFile !== undefined) throw bad('password and passwordFile: give one of them');
  if (s.password !== undefined) {
    if (typeof s.password !== 'string') throw bad('password must be a string');
    password = s.password;
  } else if (s.passwordFile !== undefined) {
    if (typeof s.passwordFile !== 'string') throw bad('passwordFile must be a path');
    try {
      password = readFileSync(s.passwordFile, 'utf8');
    } catch (e) {
      throw bad(`passwordFile ${s.passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  // As the module's parameter: cut at the first newline, so `echo pass > file` works.
  const nl = password.indexOf('\n');
  if (nl >= 0) password = password.slice(0, nl);
  if (Buffer.byteLength(password) > PASSWORD_MAX) throw bad(`password: at most ${PASSWORD_MAX} bytes`);
  const hash = s.hash === undefined ? DEFAULT_HASH : s.hash;
  if (typeof hash !== 'string' || !getHashes().includes(hash.toLowerCase())) throw bad(`hash ${JSON.stringify(hash)}: not a hash name Node's crypto offers (node -p "crypto.getHashes()")`);
  let digestHexLen: number;
  try {
    digestHexLen = createHash(hash).digest().length * 2;
  } catch (e) {
    throw bad(`hash ${hash}: ${(e as Error).message}`);
  }
  let hostTrigger: string | null = null;
  if (s.hostTrigger === true) hostTrigger = DEFAULT_HOST_TRIGGER;
  else if (typeof s.hostTrigger === 'string' && s.hostTrigger !== '') hostTrigger = s.hostTrigger;
  else if (s.hostTrigger !== undefined && s.hostTrigger !== false) throw bad('hostTrigger must be false, true or a path');
  if (s.debug !== undefined && typeof s.debug !== 'boolean') throw bad('debug must be true or false');
  return { password, hash: hash.toLowerCase(), digestHexLen, hostTrigger, debug: s.debug === true };
}

function newState(services: RouterServices): SysrqState {
  const refused = {} as Record<Refusal, number>;
  for (const r of REFUSALS) refused[r] = 0;
  // As the module: the counter starts at the time of day (seconds) when it is created.
  return { seqno: Math.floor(services.wallNow() / 1000), accepted: 0, refused, warnedNoPassword: false };
}

function stateSpec(services: RouterServices): StateSpec<SysrqState> {
  return {
    key: SEQNO_KEY,
    create: () => newState(services),
    proc: {
      path: 'net/xt_SYSRQ/seqno',
      read: (v) => `${v.seqno}\n`,
      write: (v, data) => {
        const t = data.trim();
        if (!/^-?\d+$/.test(t) || !Number.isSafeInteger(Number(t))) throw new XtError(`xt_SYSRQ: seqno ${JSON.stringify(t)}: not an integer`, 1, 'EINVAL');
        v.seqno = Number(t);
      },
    },
    // Persisted so that a restart never takes an old request again (time going backwards at a reboot).
    save: (v) => ({ seqno: v.seqno }),
    load: (v, saved) => {
      const n = (saved as { seqno?: unknown } | null)?.seqno;
      if (typeof n !== 'number' || !Number.isSafeInteger(n)) throw new Error('SYSRQ: saved seqno is not an integer');
      if (n > v.seqno) v.seqno = n;
    },
  };
}

const STATS_KEY = 'SYSRQ:stats';

/** net/xt_SYSRQ/stats: the counts of the shared state (a view of it, nothing of its own). */
function statsSpec(value: SysrqState): StateSpec<SysrqState> {
  return {
    key: STATS_KEY,
    create: () => value,
    proc: {
      path: 'net/xt_SYSRQ/stats',
      read: (v) => `seqno ${v.seqno}\naccepted ${v.accepted}\nrefused ${REFUSALS.reduce((n, r) => n + v.refused[r], 0)}\n${REFUSALS.map((r) => `refused-${r} ${v.refused[r]}\n`).join('')}`,
    },
  };
}

const SYSRQ: TargetExtension<null> = {
  kind: 'target',
  name: 'SYSRQ',
  revision: 1,
  families: [4, 6],
  options: [],
  swallowsUnknownOptions: true,
  parse() {
    return null;
  },
  check(_p, env) {
    const { proto, protoInverted } = env.rule;
    if ((proto !== PROTO_UDP && proto !== PROTO_UDPLITE) || protoInverted) {
      throw new XtError('xt_SYSRQ: only available for UDP and UDP-Lite', 1, 'EINVAL');
    }
    const cfg = readConfig(env.settings);
    const services = env.services;
    const st = env.state.declare(stateSpec(services));
    env.state.declare(statsSpec(st));
    const debug = (line: string) => {
      if (cfg.debug) services.log(7, `xt_SYSRQ: ${line}`);
    };
    const refuse = (why: Refusal): number => {
      st.refused[why]++;
      return Verdict.DROP;
    };
    const trigger = (key: string) => {
      services.log(6, `xt_SYSRQ: SysRq ${key}`);
      if (cfg.hostTrigger !== null) {
        try {
          writeFileSync(cfg.hostTrigger, key);
        } catch (e) {
          services.log(3, `xt_SYSRQ: SysRq ${key}: writing ${cfg.hostTrigger} failed: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        }
        return;
      }
      const action = SYSRQ_ACTIONS[key];
      if (action === undefined || !services.applianceAction(action)) services.log(4, `xt_SYSRQ: SysRq ${key}: no appliance action for this key`);
    };
    return {
      target(pkt: PacketContext): number {
        const p = pkt.proto;
        if ((p !== PROTO_UDP && p !== PROTO_UDPLITE) || pkt.fragmentOffset !== 0 || pkt.l4len < 8) return refuse('malformed');
        const b = pkt.buf;
        const u = pkt.l4off;
        // UDP length, or UDP-Lite's checksum coverage (0 = whole datagram, which upstream underflows on).
        const field = getU16(b, u + 4);
        if (field < 8 || field > pkt.l4len) return refuse('malformed');
        const len = field - 8;
        const start = u + 8;
        debug(`${sourceOf(pkt)}:${pkt.sport} -> :${pkt.dport} len=${len}`);
        if (cfg.password === '') {
          if (!st.warnedNoPassword) {
            st.warnedNoPassword = true;
            services.log(4, 'xt_SYSRQ: No password set');
          }
          return refuse('no-password');
        }
        if (len === 0) return refuse('malformed');
        // Up to the second-to-last byte: the third comma must not be the last byte.
        let commas = 0;
        let seqno = 0;
        let i = 0;
        for (; i < len - 1; i++) {
          const c = b[start + i];
          if (c === COMMA) {
            if (++commas === 3) break;
          } else if (commas === 1 && c >= 0x30 && c <= 0x39) {
            seqno = seqno * 10 + (c - 0x30);
          }
        }
        if (commas < 3) {
          debug('badly formatted request');
          return refuse('malformed');
        }
        // A seqno beyond 2^53 cannot be compared exactly here (upstream wraps at 2^64): refused.
        if (!Number.isSafeInteger(seqno)) {
          debug('badly formatted request');
          return refuse('malformed');
        }
        if (st.seqno >= seqno) {
          debug('old sequence number ignored');
          return refuse('old-seqno');
        }
        const signed = i + 1; // bytes hashed: up to and including the third comma
        let hex: string;
        try {
          const h = createHash(cfg.hash);
          h.update(b.subarray(start, start + signed));
          h.update(`${sysrqAddress(pkt)},${cfg.password}`);
          hex = h.digest('hex');
        } catch {
          services.log(3, 'xt_SYSRQ: digest failure');
          return refuse('digest-failure');
        }
        if (len - signed < cfg.digestHexLen) {
          debug(`Short digest, expected ${hex}`);
          return refuse('short-digest');
        }
        for (let k = 0; k < cfg.digestHexLen; k++) {
          if (b[start + signed + k] !== hex.charCodeAt(k)) {
            debug(`Bad digest, expected ${hex}`);
            return refuse('bad-digest');
          }
        }
        st.seqno = seqno;
        st.accepted++;
        // The new counter reaches the disk before any key acts (appliance
        // actions run in order), not at the next periodic save: a restart or
        // stop the request causes cannot make it replayable.
        services.applianceAction('save');
        for (let k = 0; k < len && b[start + k] !== COMMA; k++) trigger(String.fromCharCode(b[start + k]));
        return Verdict.ACCEPT;
      },
      destroy() {
        env.state.release(STATS_KEY);
        env.state.release(SEQNO_KEY);
      },
    };
  },
  save() {
    return '';
  },
};

export default SYSRQ;
