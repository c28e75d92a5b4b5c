/**
 * iptables' argv, parsed as iptables 1.8.9 parses it (getopt_long with the
 * options of every loaded extension merged in; `!` before an option inverts
 * it; unknown options after `-p PROTO` load PROTO's match implicitly), into
 * a command plus zero or more rule specs (`-s a,b` expands into one rule per
 * address, like iptables).
 *
 * Everything here is pure: the caller supplies the registry, the table's
 * chains (for "-j NAME is a chain") and gets back data or an NfError whose
 * status and wording follow iptables.
 */
import type { Family } from '../../xt/packet.js';
import type { ExtensionRegistry } from '../../modules/registry.js';
import type { Extension, MatchExtension, OptionSpec, ParsedOption, RuleInfo, TargetExtension } from '../../xt/extension.js';
import { parseAddressList, type AddrMask } from './addr.js';
import { NfError, toNfError } from './errors.js';
import { isTableName, Rule, type MatchSpec, type RuleSpec, type TargetSpec, type XtrTable } from './model.js';
import { ruleText } from './format.js';
import { implicitMatchNames, parseProtocol } from './protocols.js';

export type CommandKind = 'A' | 'C' | 'D' | 'R' | 'I' | 'L' | 'S' | 'F' | 'Z' | 'N' | 'X' | 'P' | 'E';

export interface ParsedCommand {
  /** The command letters given (one, or L and Z together). */
  readonly commands: readonly CommandKind[];
  readonly table: XtrTable;
  readonly chain: string | null;
  readonly ruleNum: number | null;
  /** -P's policy or -E's new name. */
  readonly arg2: string | null;
  /** Expanded rules (A, C, D by spec, R, I). */
  readonly rules: readonly Rule[];
  readonly verbose: boolean;
  readonly numeric: boolean;
  readonly exact: boolean;
  readonly lineNumbers: boolean;
  readonly counters: readonly [number, number] | null;
  /** `-6` given to iptables or `-4` to ip6tables: iptables ignores the line. */
  readonly otherFamily: boolean;
  /** -h / -V */
  readonly info: 'help' | 'version' | null;
}

export interface ParseEnv {
  readonly family: Family;
  readonly registry: ExtensionRegistry;
  /** Does the chain exist in `table` (as the command will see it)? */
  chainExists(table: XtrTable, name: string): boolean;
}

/** Built-in options: long name, short letter, argument kind. */
interface BaseOpt {
  readonly long: string;
  readonly short: string | null;
  readonly arg: 'none' | 'required' | 'optional';
  /** Index into the legality table, or -1 when not checked. */
  readonly legal: number;
}

