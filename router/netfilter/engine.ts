/**
 * The netfilter engine: IPv4 and IPv6 rule sets, the kernel's hook/table
 * order, and transactions that replace a rule set atomically.
 *
 * Hook order (kernel priorities):
 *   PREROUTING  raw(-300), conntrack(-200), mangle(-150), nat(-100)
 *   INPUT       mangle(-150), filter(0), security(50), nat(100), confirm(last)
 *   FORWARD     mangle(-150), filter(0), security(50)
 *   OUTPUT      raw(-300), conntrack(-200), mangle(-150), nat(-100), filter(0), security(50)
 *   POSTROUTING mangle(-150), nat(100), rawpost(last, xtables-addons), confirm(last)
 * nat chains see only the first packet of a connection (ctState NEW, its
 * manip not yet decided), as in the kernel where later packets follow the
 * NAT binding; conntrack's nat() follows each nat slot (the binding applied
 * to every packet, the null binding for a first packet no rule bound).
 *
 * Every change goes through a transaction: copy the affected tables, apply
 * the change, validate (chains exist, no loops reachable from a built-in
 * chain, targets/matches allowed in the table and every hook that reaches
 * the rule), check extensions (new instances acquire state first), compile,
 * then swap, activate the new instances, and only then destroy what the old
 * set held. Any error leaves
 * the running set untouched.
 */
import { Hook, Verdict, type Family, type PacketContext } from '../../xt/packet.js';
import type { CheckEnv, MatchInstance, RouterServices, TargetInstance } from '../../xt/extension.js';
import { XT_CONTINUE } from '../../xt/extension.js';
import type { ExtensionRegistry } from '../../modules/registry.js';
import { Action, compileChainSteps, type CompiledChain } from './compile.js';
import { KERNEL, kernelError, toNfError } from './errors.js';
import { checkPlacement, subTargetOf } from './placement.js';
import { FamilyRules, HOOK_CHAIN_NAMES, TABLE_NAMES, type Rule, type RuleInstances, type Table, type XtrTable } from './model.js';
import { ProcFiles, SharedState } from './state.js';
import { RuleSetChanged, runSteps, type Steps } from './slices.js';

/** What the engine needs from connection tracking (router/conntrack.ts Conntrack satisfies it). */
export interface ConntrackHooks {
  /** Sets pkt.ct / pkt.ctState; returns Verdict.DROP when the packet must be dropped (table full). */
  in(pkt: PacketContext): number;
  /** Commits a new flow of an accepted packet; Verdict.DROP when a translated flow's reply tuple was taken meanwhile (insert_failed). */
  confirm(pkt: PacketContext): number | void;
  /**
   * NAT after the nat table's slot (router/conntrack/nat.ts point 3): the
   * null binding of a first packet no nat rule bound, and the rewrite of
   * every packet of a translated flow. Verdict.DROP when it cannot be rewritten.
   */
  nat?(hook: Hook, pkt: PacketContext): number;
}

/**
 * One family's part of a transaction: `change` edits copies of `tables`; a
 * generator function may yield between pieces of its work (slices.ts).
 */
export interface TransactionPart {
  family: Family;
  tables: readonly XtrTable[];
  change: (rules: FamilyRules) => void | Steps<void>;
}

export interface NetfilterOptions {
  registry: ExtensionRegistry;
  services: RouterServices;
  conntrack?: ConntrackHooks | null;
  /** Extension settings (config file), keyed by extension name. */
  settings?: Readonly<Record<string, unknown>>;
  /** Called after every committed change (persistence hooks in here). */
  onChange?: () => void;
}

class CompiledTable {
  /** Built-in chain per hook (null where the table has none). */
  readonly entry: (CompiledChain | null)[] = [null, null, null, null, null];
  constructor(readonly model: Table) {}
}

class CompiledFamily {
  constructor(
    readonly raw: CompiledTable,
    readonly mangle: CompiledTable,
    readonly nat: CompiledTable,
    readonly filter: CompiledTable,
    readonly rawpost: CompiledTable,
    readonly security: CompiledTable,
    /** Some rule of this family uses an extension that needs conntrack (see conntrackInUse). */
    readonly ctInUse: boolean,
  ) {}
}

