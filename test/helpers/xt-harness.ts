/**
 * The one test harness for extensions (matches and targets of modules/):
 * the engine's own pieces around a module, so each extension's test is a
 * table of option words, packets and expectations.
 *
 *  - option words are read by the rule parser's getopt code
 *    (readExtensionOptions: `!`, `--opt=value`, prefixes, aliases, nargs), so
 *    a bad word fails with iptables' message, not a test helper's;
 *  - check() runs the kernel's placement checks (table, hooks reaching the
 *    chain, -p) before the extension's own, in a rule context the row names;
 *  - named state is the engine's SharedState with its proc files (ProcFiles):
 *    declare/release with references, proc views read and written by path,
 *    ticks driven by a fake clock;
 *  - services are RecordingServices: emitted packets with their EmitOptions,
 *    dup() and icmpError() calls, log lines; route()/iface() answers set by
 *    the test; monotonic and wall clocks that only move when told; a seeded
 *    random();
 *  - sub-targets (CheckEnv.subTarget) resolve through a registry of the
 *    extensions given, exactly as the engine resolves them.
 *
 * Packets come from bytes through the codec's parsePacket (test/modules-fixtures.ts
 * builds the bytes), never from hand-set context fields.
 */
import { parsePacket } from '../../dataplane/parse.js';
import { Hook, PacketContext, type Family, type InterfaceRef, type TableName } from '../../xt/packet.js';
import type { CheckEnv, Extension, MatchExtension, MatchInstance, ParsedOption, RuleInfo, TargetExtension, TargetInstance } from '../../xt/extension.js';
import { ExtensionRegistry } from '../../modules/registry.js';
import { parseExtensionArgs, readExtensionOptions } from '../../router/netfilter/parse.js';
import { checkPlacement, subTargetOf } from '../../router/netfilter/placement.js';
import { splitLine } from '../../router/netfilter/commands.js';
import { ProcFiles, SharedState } from '../../router/netfilter/state.js';
import { HOOK_CHAIN_NAMES, TABLE_HOOKS } from '../../router/netfilter/model.js';
import { parseProtocol } from '../../router/netfilter/protocols.js';
import { RecordingServices, ifaceFacts, iface } from '../../router/netfilter/testkit.js';

export { RecordingServices, ifaceFacts, FAKE_WALL_START, type EmittedPacket, type DupCall, type IcmpErrorCall } from '../../router/netfilter/testkit.js';

/** Where a rule sits: each field defaults to an IPv4 rule in filter INPUT with no -p. */
export interface Place {
  readonly family?: Family;
  readonly table?: TableName;
  /** A built-in chain name sets the hook mask to its hook; a user chain needs `hooks`. */
  readonly chain?: string;
  /** Hooks the chain is reachable from (overrides what `chain` implies). */
  readonly hooks?: readonly Hook[];
  /** `-p`: a name as iptables takes it ("tcp", "icmpv6", "47") or a number; absent = any. */
  readonly proto?: string | number;
  readonly protoInverted?: boolean;
}

/** Option words: one string split as a shell would ("--log-prefix \"a b\""), or the words themselves. */
export type Words = string | readonly string[];

function wordsOf(w: Words): readonly string[] {
  return typeof w === 'string' ? splitLine(w, 0) : w;
}

/** The RuleInfo and hook mask of a place. */
export function placeOf(place: Place = {}): { rule: RuleInfo; hookMask: number } {
  const family = place.family ?? 4;
  const table = place.table ?? 'filter';
  const chain = place.chain ?? 'INPUT';
  const proto = place.proto === undefined ? 0 : typeof place.proto === 'number' ? place.proto : parseProtocol(place.proto);
  let hooks = place.hooks;
  if (!hooks) {
    const h = HOOK_CHAIN_NAMES.indexOf(chain as (typeof HOOK_CHAIN_NAMES)[number]);
    if (h < 0) throw new Error(`xt-harness: user chain ${chain} needs \`hooks\``);
    if (!TABLE_HOOKS[table].includes(h)) throw new Error(`xt-harness: table ${table} has no chain ${chain}`);
    hooks = [h];
  }
  let hookMask = 0;
  for (const h of hooks) hookMask |= 1 << h;
  return { rule: { family, table, chain, proto, protoInverted: place.protoInverted ?? false }, hookMask };
}