const BASE: readonly BaseOpt[] = [
  { long: 'append', short: 'A', arg: 'required', legal: -1 },
  { long: 'check', short: 'C', arg: 'required', legal: -1 },
  { long: 'delete', short: 'D', arg: 'required', legal: -1 },
  { long: 'replace', short: 'R', arg: 'required', legal: -1 },
  { long: 'insert', short: 'I', arg: 'required', legal: -1 },
  { long: 'list', short: 'L', arg: 'optional', legal: -1 },
  { long: 'list-rules', short: 'S', arg: 'optional', legal: -1 },
  { long: 'flush', short: 'F', arg: 'optional', legal: -1 },
  { long: 'zero', short: 'Z', arg: 'optional', legal: -1 },
  { long: 'new-chain', short: 'N', arg: 'required', legal: -1 },
  { long: 'delete-chain', short: 'X', arg: 'optional', legal: -1 },
  { long: 'rename-chain', short: 'E', arg: 'required', legal: -1 },
  { long: 'policy', short: 'P', arg: 'required', legal: -1 },
  { long: 'numeric', short: 'n', arg: 'none', legal: 0 },
  { long: 'source', short: 's', arg: 'required', legal: 1 },
  { long: 'src', short: null, arg: 'required', legal: 1 },
  { long: 'destination', short: 'd', arg: 'required', legal: 2 },
  { long: 'dst', short: null, arg: 'required', legal: 2 },
  { long: 'protocol', short: 'p', arg: 'required', legal: 3 },
  { long: 'jump', short: 'j', arg: 'required', legal: 4 },
  { long: 'goto', short: 'g', arg: 'required', legal: 4 },
  { long: 'verbose', short: 'v', arg: 'none', legal: 5 },
  { long: 'exact', short: 'x', arg: 'none', legal: 6 },
  { long: 'in-interface', short: 'i', arg: 'required', legal: 7 },
  { long: 'out-interface', short: 'o', arg: 'required', legal: 8 },
  { long: 'line-numbers', short: null, arg: 'none', legal: 9 },
  { long: 'set-counters', short: 'c', arg: 'required', legal: 10 },
  { long: 'fragment', short: 'f', arg: 'none', legal: 11 },
  { long: 'fragments', short: null, arg: 'none', legal: 11 },
  { long: 'table', short: 't', arg: 'required', legal: -1 },
  { long: 'match', short: 'm', arg: 'required', legal: -1 },
  { long: 'wait', short: 'w', arg: 'optional', legal: -1 },
  { long: 'wait-interval', short: 'W', arg: 'required', legal: -1 },
  { long: 'help', short: 'h', arg: 'none', legal: -1 },
  { long: 'version', short: 'V', arg: 'none', legal: -1 },
  { long: 'ipv4', short: '4', arg: 'none', legal: -1 },
  { long: 'ipv6', short: '6', arg: 'none', legal: -1 },
  { long: 'modprobe', short: null, arg: 'required', legal: -1 },
  { long: 'new', short: null, arg: 'required', legal: -1 },
];
const BY_SHORT = new Map(BASE.filter((o) => o.short).map((o) => [o.short!, o]));
const COMMAND_LETTERS = 'ACDRILSFZNXEP';

/**
 * Names iptables prints for the legality table columns (it prints --line-numbers as "-0": the
 * option has no short letter and iptables' opt2char maps it to '0').
 */
const LEGAL_NAMES = ['-n', '-s', '-d', '-p', '-j', '-v', '-x', '-i', '-o', '-0', '-c', '-f'];

/**
 * iptables' commands_v_options: 'x' = illegal with that command (any other
 * given command that allows the option makes it legal, as with -L -Z).
 */
const LEGALITY: Record<CommandKind, string> = {
  //   nsdpjvxio lcf
  I: 'x     x  x  ',
  D: 'x     x  xx ',
  R: 'x     x  x  ',
  A: 'x     x  x  ',
  C: 'x     x  xx ',
  L: ' xxxx  xx xx',
  S: 'xxxxx xxxxxx',
  F: 'xxxxx xxxxxx',
  Z: 'xxxxx xxxxxx',
  N: 'xxxxx xxxxxx',
  X: 'xxxxx xxxxxx',
  P: 'xxxxx xxxx x',
  E: 'xxxxx xxxxxx',
};

/**
 * The standard verdicts, each with one shared (frozen) target: most rules have one, and a rule
 * keeps its target for life.
 */
const VERDICT_TARGETS = {
  ACCEPT: Object.freeze({ kind: 'verdict', verdict: 'ACCEPT' }),
  DROP: Object.freeze({ kind: 'verdict', verdict: 'DROP' }),
  RETURN: Object.freeze({ kind: 'verdict', verdict: 'RETURN' }),
  QUEUE: Object.freeze({ kind: 'verdict', verdict: 'QUEUE' }),
} as const satisfies Record<string, TargetSpec>;
/** Names that can never be chains (standard targets iptables knows without loading anything). */
export const RESERVED_TARGETS: ReadonlySet<string> = new Set(Object.keys(VERDICT_TARGETS));

interface LoadedExt {
  readonly ext: Extension;
  readonly options: ParsedOption[];
  /** True for the match loaded implicitly from -p. */
  readonly implicit: boolean;
}

const IFNAMSIZ = 16;

function bad(word: string): NfError {
  return new NfError(`Bad argument \`${word}'`, 2, 'bare');
}

function isNumberWord(w: string | undefined): boolean {
  return w !== undefined && w !== '' && w[0] !== '-' && w[0] !== '!';
}

function parseRuleNumber(w: string): number {
  if (!/^[0-9]+$/.test(w) || Number(w) < 1) throw new NfError(`Invalid rule number \`${w}'`);
  return Number(w);
}

