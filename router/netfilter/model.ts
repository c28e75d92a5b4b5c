/**
 * The rule set as data: tables of chains of rules, per family, laid out like
 * the kernel's x_tables (gVisor's Rule{filter, matchers, target} shape).
 *
 * A Rule is immutable once built except for its counters, so a transaction
 * can share unchanged Rule objects between the running set and the new one:
 * counters carry over, and so do the extension instances checked for it
 * (see engine.ts). Chains and tables are copied per transaction.
 */
import { Hook, type Family, type TableName } from '../../xt/packet.js';
import type { MatchExtension, MatchInstance, TargetExtension, TargetInstance } from '../../xt/extension.js';
import type { AddrMask } from './addr.js';

export type Policy = 'ACCEPT' | 'DROP';

export type TargetSpec =
  | { readonly kind: 'none' }
  /** QUEUE hands the packet to a userspace queue; xtr has none, so it is dropped (the kernel's behaviour without a listener). */
  | { readonly kind: 'verdict'; readonly verdict: 'ACCEPT' | 'DROP' | 'RETURN' | 'QUEUE' }
  | { readonly kind: 'jump'; readonly chain: string; readonly goto: boolean }
  | { readonly kind: 'ext'; readonly ext: TargetExtension; readonly params: unknown };

export interface MatchSpec {
  readonly ext: MatchExtension;
  readonly params: unknown;
}

/** The generic part of a rule (struct ipt_ip / ip6t_ip6) plus its matches and target. */
export interface RuleSpec {
  readonly family: Family;
  readonly src: AddrMask | null;
  readonly srcInv: boolean;
  readonly dst: AddrMask | null;
  readonly dstInv: boolean;
  /** Interface names as written ("eth+" = prefix "eth"); '' = any. */
  readonly inIf: string;
  readonly inInv: boolean;
  readonly outIf: string;
  readonly outInv: boolean;
  /** 0 = any. */
  readonly proto: number;
  readonly protoInv: boolean;
  /** `-f` given (IPv4 only): match non-first fragments; with fragInv the opposite. */
  readonly frag: boolean;
  readonly fragInv: boolean;
  readonly matches: readonly MatchSpec[];
  readonly target: TargetSpec;
}

/** Extension instances created by check() for a rule in one table under one hook mask. */
export interface RuleInstances {
  readonly matches: readonly MatchInstance[];
  readonly target: TargetInstance | null;
  /** Targets the rule's extensions checked through CheckEnv.subTarget: activated and destroyed with them. */
  readonly subTargets: readonly TargetInstance[];
  readonly hookMask: number;
}

export class Rule {
  pkts = 0;
  bytes = 0;
  /** Set when the rule set holding this rule is committed. */
  instances: RuleInstances | null = null;

  constructor(
    readonly spec: RuleSpec,
    /** The rule in iptables-save form without "-A CHAIN" (e.g. " -p tcp -m tcp --dport 22 -j ACCEPT"). */
    readonly text: string,
  ) {}
}

export class Chain {
  pkts = 0;
  bytes = 0;
  constructor(
    readonly name: string,
    /** The hook of a built-in chain, null for a user chain. */
    readonly hook: Hook | null,
    public policy: Policy | null,
    public rules: Rule[] = [],
  ) {}

  get builtin(): boolean {
    return this.hook !== null;
  }

  clone(): Chain {
    const c = new Chain(this.name, this.hook, this.policy, this.rules.slice());
    c.pkts = this.pkts;
    c.bytes = this.bytes;
    return c;
  }
}

/**
 * Built-in chains of each table, in hook order (the kernel's valid_hooks).
 * `security` is the kernel's iptable_security (filter's chains, run right
 * after filter at priority 50): on a kernel without an LSM using SECMARK it
 * is a second filter table, and rules pasted for it must load and count.
 */
export const TABLE_HOOKS: Readonly<Record<TableName, readonly Hook[]>> = {
  raw: [Hook.PREROUTING, Hook.OUTPUT],
  mangle: [Hook.PREROUTING, Hook.INPUT, Hook.FORWARD, Hook.OUTPUT, Hook.POSTROUTING],
  nat: [Hook.PREROUTING, Hook.INPUT, Hook.OUTPUT, Hook.POSTROUTING],
  filter: [Hook.INPUT, Hook.FORWARD, Hook.OUTPUT],
  rawpost: [Hook.POSTROUTING],
  security: [Hook.INPUT, Hook.FORWARD, Hook.OUTPUT],
};

export type XtrTable = keyof typeof TABLE_HOOKS;
export const TABLE_NAMES = Object.keys(TABLE_HOOKS) as XtrTable[];

export function isTableName(name: string): name is XtrTable {
  return Object.prototype.hasOwnProperty.call(TABLE_HOOKS, name);
}

export const HOOK_CHAIN_NAMES = ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING'] as const;

export class Table {
  constructor(
    readonly name: XtrTable,
    readonly family: Family,
    /** Built-in chains first in hook order, then user chains in name order (libiptc's order). */
    readonly chains: Map<string, Chain>,
  ) {}

  static empty(name: XtrTable, family: Family): Table {
    const chains = new Map<string, Chain>();
    for (const h of TABLE_HOOKS[name]) chains.set(HOOK_CHAIN_NAMES[h], new Chain(HOOK_CHAIN_NAMES[h], h, 'ACCEPT'));
    return new Table(name, family, chains);
  }

  clone(): Table {
    const chains = new Map<string, Chain>();
    for (const [n, c] of this.chains) chains.set(n, c.clone());
    return new Table(this.name, this.family, chains);
  }

  /** Chains in listing order: built-ins, then user chains sorted by name (strcmp). */
  ordered(): Chain[] {
    const all = [...this.chains.values()];
    const builtins = all.filter((c) => c.builtin);
    const user = all.filter((c) => !c.builtin).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return [...builtins, ...user];
  }

  /** Number of rules jumping to (or going to) `name`. */
  references(name: string): number {
    let n = 0;
    for (const c of this.chains.values()) for (const r of c.rules) if (r.spec.target.kind === 'jump' && r.spec.target.chain === name) n++;
    return n;
  }
}

/** One family's tables. `loaded` is the order tables were first used, newest first (what iptables-save lists). */
export class FamilyRules {
  constructor(
    readonly family: Family,
    readonly tables: Map<XtrTable, Table>,
    readonly loaded: XtrTable[],
  ) {}

  static empty(family: Family): FamilyRules {
    const tables = new Map<XtrTable, Table>();
    for (const t of TABLE_NAMES) tables.set(t, Table.empty(t, family));
    return new FamilyRules(family, tables, []);
  }

  /** A copy where `names` are cloned (to be modified) and the rest shared. */
  withCopies(names: readonly XtrTable[]): FamilyRules {
    const tables = new Map(this.tables);
    for (const n of names) tables.set(n, this.tables.get(n)!.clone());
    return new FamilyRules(this.family, tables, this.loaded.slice());
  }

  table(name: XtrTable): Table {
    return this.tables.get(name)!;
  }
}