/**
 * Reads one extension's option words with the rule parser's getopt code.
 * Throws NfError with iptables' message ("unknown option ...") on a bad word.
 */
export function options(ext: Extension, words: Words): ParsedOption[] {
  return readExtensionOptions(ext, wordsOf(words));
}

export interface HarnessOptions {
  /** Extension settings of the config file, keyed by extension name. */
  readonly settings?: Readonly<Record<string, unknown>>;
  /** Extensions sub-targets may name (looked up by name and family, as the engine does). */
  readonly extensions?: readonly Extension[];
  /**
   * Named state to share (another harness's, so rules checked by two
   * harnesses meet in one registry), with the proc files it registers in
   * (may be left out for a harness's own state).
   */
  readonly state?: SharedState;
  readonly proc?: ProcFiles;
  /** Seed of the services' random(). */
  readonly seed?: number;
}

/** What the harness checked: every instance, so a test can activate or destroy them as the engine would. */
interface Checked {
  readonly instance: MatchInstance | TargetInstance;
  readonly subTargets: TargetInstance[];
}

export class XtHarness {
  readonly services: RecordingServices;
  readonly proc: ProcFiles;
  readonly state: SharedState;
  readonly registry = new ExtensionRegistry();
  settings: Readonly<Record<string, unknown>>;
  private readonly checked: Checked[] = [];

  constructor(opts: HarnessOptions = {}) {
    this.services = new RecordingServices(opts.seed);
    this.settings = opts.settings ?? {};
    if (opts.state) {
      this.state = opts.state;
      this.proc = opts.proc ?? procOf(opts.state);
    } else {
      this.proc = new ProcFiles();
      this.state = newState(this.proc, this.services);
    }
    for (const e of opts.extensions ?? []) this.registry.add(e, 'xt-harness');
  }

  /**
   * The CheckEnv the engine would hand an extension at `place`. Sub-targets
   * checked through it are recorded on `subTargets` (destroyed with the caller
   * by destroyAll()).
   */
  env(place: Place = {}, subTargets: TargetInstance[] = []): CheckEnv {
    const { rule, hookMask } = placeOf(place);
    const env: CheckEnv = {
      rule,
      hookMask,
      state: this.state,
      proc: this.proc,
      services: this.services,
      settings: this.settings,
      subTarget: subTargetOf(this.registry, () => env, subTargets),
    };
    return env;
  }

  /** Option words -> the extension's params, as `iptables ... -m NAME words` would parse them (errors: NfError, iptables' words). */
  parse<P>(ext: MatchExtension<P> | TargetExtension<P>, words: Words, place: Place = {}): P {
    return parseExtensionArgs(ext, wordsOf(words), placeOf(place).rule).params as P;
  }

  /** Placement checks, then the extension's check, at `place` (errors as the extension throws them). */
  check<P>(ext: MatchExtension<P>, params: P, place?: Place): MatchInstance;
  check<P>(ext: TargetExtension<P>, params: P, place?: Place): TargetInstance;
  check<P>(ext: MatchExtension<P> | TargetExtension<P>, params: P, place: Place = {}): MatchInstance | TargetInstance {
    const subTargets: TargetInstance[] = [];
    const env = this.env(place, subTargets);
    checkPlacement(ext, env.rule, env.hookMask);
    try {
      const instance = ext.kind === 'match' ? ext.check(params, env) : ext.check(params, env);
      this.checked.push({ instance, subTargets });
      return instance;
    } catch (e) {
      for (let k = subTargets.length - 1; k >= 0; k--) subTargets[k].destroy?.();
      throw e;
    }
  }

  /** parse + check of a match. */
  match<P>(ext: MatchExtension<P>, words: Words = '', place: Place = {}): MatchInstance {
    return this.check(ext, this.parse(ext, words, place), place);
  }

  /** parse + check of a target. */
  target<P>(ext: TargetExtension<P>, words: Words = '', place: Place = {}): TargetInstance {
    return this.check(ext, this.parse(ext, words, place), place);
  }

  /**
   * One table row of a match: parse and check `words` at `place`, run the
   * packet built from `bytes` (in the place's first hook) through it.
   */
  matches<P>(ext: MatchExtension<P>, words: Words, bytes: Uint8Array, place: Place = {}): boolean {
    const inst = this.match(ext, words, place);
    return inst.match(this.packet(bytes, { hook: firstHook(place) }));
  }