function checkInterface(name: string): string {
  if (name.length >= IFNAMSIZ) throw new NfError(`interface name \`${name}' must be shorter than IFNAMSIZ (${IFNAMSIZ - 1})`);
  return name;
}

/**
 * Parses one iptables/ip6tables argv. `defaultTable` is "filter" on the
 * command line and the current `*table` inside iptables-restore (where `-t`
 * is refused by the caller).
 */
export function parseCommand(argv: readonly string[], env: ParseEnv, defaultTable: XtrTable = 'filter'): ParsedCommand {
  const family = env.family;
  const commands: CommandKind[] = [];
  let table: XtrTable | null = null;
  let chain: string | null = null;
  let ruleNum: number | null = null;
  let arg2: string | null = null;
  let verbose = false;
  let numeric = false;
  let exact = false;
  let lineNumbers = false;
  let counters: [number, number] | null = null;
  let otherFamily = false;
  let info: 'help' | 'version' | null = null;
  const given = new Set<number>();

  let srcText: string | null = null;
  let dstText: string | null = null;
  let srcInv = false;
  let dstInv = false;
  let inIf = '';
  let inInv = false;
  let outIf = '';
  let outInv = false;
  let protoWord: string | null = null;
  let proto = 0;
  let protoInv = false;
  let frag = false;
  let fragInv = false;
  let implicitTried = false;
  const loaded: LoadedExt[] = [];
  let target = { kind: 'none' } as TargetSpec;
  let targetExt = null as LoadedExt | null;
  let jumpGiven = false;

  let invert = false;
  let i = 0;

  const addCommand = (c: CommandKind) => {
    if (commands.length > 0) {
      const ok = commands.length === 1 && ((commands[0] === 'L' && c === 'Z') || (commands[0] === 'Z' && c === 'L'));
      if (!ok) throw new NfError(`Cannot use -${c} with -${commands[0]}`);
    }
    commands.push(c);
  };
  const noInvert = (opt: string) => {
    if (invert) throw new NfError(`cannot have ! before -${opt}`);
  };
  const once = (legal: number, inv: boolean, letter: string) => {
    if (legal >= 0) {
      if (given.has(legal)) throw new NfError(`multiple -${letter} flags not allowed`);
      given.add(legal);
    }
    if (inv && !'spdiofs'.includes(letter)) throw new NfError(`cannot have ! before -${letter}`);
  };
  const next = (): string | undefined => argv[i];

  /**
   * Extension options by exact name or alias. libxtables merges a newly loaded extension's
   * options in front of the older ones, so the most recently loaded owner wins.
   */
  const findOwner = (name: string): { owner: LoadedExt; spec: OptionSpec } | null => {
    const order = loaded.slice().reverse();
    for (const l of order) {
      const spec = l.ext.options.find((o) => o.name === name || o.aliases?.includes(name));
      if (spec) return { owner: l, spec };
    }
    // getopt_long accepts an unambiguous prefix of any merged option.
    const hits: { owner: LoadedExt; spec: OptionSpec }[] = [];
    for (const l of order)
      for (const spec of l.ext.options) if ([spec.name, ...(spec.aliases ?? [])].some((n) => n.startsWith(name))) hits.push({ owner: l, spec });
    const distinct = new Set(hits.map((h) => h.spec));
    return distinct.size === 1 ? hits[0] : null;
  };

  const loadMatch = (name: string, implicit: boolean): LoadedExt => {
    const ext = env.registry.match(name, family);
    if (!ext) throw new NfError(`Couldn't load match \`${name}':No such file or directory\n`);
    const l: LoadedExt = { ext, options: [], implicit };
    loaded.push(l);
    return l;
  };

  const takeValue = (arg: 'none' | 'required' | 'optional', inline: string | null, label: string): string | null => {
    if (arg === 'none') {
      // getopt_long refuses `--flag=value` with '?', which iptables 1.8.9 reports as an unknown option.
      if (inline !== null) throw new NfError(`unknown option "${label}"`);
      return null;
    }
    if (inline !== null) return inline;
    if (arg === 'optional') {
      return isNumberWord(next()) ? argv[i++] : null;
    }
    if (i >= argv.length) throw new NfError(`option "${label}" requires an argument`);
    return argv[i++];
  };

  const handleBase = (o: BaseOpt, inline: string | null, label: string) => {
    let v = o.arg === 'optional' && o.short && COMMAND_LETTERS.includes(o.short) ? inline : takeValue(o.arg, inline, label);
    const letter = o.short ?? o.long;
    switch (o.short ?? o.long) {
      case 'A': case 'C': case 'D': case 'R': case 'I': case 'N': case 'E': case 'P':
        noInvert(letter);
        addCommand(o.short as CommandKind);
        chain = v;
        if (o.short === 'D' || o.short === 'I') {
          if (isNumberWord(next())) ruleNum = parseRuleNumber(argv[i++]);
        } else if (o.short === 'R') {
          if (!isNumberWord(next())) throw new NfError('-R requires a rule number');
          ruleNum = parseRuleNumber(argv[i++]);
        } else if (o.short === 'P') {
          if (!isNumberWord(next())) throw new NfError('-P requires a chain and a policy');
          arg2 = argv[i++];
        } else if (o.short === 'E') {
          if (!isNumberWord(next())) throw new NfError('-E requires old-chain-name and new-chain-name');
          arg2 = argv[i++];
        }
        break;
      case 'new':
        noInvert('N');
        addCommand('N');
        chain = v;
        break;
      case 'L': case 'S': case 'F': case 'Z': case 'X':
        noInvert(letter);
        addCommand(o.short as CommandKind);
        if (v === null && isNumberWord(next())) v = argv[i++];
        if (v !== null) chain = v;
        if ((o.short === 'L' || o.short === 'S' || o.short === 'Z') && isNumberWord(next())) ruleNum = parseRuleNumber(argv[i++]);
        break;
      case 't':
        noInvert('t');
        if (!isTableName(v!)) throw new NfError(`can't initialize iptables table \`${v}': Table does not exist (do you need to insmod?)`, 3, 'table');
        table = v;
        break;
      case 's':
      case 'src':
        once(o.legal, invert, 's');
        srcText = v;
        srcInv = invert;
        break;
      case 'd':
      case 'dst':
        once(o.legal, invert, 'd');
        dstText = v;
        dstInv = invert;
        break;
      case 'p':
        once(o.legal, invert, 'p');
        // iptables takes -p's argument from argv directly, so "--protocol=tcp" is read whole.
        if (inline !== null && label.startsWith('--')) v = label;
        protoWord = v;
        proto = parseProtocol(v!);
        protoInv = invert;
        if (proto === 0 && protoInv) throw new NfError('rule would never match protocol');
        break;
      case 'i':
        once(o.legal, invert, 'i');
        inIf = checkInterface(v!);
        inInv = invert;
        break;
      case 'o':
        once(o.legal, invert, 'o');
        outIf = checkInterface(v!);
        outInv = invert;
        break;
      case 'f':
      case 'fragments':
        once(o.legal, false, 'f');
        if (family === 6) throw new NfError("`-f' is not supported in IPv6, use -m frag instead");
        frag = true;
        fragInv = invert;
        break;
      case 'j':
      case 'g': {
        noInvert(o.short!);
        if (jumpGiven) throw new NfError('multiple -j flags not allowed');
        jumpGiven = true;
        given.add(4);
        const name = v!;
        if (o.short === 'g') {
          target = { kind: 'jump', chain: name, goto: true };
        } else if (Object.hasOwn(VERDICT_TARGETS, name)) {
          target = VERDICT_TARGETS[name as keyof typeof VERDICT_TARGETS];
        } else {
          const ext = env.registry.target(name, family);
          if (ext) {
            targetExt = { ext, options: [], implicit: false };
            loaded.push(targetExt);
          } else {
            // A chain, or nothing: iptables decides (and complains) only after the whole line is parsed.
            target = { kind: 'jump', chain: name, goto: false };
          }
        }
        break;
      }
      case 'm':
        if (invert) throw new NfError('unexpected ! flag before --match');
        loadMatch(v!, false);
        break;
      case 'v':
        // -v may be repeated (iptables then also dumps libiptc's view; xtr does not).
        noInvert('v');
        given.add(o.legal);
        verbose = true;
        break;
      case 'n':
        noInvert('n');
        once(o.legal, false, 'n');
        numeric = true;
        break;
      case 'x':
        noInvert('x');
        once(o.legal, false, 'x');
        exact = true;
        break;
      case 'line-numbers':
        noInvert('0');
        once(o.legal, false, '0');
        lineNumbers = true;
        break;
      case 'c': {
        noInvert('c');
        once(o.legal, false, 'c');
        if (!isNumberWord(next())) throw new NfError('-c requires packet and byte counter');
        const b = argv[i++];
        if (!/^[0-9]+$/.test(v!)) throw new NfError('-c packet counter not numeric');
        if (!/^[0-9]+$/.test(b)) throw new NfError('-c byte counter not numeric');
        counters = [Number(v), Number(b)];
        break;
      }
      case '4':
        if (family === 6) otherFamily = true;
        break;
      case '6':
        if (family === 4) otherFamily = true;
        break;
      case 'h':
        info = 'help';
        break;
      case 'V':
        info = 'version';
        break;
      default:
        // -w/--wait, -W, --modprobe: meaningful only for the kernel's lock and loader.
        break;
    }
    invert = false;
  };

  const handleExtOption = (name: string, inline: string | null, label: string): boolean => {
    const found = findOwner(name);
    if (!found) return false;
    const { owner, spec } = found;
    const read = readExtOption(owner.ext, spec, argv, i, inline, label, invert);
    i = read.next;
    owner.options.push(read.option);
    invert = false;
    return true;
  };

  while (i < argv.length) {
    const w = argv[i++];
    if (w === '!') {
      if (invert) throw new NfError('multiple consecutive ! not allowed');
      invert = true;
      continue;
    }
    if (w.startsWith('--') && w.length > 2) {
      const eq = w.indexOf('=');
      const name = eq < 0 ? w.slice(2) : w.slice(2, eq);
      const inline = eq < 0 ? null : w.slice(eq + 1);
      const exactBase = BASE.find((o) => o.long === name);
      if (exactBase) {
        handleBase(exactBase, inline, w);
        continue;
      }
      // Extension options of loaded extensions; then getopt's prefix matching over the merged table.
      if (loaded.some((l) => l.ext.options.some((o) => o.name === name || o.aliases?.includes(name)))) {
        handleExtOption(name, inline, w);
        continue;
      }
      const basePrefix = BASE.filter((o) => o.long.startsWith(name));
      const extPrefix = findOwner(name);
      if (basePrefix.length === 1 && !extPrefix) {
        handleBase(basePrefix[0], inline, w);
        continue;
      }
      if (basePrefix.length === 0 && extPrefix && handleExtOption(name, inline, w)) continue;
      // An unknown (or ambiguous: getopt says "?" alike) option after `-j` of an old-style target without options: its parse takes and ignores it.
      if (targetExt?.ext.swallowsUnknownOptions) {
        invert = false;
        continue;
      }
      // Unknown so far: load the protocol's own match once, as iptables does, and retry.
      if (protoWord !== null && !implicitTried) {
        implicitTried = true;
        const names = implicitMatchNames(proto, family);
        const ext = names.map((n) => env.registry.match(n, family)).find((e) => e !== undefined);
        if (ext && !loaded.some((l) => l.ext === ext)) {
          loaded.push({ ext, options: [], implicit: true });
          // getopt still has the base options merged: a prefix one of them shares is ambiguous ('?').
          const exact = ext.options.some((o) => o.name === name || o.aliases?.includes(name));
          if ((exact || basePrefix.length === 0) && handleExtOption(name, inline, w)) continue;
        }
      }
      throw new NfError(`unknown option "${w}"`);
    }
    if (w.startsWith('-') && w.length > 1) {
      // Short options, possibly clustered (-nvL): an option with an argument takes the rest of the word.
      for (let k = 1; k < w.length; k++) {
        const o = BY_SHORT.get(w[k]);
        if (!o && targetExt?.ext.swallowsUnknownOptions) {
          invert = false;
          continue;
        }
        if (!o) throw new NfError(`unknown option "${k === 1 ? w : `-${w[k]}`}"`);
        const rest = w.slice(k + 1);
        if (o.arg === 'required' && rest !== '') {
          handleBase(o, rest, `-${w[k]}`);
          break;
        }
        if (o.arg === 'optional' && rest !== '' && !COMMAND_LETTERS.includes(w[k])) {
          handleBase(o, rest, `-${w[k]}`);
          break;
        }
        handleBase(o, null, `-${w[k]}`);
      }
      continue;
    }
    throw bad(w);
  }
  if (invert) throw new NfError("nothing appropriate following !");

  if (info !== null) {
    return { commands, table: table ?? defaultTable, chain, ruleNum, arg2, rules: [], verbose, numeric, exact, lineNumbers, counters, otherFamily, info };
  }
  if (otherFamily) {
    return { commands, table: table ?? defaultTable, chain, ruleNum, arg2, rules: [], verbose, numeric, exact, lineNumbers, counters, otherFamily, info };
  }
  // Extension options are checked while iptables reads the line, and their final checks right
  // after it: before anything below.
  const ruleInfo: RuleInfo = { family, table: table ?? defaultTable, chain: chain ?? '', proto, protoInverted: protoInv };
  // The matches array is made at its final length (map): one grown by push from empty has room
  // for 17 elements, ~130 bytes a rule would carry for its lifetime (and a large restore copies
  // what rules keep through the young generation). The options read are not kept: params say it all.
  const matches: MatchSpec[] = loaded
    .filter((l) => l.ext.kind === 'match')
    .map((l) => {
      const ext = l.ext as MatchExtension;
      return { ext, params: parseExt(ext, l.options, ruleInfo) };
    });
  if (targetExt) {
    const ext = targetExt.ext as TargetExtension;
    target = { kind: 'ext', ext, params: parseExt(ext, targetExt.options, ruleInfo) };
  }

  if (commands.length === 0) throw new NfError('no command specified');

  // iptables parses -s/-d before it looks at which options the command allows.
  const srcs: (AddrMask | null)[] = srcText !== null ? parseAddressList(srcText, family) : [null];
  const dsts: (AddrMask | null)[] = dstText !== null ? parseAddressList(dstText, family) : [null];
  if ((srcs.length > 1 || dsts.length > 1) && (srcInv || dstInv)) {
    throw new NfError('! not allowed with multiple source or destination IP addresses');
  }
  const firstCommand = commands[0];
  if ((table ?? defaultTable) === 'nat' && ((firstCommand === 'P' && arg2 === 'DROP') || ('ACDRI'.includes(firstCommand) && target.kind === 'verdict' && target.verdict === 'DROP'))) {
    throw new NfError('\nThe "nat" table is not intended for filtering, the use of DROP is therefore inhibited.\n\n');
  }

  // Options that make no sense with the command(s) given ("-D num" has its own row: only -v).
  // Checked in the column order of iptables' table, so the first illegal option named is the same.
  const rows = commands.map((c) => (c === 'D' && ruleNum !== null ? 'xxxxx xxxxxx' : LEGALITY[c]));
  for (let col = 0; col < LEGAL_NAMES.length; col++) {
    if (!given.has(col)) continue;
    if (!rows.some((row) => row[col] !== 'x')) throw new NfError(`Illegal option \`${LEGAL_NAMES[col]}' with this command`);
  }

  const cmd = commands[0];
  const needsRule = 'ACDRI'.includes(cmd) && !(cmd === 'D' && ruleNum !== null);

  const tableName = table ?? defaultTable;
  const rules: Rule[] = [];
  if (needsRule) {
    if (chain !== null) {
      if ((chain === 'PREROUTING' || chain === 'INPUT') && outIf !== '') throw new NfError(`Can't use -o with ${chain}\n`);
      if ((chain === 'POSTROUTING' || chain === 'OUTPUT') && inIf !== '') throw new NfError(`Can't use -i with ${chain}\n`);
    }
    if (target.kind === 'jump' && target.goto && !env.chainExists(tableName, target.chain)) {
      throw new NfError(`goto '${target.chain}' is not a chain`);
    }
    const jumpTarget = target;
    if (jumpTarget.kind === 'jump' && !jumpTarget.goto && !env.chainExists(tableName, jumpTarget.chain)) {
      throw new NfError(`Couldn't load target \`${jumpTarget.chain}':No such file or directory\n`);
    }
    for (const s of srcs) {
      for (const d of dsts) {
        const spec: RuleSpec = { family, src: s, srcInv, dst: d, dstInv, inIf, inInv, outIf, outInv, proto, protoInv, frag, fragInv, matches, target };
        const rule = new Rule(spec, ruleText(spec));
        if (counters) {
          rule.pkts = counters[0];
          rule.bytes = counters[1];
        }
        rules.push(rule);
      }
    }
  }
  return { commands, table: tableName, chain, ruleNum, arg2, rules, verbose, numeric, exact, lineNumbers, counters, otherFamily, info };
}