const CT_NEW = 2; // CtState.NEW
/** IPS_SRC_NAT_DONE / IPS_DST_NAT_DONE (xt/conn.ts ConnStatus) by hook: the manip a hook's nat chains decide. */
const NAT_DONE_BY_HOOK = [1 << 8, 1 << 7, 0, 1 << 8, 1 << 7];

/**
 * The nat chains see a flow's first packet once per manip (nf_nat_inet_fn:
 * `!nf_nat_initialized(ct, maniptype)`), not every NEW packet: a second
 * unanswered UDP datagram follows the binding its first one got.
 */
function natChainsWanted(pkt: PacketContext, hook: Hook): boolean {
  if (pkt.ctState !== CT_NEW) return false;
  const c = pkt.ct;
  return c === null || (c.status & NAT_DONE_BY_HOOK[hook]) === 0;
}

/** Deepest jump nesting times re-entrancy (a target emitting a packet that traverses a hook again). */
const STACK_SIZE = 8192;

export class Netfilter {
  readonly registry: ExtensionRegistry;
  readonly proc = new ProcFiles();
  /** Extensions' named state (xt/state.ts): lifecycle, proc views, persistence, ticks, limits. */
  readonly state: SharedState;
  private readonly services: RouterServices;
  private settings: Readonly<Record<string, unknown>>;
  private conntrack: ConntrackHooks | null;
  onChange: (() => void) | null;

  private rules4 = FamilyRules.empty(4);
  private rules6 = FamilyRules.empty(6);
  private c4: CompiledFamily;
  private c6: CompiledFamily;

  private readonly stackChain: (CompiledChain | null)[] = new Array(STACK_SIZE).fill(null);
  private readonly stackPos = new Int32Array(STACK_SIZE);
  private sp = 0;

  /**
   * Config reload (router/reload.ts): the settings rules are checked with from now on. Rules
   * already loaded keep what their check derived; the appliance re-loads the rule files after this.
   */
  setSettings(settings: Readonly<Record<string, unknown>>): void {
    this.settings = settings;
  }

  settingsInUse(): Readonly<Record<string, unknown>> {
    return this.settings;
  }

  constructor(opts: NetfilterOptions) {
    this.registry = opts.registry;
    this.services = opts.services;
    this.settings = opts.settings ?? {};
    this.conntrack = opts.conntrack ?? null;
    this.onChange = opts.onChange ?? null;
    const services = opts.services;
    this.state = new SharedState(
      this.proc,
      // Test doubles of the services may lack wallNow; the downtime then uses the real wall clock.
      { now: () => services.now(), wallNow: () => (typeof services.wallNow === 'function' ? services.wallNow() : Date.now()) },
      (level, line) => services.log(level, line),
    );
    this.c4 = this.compileFamily(this.rules4);
    this.c6 = this.compileFamily(this.rules6);
  }

  /** Connection tracking may be created after the engine (main.ts builds the router first). */
  setConntrack(ct: ConntrackHooks | null): void {
    this.conntrack = ct;
  }

  rules(family: Family): FamilyRules {
    return family === 4 ? this.rules4 : this.rules6;
  }

  /** Marks a table as in use (iptables-save lists tables in use, newest first, like /proc/net/ip_tables_names). */
  touch(family: Family, table: XtrTable): void {
    const loaded = this.rules(family).loaded;
    if (!loaded.includes(table)) loaded.unshift(table);
  }

  /**
   * Whether connection tracking is in use for `family`: some loaded rule
   * (reachable or not) uses an extension marked needsConntrack, as in the
   * kernel, where such a rule's checkentry enables conntrack and
   * defragmentation in the namespace and the last one going disables them.
   * Only then are packets tracked, and the router reassembles fragments
   * before PREROUTING and OUTPUT. Fixed at commit time.
   */
  conntrackInUse(family: Family): boolean {
    return (family === 4 ? this.c4 : this.c6).ctInUse;
  }

  // ---------------------------------------------------------------- packets