  /** One table row of a target: its verdict (or XT_CONTINUE) for the packet built from `bytes`. */
  verdict<P>(ext: TargetExtension<P>, words: Words, bytes: Uint8Array, place: Place = {}): number {
    const inst = this.target(ext, words, place);
    return inst.target(this.packet(bytes, { hook: firstHook(place) }));
  }

  /** Runs activate() of everything checked so far (the rule set went live). */
  activateAll(): void {
    for (const c of this.checked) {
      for (const s of c.subTargets) s.activate?.();
      c.instance.activate?.();
    }
  }

  /** Destroys everything checked so far, newest first, sub-targets after their caller (the rules went away). */
  destroyAll(): void {
    for (const c of this.checked.splice(0).reverse()) {
      c.instance.destroy?.();
      for (let k = c.subTargets.length - 1; k >= 0; k--) c.subTargets[k].destroy?.();
    }
  }

  /**
   * A packet from its IP bytes (IPv4 or IPv6) through the codec, at the
   * services' clock, in `hook`, with the interfaces named. `headroom` bytes
   * precede the packet in the buffer (room for an Ethernet header).
   */
  packet(bytes: Uint8Array, o: { hook?: Hook; inIf?: string | InterfaceRef | null; outIf?: string | InterfaceRef | null; headroom?: number; now?: number } = {}): PacketContext {
    const headroom = o.headroom ?? 0;
    const ctx = new PacketContext();
    const buf = Buffer.alloc(headroom + bytes.length);
    buf.set(bytes, headroom);
    const reason = parsePacket(ctx, buf, headroom, bytes.length);
    if (reason !== 0) throw new Error(`xt-harness: the codec refuses this packet (drop reason ${reason})`);
    ctx.now = o.now ?? this.services.clock;
    ctx.hook = o.hook ?? Hook.INPUT;
    const ref = (x: string | InterfaceRef | null | undefined, index: number) => (x == null ? null : typeof x === 'string' ? (this.services.ifaces.get(x)?.ref ?? iface(x, index)) : x);
    ctx.inIf = ref(o.inIf, 1);
    ctx.outIf = ref(o.outIf, 2);
    return ctx;
  }

  /** The text of a proc file (e.g. "net/xt_recent/DEFAULT"); throws if none is registered there. */
  readProc(path: string): string {
    const f = this.proc.get(path);
    if (!f) throw new Error(`xt-harness: no proc file ${path} (have: ${this.proc.paths().join(', ') || 'none'})`);
    return f.read();
  }

  /** Writes to a proc file as `echo DATA > /proc/PATH` would (the extension's XtError on bad data). */
  writeProc(path: string, data: string): void {
    const f = this.proc.get(path);
    if (!f) throw new Error(`xt-harness: no proc file ${path}`);
    if (!f.write) throw new Error(`xt-harness: proc file ${path} is read-only`);
    f.write(data);
  }

  /** Moves the fake clocks by `ms` and runs the state ticks that fell due. */
  advance(ms: number): void {
    this.services.advance(ms);
    this.tick();
  }

  /** Runs the state ticks due at the fake monotonic clock. */
  tick(): void {
    this.state.runTicks(this.services.clock);
  }

  /** Registers an interface for services.iface() and packet(): a TUN with these addresses unless `more` says otherwise. */
  addIface(name: string, addrs: readonly string[] = [], more: Parameters<typeof ifaceFacts>[2] = {}): void {
    this.services.ifaces.set(name, ifaceFacts(name, addrs, { ref: iface(name, this.services.ifaces.size + 1), ...more }));
  }
}

function firstHook(place: Place): Hook {
  const mask = placeOf(place).hookMask;
  for (let h = 0; h < 5; h++) if (mask & (1 << h)) return h as Hook;
  return Hook.INPUT;
}

const procs = new WeakMap<SharedState, ProcFiles>();

function newState(proc: ProcFiles, services: RecordingServices): SharedState {
  const state = new SharedState(proc, { now: () => services.now(), wallNow: () => services.wallNow() }, (level, line) => services.log(level, line));
  procs.set(state, proc);
  return state;
}

function procOf(state: SharedState): ProcFiles {
  const p = procs.get(state);
  if (!p) throw new Error('xt-harness: give the proc files of a shared state not made by a harness');
  return p;
}