/**
 * One extension option as getopt_long and libxtables read it: `argv[i]` is
 * the word after `--name` (`inline` is the `=value` part of `--name=value`);
 * takes the value and, for `nargs` > 1, the further words.
 */
function readExtOption(
  ext: Extension,
  spec: OptionSpec,
  argv: readonly string[],
  i: number,
  inline: string | null,
  label: string,
  invert: boolean,
): { option: ParsedOption; next: number } {
  if (invert && !spec.invertible) throw new NfError(`${ext.name}: option "--${spec.name}" cannot be inverted.\n`);
  let value: string | null = null;
  if (spec.arg === 'required') {
    if (inline !== null) value = inline;
    else if (i >= argv.length) throw new NfError(`option "${label}" requires an argument`);
    else value = argv[i++];
    const extra = (spec.nargs ?? 1) - 1;
    if (extra > 0) {
      const words = [value];
      for (let k = 0; k < extra; k++) {
        if (i >= argv.length || argv[i].startsWith('-') || argv[i] === '!') {
          const n = spec.nargs!;
          throw new NfError(`--${spec.name} requires ${n === 2 ? 'two' : n === 3 ? 'three' : String(n)} args.`);
        }
        words.push(argv[i++]);
      }
      value = words.join(' ');
    }
  } else if (inline !== null) throw new NfError(`unknown option "${label}"`); // as takeValue: getopt's '?'
  return { option: { name: spec.name, value, inverted: invert }, next: i };
}