  /** The netfilter entry point the router calls at each hook. */
  hook(hook: Hook, pkt: PacketContext): Verdict {
    const f = pkt.family === 4 ? this.c4 : this.c6;
    pkt.hook = hook;
    pkt.hotdrop = false;
    let v: number;
    switch (hook) {
      case Hook.PREROUTING:
        if ((v = this.runTable(f.raw, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (f.ctInUse && this.conntrack !== null && this.conntrack.in(pkt) === Verdict.DROP) return Verdict.DROP;
        if ((v = this.runTable(f.mangle, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (natChainsWanted(pkt, hook) && (v = this.runTable(f.nat, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (f.ctInUse && this.conntrack !== null && this.conntrack.nat !== undefined && this.conntrack.nat(hook, pkt) === Verdict.DROP) return Verdict.DROP;
        return Verdict.ACCEPT;
      case Hook.INPUT:
        if ((v = this.runTable(f.mangle, hook, pkt)) !== Verdict.ACCEPT) return v;
        if ((v = this.runTable(f.filter, hook, pkt)) !== Verdict.ACCEPT) return v;
        if ((v = this.runTable(f.security, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (natChainsWanted(pkt, hook) && (v = this.runTable(f.nat, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (f.ctInUse && this.conntrack !== null) {
          if (this.conntrack.nat !== undefined && this.conntrack.nat(hook, pkt) === Verdict.DROP) return Verdict.DROP;
          if (this.conntrack.confirm(pkt) === Verdict.DROP) return Verdict.DROP;
        }
        return Verdict.ACCEPT;
      case Hook.FORWARD:
        if ((v = this.runTable(f.mangle, hook, pkt)) !== Verdict.ACCEPT) return v;
        if ((v = this.runTable(f.filter, hook, pkt)) !== Verdict.ACCEPT) return v;
        return this.runTable(f.security, hook, pkt) as Verdict;
      case Hook.OUTPUT:
        if ((v = this.runTable(f.raw, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (f.ctInUse && this.conntrack !== null && this.conntrack.in(pkt) === Verdict.DROP) return Verdict.DROP;
        if ((v = this.runTable(f.mangle, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (natChainsWanted(pkt, hook) && (v = this.runTable(f.nat, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (f.ctInUse && this.conntrack !== null && this.conntrack.nat !== undefined && this.conntrack.nat(hook, pkt) === Verdict.DROP) return Verdict.DROP;
        if ((v = this.runTable(f.filter, hook, pkt)) !== Verdict.ACCEPT) return v;
        return this.runTable(f.security, hook, pkt) as Verdict;
      case Hook.POSTROUTING:
        if ((v = this.runTable(f.mangle, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (natChainsWanted(pkt, hook) && (v = this.runTable(f.nat, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (f.ctInUse && this.conntrack !== null && this.conntrack.nat !== undefined && this.conntrack.nat(hook, pkt) === Verdict.DROP) return Verdict.DROP;
        if ((v = this.runTable(f.rawpost, hook, pkt)) !== Verdict.ACCEPT) return v;
        if (f.ctInUse && this.conntrack !== null && this.conntrack.confirm(pkt) === Verdict.DROP) return Verdict.DROP;
        return Verdict.ACCEPT;
      default:
        return Verdict.ACCEPT;
    }
  }

  /** ipt_do_table: walk the hook's built-in chain with a jump stack. */
  /**
   * A match or target that throws (a bug: the kernel's cannot) must not take the router down
   * or leave the jump stack half used: the packet is dropped and the fault logged, rate-limited.
   */
  private runTable(t: CompiledTable, hook: Hook, pkt: PacketContext): number {
    const entry = t.entry[hook];
    if (entry === null) return Verdict.ACCEPT;
    const base = this.sp;
    try {
      return this.walk(entry, pkt, base);
    } catch (e) {
      for (let k = base; k < STACK_SIZE && this.stackChain[k] !== null; k++) this.stackChain[k] = null;
      this.sp = base;
      this.reportFault(t.model.name, HOOK_CHAIN_NAMES[hook], e);
      return Verdict.DROP;
    }
  }

  private faults = 0;
  private faultWindowStart = 0;

  private reportFault(table: string, chain: string, e: unknown): void {
    const now = this.services.now();
    if (now - this.faultWindowStart > 1000) {
      this.faultWindowStart = now;
      this.faults = 0;
    }
    if (++this.faults <= 5) {
      this.services.log(3, `xtr netfilter: extension fault in ${table}/${chain}, packet dropped: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private walk(entry: CompiledChain, pkt: PacketContext, base: number): number {
    let sp = base;
    let chain: CompiledChain = entry;
    let pos = 0;
    let verdict: number = Verdict.ACCEPT;
    for (;;) {
      // ipt_do_table's `while (!acpar.hotdrop)`: a match that hot-dropped ends the walk at
      // once; it returned false, so its rule was not counted.
      if (pkt.hotdrop) break;
      const idx = chain.next(pkt, pos);
      let action: Action;
      let r = null;
      if (idx < 0) {
        action = Action.RETURN;
      } else {
        r = chain.rules[idx];
        if (!r.test(pkt)) {
          pos = idx + 1;
          continue;
        }
        r.rule.pkts++;
        // The length now, as ipt_do_table counts skb->len: a target earlier in the walk may have grown the packet (TCPMSS).
        r.rule.bytes += pkt.l3len;
        action = r.action;
      }
      if (action === Action.RETURN) {
        if (sp > base && chain.policy < 0) {
          sp--;
          chain = this.stackChain[sp]!;
          this.stackChain[sp] = null;
          pos = this.stackPos[sp];
          continue;
        }
        // End of (or RETURN in) the built-in chain, or of a chain reached by -g from it: the policy.
        entry.model.pkts++;
        entry.model.bytes += pkt.l3len;
        verdict = entry.policy;
        break;
      }
      switch (action) {
        case Action.ACCEPT:
          verdict = Verdict.ACCEPT;
          break;
        case Action.DROP:
          verdict = Verdict.DROP;
          break;
        case Action.JUMP:
          if (sp >= STACK_SIZE) {
            verdict = Verdict.DROP;
            break;
          }
          this.stackChain[sp] = chain;
          this.stackPos[sp] = idx + 1;
          sp++;
          chain = r!.jump!;
          pos = 0;
          continue;
        case Action.GOTO:
          chain = r!.jump!;
          pos = 0;
          continue;
        case Action.TARGET: {
          this.sp = sp;
          const v = r!.target!.target(pkt);
          if (v === XT_CONTINUE) {
            pos = idx + 1;
            continue;
          }
          verdict = v;
          break;
        }
        default:
          pos = idx + 1;
          continue;
      }
      break;
    }
    for (let k = base; k < sp; k++) this.stackChain[k] = null;
    this.sp = base;
    return pkt.hotdrop ? Verdict.DROP : verdict;
  }

  // ------------------------------------------------------------ transactions

  /**
   * Runs `change` on copies of `tables` of `family` and commits the result
   * atomically; throws (leaving everything as it was) on any error.
   */
  transaction(family: Family, tables: readonly XtrTable[], change: (rules: FamilyRules) => void, opts: { dryRun?: boolean } = {}): void {
    this.commitMany([{ family, tables, change }], opts);
  }

  /** Several families at once (restoreState): all commit or none. */
  commitMany(parts: readonly TransactionPart[], opts: { dryRun?: boolean } = {}): void {
    runSteps(this.commitSteps(parts, opts));
  }

  /**
   * The transaction as steps that may pause (slices.ts): after each change
   * step (a generator `change` yields, e.g. per restore line), each rule
   * checked and each rule's compiled test built. The swap and what follows
   * it is one step. Run sliced, a commit that finds the rule set of a family
   * replaced since it started throws RuleSetChanged (nothing committed).
   */
  *commitSteps(parts: readonly TransactionPart[], opts: { dryRun?: boolean } = {}): Steps<void> {
    if (new Set(parts.map((p) => p.family)).size !== parts.length) throw new Error('commitMany: one part per family');
    const prepared: { family: Family; base: FamilyRules; tables: readonly XtrTable[]; next: FamilyRules; created: Map<Rule, RuleInstances> }[] = [];
    const compiled = new Map<Family, CompiledFamily>();
    const replaced: RuleInstances[] = [];
    const undo = () => {
      for (const p of prepared) for (const inst of p.created.values()) destroyInstances(inst);
    };
    try {
      for (const part of parts) {
        const base = this.rules(part.family);
        const next = base.withCopies(part.tables);
        const created = new Map<Rule, RuleInstances>();
        prepared.push({ family: part.family, base, tables: part.tables, next, created });
        const stepped = part.change(next);
        if (stepped) yield* stepped;
        for (const name of part.tables) {
          try {
            yield* this.checkTableSteps(next.table(name), created);
          } catch (e) {
            const err = toNfError(e);
            err.table = name;
            throw err;
          }
        }
      }
      if (opts.dryRun) {
        undo();
        return;
      }
      // Compiled ahead of the swap, each rule with the instances it will have (attached at the swap).
      for (const p of prepared) compiled.set(p.family, yield* this.compileFamilySteps(p.next, (r) => p.created.get(r) ?? r.instances!));
      // What the running set holds that the new one does not: let go of after the swap.
      for (const p of prepared) {
        const live = new Set<Rule>();
        let n = 0;
        for (const t of p.next.tables.values())
          for (const c of t.chains.values())
            for (const r of c.rules) {
              live.add(r);
              if ((++n & 1023) === 0) yield;
            }
        for (const t of p.base.tables.values())
          for (const c of t.chains.values())
            for (const r of c.rules) {
              if (!live.has(r) && r.instances) replaced.push(r.instances);
              if ((++n & 1023) === 0) yield;
            }
      }
      for (const p of prepared) if (this.rules(p.family) !== p.base) throw new RuleSetChanged();
    } catch (e) {
      undo();
      throw e;
    }
    // From here on one step until the new set is live (and its instances active).
    for (const p of prepared) {
      for (const [rule, inst] of p.created) {
        if (rule.instances && rule.instances !== inst) replaced.push(rule.instances);
        rule.instances = inst;
      }
    }
    for (const p of prepared) {
      if (p.family === 4) {
        this.rules4 = p.next;
        this.c4 = compiled.get(4)!;
      } else {
        this.rules6 = p.next;
        this.c6 = compiled.get(6)!;
      }
    }
    // The new instances are live: side effects that had to wait for the commit happen now.
    for (const p of prepared) for (const inst of p.created.values()) activateInstances(inst);
    // Only now may the old set's instances let go of shared state (nothing runs them any more).
    let n = 0;
    for (const inst of new Set(replaced)) {
      destroyInstances(inst);
      if ((++n & 255) === 0) yield;
    }
    this.onChange?.();
  }

  /** Validates a table and checks its rules' extensions (one step per rule checked); new instances go to `created`. */
  private *checkTableSteps(table: Table, created: Map<Rule, RuleInstances>): Steps<void> {
    for (const chain of table.chains.values()) {
      for (const rule of chain.rules) {
        const t = rule.spec.target;
        if (t.kind !== 'jump') continue;
        const dest = table.chains.get(t.chain);
        if (!dest) throw kernelError(KERNEL.ENOENT);
        if (dest.builtin) throw kernelError(KERNEL.EINVAL, `x_tables: jump to built-in chain ${t.chain} is not allowed`);
      }
    }
    const masks = hookMasks(table);
    for (const chain of table.chains.values()) {
      const mask = masks.get(chain.name) ?? 0;
      for (const rule of chain.rules) {
        if (rule.instances && rule.instances.hookMask === mask && !created.has(rule)) continue;
        if (created.has(rule)) continue;
        created.set(rule, this.checkRule(table, chain.name, rule, mask));
        yield;
      }
    }
  }

  private checkRule(table: Table, chainName: string, rule: Rule, hookMask: number): RuleInstances {
    const spec = rule.spec;
    const matches: MatchInstance[] = [];
    let target: TargetInstance | null = null;
    const subTargets: TargetInstance[] = [];
    const env: CheckEnv = {
      rule: { family: spec.family, table: table.name, chain: chainName, proto: spec.proto, protoInverted: spec.protoInv },
      hookMask,
      state: this.state,
      proc: this.proc,
      services: this.services,
      settings: this.settings,
      ruleMatches: spec.matches,
      subTarget: subTargetOf(this.registry, () => env, subTargets),
    };
    try {
      for (const m of spec.matches) {
        checkPlacement(m.ext, env.rule, hookMask);
        matches.push(m.ext.check(m.params, env));
      }
      if (spec.target.kind === 'ext') {
        const t = spec.target;
        checkPlacement(t.ext, env.rule, hookMask);
        target = t.ext.check(t.params, env);
      }
    } catch (e) {
      destroyInstances({ matches, target, subTargets, hookMask });
      throw toNfError(e);
    }
    // slice: kept at its length, not push's capacity (see parse.ts).
    return { matches: matches.slice(), target, subTargets, hookMask };
  }

  /** Compiled form of each table object: a transaction recompiles only the tables it copied. */
  private readonly compiledTables = new WeakMap<Table, CompiledTable>();

  private compileFamily(fr: FamilyRules): CompiledFamily {
    return runSteps(this.compileFamilySteps(fr, (r) => r.instances!));
  }

  private *compileFamilySteps(fr: FamilyRules, instOf: (rule: Rule) => RuleInstances): Steps<CompiledFamily> {
    const tables = {} as Record<XtrTable, CompiledTable>;
    for (const name of TABLE_NAMES) tables[name] = yield* this.compileTableSteps(fr.table(name), instOf);
    return new CompiledFamily(tables.raw, tables.mangle, tables.nat, tables.filter, tables.rawpost, tables.security, yield* usesConntrack(fr));
  }

  private *compileTableSteps(model: Table, instOf: (rule: Rule) => RuleInstances): Steps<CompiledTable> {
    const cached = this.compiledTables.get(model);
    if (cached) return cached;
    const ct = new CompiledTable(model);
    const byName = new Map<string, CompiledChain>();
    for (const chain of model.chains.values()) byName.set(chain.name, yield* compileChainSteps(chain, instOf));
    for (const cc of byName.values()) {
      for (const r of cc.rules) {
        const t = r.rule.spec.target;
        if (t.kind === 'jump') r.jump = byName.get(t.chain)!;
      }
      if (cc.model.hook !== null) ct.entry[cc.model.hook] = cc;
    }
    this.compiledTables.set(model, ct);
    return ct;
  }

  /** Destroys every instance (process shutdown / tests). */
  close(): void {
    this.state.stopTimer();
    for (const fr of [this.rules4, this.rules6])
      for (const t of fr.tables.values())
        for (const c of t.chains.values())
          for (const r of c.rules) {
            if (r.instances) destroyInstances(r.instances);
            r.instances = null;
          }
  }
}

function activateInstances(inst: RuleInstances): void {
  for (const m of inst.matches) m.activate?.();
  for (const s of inst.subTargets) s.activate?.();
  inst.target?.activate?.();
}

/** Whether any rule of any table of `fr` has a match or target that needs conntrack. */
function* usesConntrack(fr: FamilyRules): Steps<boolean> {
  const needs = (ext: { needsConntrack?(params: unknown): boolean }, params: unknown): boolean => ext.needsConntrack?.(params) === true;
  let n = 0;
  for (const t of fr.tables.values())
    for (const c of t.chains.values())
      for (const r of c.rules) {
        if ((++n & 1023) === 0) yield;
        for (const m of r.spec.matches) if (needs(m.ext, m.params)) return true;
        const tg = r.spec.target;
        if (tg.kind === 'ext' && needs(tg.ext, tg.params)) return true;
      }
  return false;
}

function destroyInstances(inst: RuleInstances): void {
  for (const m of inst.matches) m.destroy?.();
  inst.target?.destroy?.();
  // After their caller, newest first: the caller may still hold them while it lets go.
  for (let k = inst.subTargets.length - 1; k >= 0; k--) inst.subTargets[k].destroy?.();
}

/**
 * For each chain, the hooks from which it is reachable (mark_source_chains);
 * a loop reachable from a built-in chain is ELOOP, as the kernel reports it.
 */
export function hookMasks(table: Table): Map<string, number> {
  const masks = new Map<string, number>();
  const visiting = new Set<string>();
  const visit = (name: string, hookBit: number) => {
    const chain = table.chains.get(name);
    if (!chain) return;
    if (visiting.has(name)) throw kernelError(KERNEL.ELOOP);
    const had = masks.get(name) ?? 0;
    if (had & hookBit) return;
    masks.set(name, had | hookBit);
    visiting.add(name);
    for (const r of chain.rules) {
      const t = r.spec.target;
      if (t.kind === 'jump' && t.chain !== name) visit(t.chain, hookBit);
      else if (t.kind === 'jump') throw kernelError(KERNEL.ELOOP);
    }
    visiting.delete(name);
  };
  for (const chain of table.chains.values()) if (chain.hook !== null) visit(chain.name, 1 << chain.hook);
  return masks;
}
