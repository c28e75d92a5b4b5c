/**
 * The extension contract: every match and target in modules/ is one object of
 * these shapes, registered as data. The engine never names an extension.
 *
 * Lifecycle (after the kernel's x_tables):
 *   parse  - userspace side: turn `--opt value` words into plain params,
 *            throwing XtError with iptables' wording on bad input;
 *   check  - "checkentry": validate against the rule's family/table/hooks and
 *            allocate or take a reference on shared state, once per rule;
 *   activate - (optional) the rule set holding the instance went live: apply
 *            what must not happen for a dry run or a refused change;
 *   match / target - the per-packet function: lean, allocation-free;
 *   destroy - drop references when the rule goes away (after a replacement
 *            rule set has been checked, so named state survives reloads);
 *   save   - the option words `iptables-save` prints after `-m name`/`-j NAME`.
 */
import type { Family, Hook, PacketContext, TableName } from './packet.js';
import type { RouterServices } from './services.js';
import type { ModuleCommand, StateLookup, StateRegistry } from './state.js';

export type { RouterServices } from './services.js';

export interface OptionSpec {
  /** Long name without dashes, e.g. "seconds". */
  readonly name: string;
  /** Whether the option takes a value. */
  readonly arg: 'none' | 'required';
  /** Whether `! --opt` is allowed. */
  readonly invertible?: boolean;
  /** Other spellings accepted (e.g. "source-country" for "src-cc"). */
  readonly aliases?: readonly string[];
  /**
   * Words the option consumes when more than one (tcp's `--tcp-flags MASK COMP`
   * takes 2). The engine joins them with one space into ParsedOption.value; if
   * fewer remain it reports iptables' "--<name> requires <n> args." (status 2).
   */
  readonly nargs?: number;
}

/** A packet field the classifier can index (PacketContext numeric fields). */
export type IndexedField = 'sport' | 'dport' | 'proto' | 'icmpType' | 'icmpCode' | 'mark' | 'ttl';

/** `min <= pkt[field] <= max` (or outside it when inverted). */
export interface FieldRange {
  readonly field: IndexedField;
  readonly min: number;
  readonly max: number;
  readonly inverted: boolean;
}

export interface ParsedOption {
  /** Canonical name (aliases resolved). */
  readonly name: string;
  readonly value: string | null;
  readonly inverted: boolean;
}

/** What parse/check may know about the rule being built. */
export interface RuleInfo {
  readonly family: Family;
  readonly table: TableName;
  readonly chain: string;
  /** `-p` protocol number (0 = any) and whether it was negated. */
  readonly proto: number;
  readonly protoInverted: boolean;
}

/**
 * The errno a kernel check hook refuses a rule with. iptables prints its
 * strerror text ("iptables: Numerical result out of range."), so a module
 * says which one the kernel's checkentry returns.
 */
export type KernelErrno = 'EINVAL' | 'ERANGE' | 'EDOM' | 'ENOENT' | 'ENOMEM' | 'EOPNOTSUPP' | 'EPROTO' | 'ENOSPC' | 'EEXIST' | 'EBUSY' | 'EPERM' | 'E2BIG' | 'ELOOP' | 'EPROTOTYPE';

/**
 * A user-facing error. `status` is the iptables exit status: 2 for a
 * parameter problem found while parsing, 1 for a rule the kernel would refuse;
 * for those, `errno` is what the kernel's check returns (the message is then
 * what the kernel would have logged).
 *
 * Parse messages follow iptables' format strings to the byte: libxtables'
 * option messages end in "\n" (iptables then prints a blank line before its
 * "Try `iptables -h'" hint), so those XtError messages end in "\n" too.
 */
export class XtError extends Error {
  constructor(
    message: string,
    readonly status: 1 | 2 = 2,
    readonly errno: KernelErrno = 'EINVAL',
    /**
     * What the iptables extension wrote to stderr before failing (each line ending in "\n"),
     * printed ahead of the error as iptables does, e.g. libipt_REJECT's "no longer supported".
     */
    readonly preface = '',
  ) {
    super(message);
    this.name = 'XtError';
  }
}

/**
 * A procfs-like file (e.g. net/xt_recent/NAME). Declared state gets one from
 * its StateSpec.proc; persistence is StateSpec.save/load, not the file's.
 */
export interface ProcFile {
  read(): string;
  /** Absent = read-only. Throws XtError naming what was wrong. */
  write?(data: string): void;
}

export interface ProcRegistry {
  register(path: string, file: ProcFile): void;
  unregister(path: string): void;
}


/** One match of the rule being checked, as a target's check may inspect it (CheckEnv.ruleMatches). */
export interface RuleMatch {
  readonly ext: { readonly name: string };
  readonly params: unknown;
}

export interface CheckEnv {
  readonly rule: RuleInfo;
  /** Bit mask of hooks (1 << Hook) from which the rule's chain is reachable. */
  readonly hookMask: number;
  /** Named state shared by rules, with the lifecycle the engine runs (xt/state.ts). */
  readonly state: StateRegistry;
  readonly proc: ProcRegistry;
  readonly services: RouterServices;
  /** Extension settings from the config file, keyed by extension name. */
  readonly settings: Readonly<Record<string, unknown>>;
  /**
   * The rule's matches in order with their parsed params: what a kernel
   * checkentry reaches through par->entryinfo (xt_ematch_foreach). A target
   * valid only for some packets checks the rule lets no others through
   * (TCPMSS refuses a rule without a tcp match requiring SYN). Absent = none.
   */
  readonly ruleMatches?: readonly RuleMatch[];
  /**
   * Checks another target as a sub-target of this rule (CHAOS calling DELUDE
   * or TARPIT, as the kernel's xt_request_find_target): `args` are its option
   * words; the instance is destroyed with the caller's.
   */
  subTarget(name: string, args: readonly string[], how?: SubTargetOptions): TargetInstance;
}