/**
 * The option words of one extension alone (what follows `-m NAME` or
 * `-j NAME`), read as iptables reads them: `!` inverts the next option,
 * `--name=value`, unambiguous prefixes, aliases and nargs; errors are
 * iptables' (NfError, status 2). For sub-targets an extension checks
 * (CHAOS calling TARPIT) and for module tests.
 */
export function readExtensionOptions(ext: Extension, argv: readonly string[]): ParsedOption[] {
  const out: ParsedOption[] = [];
  let invert = false;
  let i = 0;
  while (i < argv.length) {
    const w = argv[i++];
    if (w === '!') {
      if (invert) throw new NfError('multiple consecutive ! not allowed');
      invert = true;
      continue;
    }
    if (!w.startsWith('--') || w.length <= 2) throw bad(w);
    const eq = w.indexOf('=');
    const name = eq < 0 ? w.slice(2) : w.slice(2, eq);
    const inline = eq < 0 ? null : w.slice(eq + 1);
    let spec = ext.options.find((o) => o.name === name || o.aliases?.includes(name));
    if (!spec) {
      const hits = new Set(ext.options.filter((o) => [o.name, ...(o.aliases ?? [])].some((n) => n.startsWith(name))));
      if (hits.size === 1) spec = [...hits][0];
    }
    if (!spec) throw new NfError(`unknown option "${w}"`);
    const read = readExtOption(ext, spec, argv, i, inline, w, invert);
    out.push(read.option);
    i = read.next;
    invert = false;
  }
  if (invert) throw new NfError('nothing appropriate following !');
  return out;
}

/** readExtensionOptions, then the extension's own parse for the rule (errors as NfError). */
export function parseExtensionArgs(ext: MatchExtension | TargetExtension, argv: readonly string[], info: RuleInfo): { params: unknown; options: ParsedOption[] } {
  const options = readExtensionOptions(ext, argv);
  return { params: parseExt(ext, options, info), options };
}

function parseExt(ext: MatchExtension | TargetExtension, opts: readonly ParsedOption[], info: RuleInfo): unknown {
  try {
    return ext.parse(opts, info);
  } catch (e) {
    throw toNfError(e);
  }
}