/** How CheckEnv.subTarget checks the sub-target. */
export interface SubTargetOptions {
  /**
   * false: skip the sub-target's table/hook/`-p` checks. The kernel's CHAOS
   * finds DELUDE and TARPIT with xt_request_find_target and calls their
   * packet functions itself, never through xt_check_target, so a
   * `-j CHAOS --delude` rule without `-p tcp`, or in OUTPUT, is valid: the
   * caller hands the sub-target only packets it may take. Default true.
   */
  readonly placement?: boolean;
}

export interface MatchInstance {
  match(pkt: PacketContext): boolean;
  /**
   * Optional: called once when the rule set holding this instance has gone
   * live (after the swap; never for a dry run or a change that was refused).
   * A side effect on shared state that must not happen for an abandoned
   * change belongs here rather than in check (recent enlarging a table's
   * timestamp ring, which empties the table).
   */
  activate?(): void;
  destroy?(): void;
}

/** Returned by a target that lets the packet continue with the next rule (XT_CONTINUE). */
export const XT_CONTINUE = -1;

export interface TargetInstance {
  /** A Verdict, or XT_CONTINUE. */
  target(pkt: PacketContext): number;
  /** As MatchInstance.activate. */
  activate?(): void;
  destroy?(): void;
}

interface ExtensionBase<P> {
  readonly name: string;
  readonly revision?: number;
  readonly families: readonly Family[];
  /** Tables the extension may be used in (absent = all). */
  readonly tables?: readonly TableName[];
  /** Hooks the rule's chain may be reachable from (absent = all). */
  readonly hooks?: readonly Hook[];
  readonly options: readonly OptionSpec[];
  /**
   * The iptables extension is an old-style one with a parse function and no
   * options (xtables-addons' libxt_ECHO, libxt_SYSRQ, libxt_STEAL): its
   * option offset stays 0, so iptables' command_default hands it every option
   * getopt does not know that follows `-j NAME` and it ignores them
   * (`-j ECHO --foo` is accepted; `-j ECHO --dport 5` fails on "5", a
   * stray argument). Absent = unknown options are iptables' "unknown option".
   */
  readonly swallowsUnknownOptions?: boolean;
  parse(opts: readonly ParsedOption[], rule: RuleInfo): P;
  /** Option words for iptables-save, each preceded by a space (e.g. " --dport 22"). */
  save(params: P): string;
  /**
   * Option words for xtr's own saved rule set (the root-only state file a
   * restart restores), when they must differ from `save`: what iptables-save
   * hides but a restart needs (pknock's secrets). Must parse back to the
   * same params. Absent = `save`.
   */
  persistSave?(params: P): string;
  /**
   * `iptables -L` text, if it differs from the save text; like save, each word
   * preceded by a space. `numeric` is true under `-n` (ports, names as numbers).
   */
  print?(params: P, numeric?: boolean): string;
  /**
   * What the iptables extension writes to stderr for a rule its parser
   * accepted (a final check's fprintf, e.g. libxt_length2's "Defaulting to
   * --layer3" warning), each line ending in "\n"; absent or '' = nothing.
   * iptables prints it whatever then happens to the rule.
   */
  notice?(params: P): string;
  /**
   * The protocol the rule must name with `-p`, not inverted (the kernel's
   * xt_match.proto / xt_target.proto; e.g. tcp = 6). The engine refuses the
   * rule otherwise with iptables' "Invalid argument".
   */
  readonly proto?: number;
  /**
   * The extension needs connection tracking (its kernel checkentry takes
   * nf_ct_netns_get). While any loaded rule of a family uses such an
   * extension, that family's packets are tracked and fragments reassembled
   * before the rules, as in a kernel namespace where conntrack is in use.
   * Given the rule's params because it may depend on the options
   * (`CT --notrack` needs none).
   */
  needsConntrack?(params: P): boolean;
  /**
   * For the rule classifier (optional): header-field ranges every packet this
   * match accepts lies in - a necessary condition, never more. The engine uses
   * them only to skip rules that cannot match and still runs match() on the
   * candidates, so an absent or loose description costs speed, not correctness.
   */
  describe?(params: P): readonly FieldRange[] | null;
  /** Control commands the extension offers (`xtr ext <command> ...`), registered with the extension. */
  readonly commands?: readonly ModuleCommand[];
  /**
   * SIGHUP / `xtr reload-databases`: re-read external data the extension's
   * state holds (geoip/asn databases); returns one report line per item.
   */
  reload?(state: StateLookup): string[];
}

export interface MatchExtension<P = unknown> extends ExtensionBase<P> {
  readonly kind: 'match';
  check(params: P, env: CheckEnv): MatchInstance;
}

export interface TargetExtension<P = unknown> extends ExtensionBase<P> {
  readonly kind: 'target';
  check(params: P, env: CheckEnv): TargetInstance;
}

export type Extension = MatchExtension<any> | TargetExtension<any>;
