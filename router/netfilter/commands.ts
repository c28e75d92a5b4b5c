/**
 * The control commands of the rule engine: `iptables`, `ip6tables`,
 * `iptables-save`, `ip6tables-save`, `iptables-restore`,
 * `ip6tables-restore` and `proc`, each accepting what the real tool accepts
 * and answering with its exit status and messages.
 */
import type { Family } from '../../xt/packet.js';
import type { CommandResult, CommandTable } from '../commands.js';
import { XtError } from '../../xt/extension.js';
import { applyCommand, chainForMatching, findRule, ruleNotFound } from './apply.js';
import { KERNEL, kernelError, formatError, NfError, toNfError } from './errors.js';
import type { Netfilter } from './engine.js';
import { ctime, echoRule, listRulesText, listText, saveTableSteps } from './format.js';
import { isTableName, type Chain, type FamilyRules, type Table, type XtrTable } from './model.js';
import { parseCommand, type ParsedCommand, type ParseEnv } from './parse.js';
import { RuleSetChanged, runSliced, runSteps, type Steps } from './slices.js';

export interface CommandOptions {
  /** Clock for the iptables-save header/footer (tests make it fixed). */
  now?: () => Date;
}

const ok = (stdout = ''): CommandResult => ({ status: 0, stdout, stderr: '' });

function fail(e: unknown, prog: string): CommandResult {
  const err = toNfError(e);
  return { status: err.status, stdout: '', stderr: formatError(err, prog) };
}

function progName(family: Family, tool = ''): string {
  return `${family === 4 ? 'iptables' : 'ip6tables'}${tool}`;
}

function parseEnv(nf: Netfilter, family: Family, rules: () => FamilyRules): ParseEnv {
  return {
    family,
    registry: nf.registry,
    chainExists: (table, name) => rules().table(table).chains.has(name),
  };
}

const USAGE = (prog: string) =>
  `${prog} v1.8.9 (xtr)\n\nUsage: ${prog} -[ACD] chain rule-specification [options]\n` +
  `       ${prog} -I chain [rulenum] rule-specification [options]\n` +
  `       ${prog} -R chain rulenum rule-specification [options]\n` +
  `       ${prog} -D chain rulenum [options]\n` +
  `       ${prog} -[LS] [chain [rulenum]] [options]\n` +
  `       ${prog} -[FZ] [chain] [options]\n` +
  `       ${prog} -[NX] chain\n` +
  `       ${prog} -E old-chain-name new-chain-name\n` +
  `       ${prog} -P chain target [options]\n` +
  `       ${prog} -h (print this help information)\n`;

/** Runs one iptables/ip6tables command line. */
export function runIptables(nf: Netfilter, family: Family, args: readonly string[]): CommandResult {
  return runSteps(iptablesSteps(nf, family, args));
}

/** runIptables as steps that may pause (slices.ts): a change's check and compile of a large table. */
export function* iptablesSteps(nf: Netfilter, family: Family, args: readonly string[]): Steps<CommandResult> {
  const prog = progName(family);
  let notice = '';
  try {
    const cmd = parseCommand(args, parseEnv(nf, family, () => nf.rules(family)));
    notice = noticeOf(cmd);
    if (cmd.info === 'version') return ok(`${prog} v1.8.9 (xtr)\n`);
    if (cmd.info === 'help') return ok(USAGE(prog));
    if (cmd.otherFamily) {
      // iptables -6 / ip6tables -4 on a command line (inside a restore file such a line is skipped).
      const other = family === 4 ? 'IPv4 version of iptables' : 'IPv6 version of ip6tables';
      return { status: 2, stdout: '', stderr: `This is the ${other}.\nTry \`${prog} -h' or '${prog} --help' for more information.\n` };
    }
    nf.touch(family, cmd.table);
    return { ...ok(yield* executeSteps(nf, family, cmd)), stderr: notice };
  } catch (e) {
    // Not the command's failure: runSliced runs it again (slices.ts).
    if (e instanceof RuleSetChanged) throw e;
    const r = fail(e, prog);
    // iptables -v prints the rule before the kernel refuses it.
    const echoed = (e as { echo?: string } | null)?.echo;
    return { ...r, stdout: echoed ?? r.stdout, stderr: notice + r.stderr };
  }
}

/**
 * The extensions' stderr notices for the command's rule (ExtensionBase.notice):
 * iptables runs each extension's final check once per command line, so the
 * first expanded rule says it.
 */
function noticeOf(cmd: ParsedCommand): string {
  const rule = cmd.rules[0];
  if (rule === undefined) return '';
  let out = '';
  for (const m of rule.spec.matches) out += m.ext.notice?.(m.params) ?? '';
  const t = rule.spec.target;
  if (t.kind === 'ext') out += t.ext.notice?.(t.params) ?? '';
  return out;
}

function* executeSteps(nf: Netfilter, family: Family, cmd: ParsedCommand): Steps<string> {
  const kind = cmd.commands[0];
  // -v echoes each rule before it is committed, and names each chain flushed, zeroed or deleted.
  let echo = cmd.verbose ? cmd.rules.map((r) => echoRule(r.spec)).join('') : '';
  const chainNames = (all: () => string[]) => (cmd.chain !== null ? [cmd.chain] : all());
  const tableName = cmd.table;
  const table = (): Table => nf.rules(family).table(tableName);
  const chainOrAll = () => {
    if (cmd.chain === null) return null;
    const c = table().chains.get(cmd.chain);
    if (!c) throw kernelError(KERNEL.ENOENT);
    return c;
  };
  switch (kind) {
    case 'L':
    case 'Z': {
      const chain = chainOrAll();
      let out = '';
      // iptables lists first and then zeroes, whichever of -L/-Z came first.
      if (cmd.commands.includes('L')) {
        out = listText(table(), chain, cmd.ruleNum, { numeric: cmd.numeric, verbose: cmd.verbose, exact: cmd.exact, lineNumbers: cmd.lineNumbers });
      }
      if (cmd.commands.includes('Z')) {
        if (kind === 'Z' && cmd.ruleNum !== null && chain && cmd.ruleNum > chain.rules.length) throw kernelError(KERNEL.ENOENT);
        zero(table(), chain, kind === 'Z' ? cmd.ruleNum : null);
        if (cmd.verbose) out += chainNames(() => table().ordered().map((c) => c.name)).map((n) => `Zeroing chain \`${n}'\n`).join('');
      }
      return out;
    }
    case 'S': {
      const chain = chainOrAll();
      return listRulesText(table(), chain, cmd.ruleNum, cmd.verbose);
    }
    case 'C': {
      try {
        const chain = chainForMatching(table(), cmd);
        for (const r of cmd.rules) if (findRule(chain, r) < 0) throw ruleNotFound(r);
      } catch (e) {
        if (echo !== '') (e as { echo?: string }).echo = echo;
        throw e;
      }
      return echo;
    }
    default: {
      if (cmd.verbose && kind === 'F') echo += chainNames(() => table().ordered().map((c) => c.name)).map((n) => `Flushing chain \`${n}'\n`).join('');
      if (cmd.verbose && kind === 'X') echo += chainNames(() => table().ordered().filter((c) => !c.builtin).map((c) => c.name)).map((n) => `Deleting chain \`${n}'\n`).join('');
      try {
        yield* nf.commitSteps([{ family, tables: [tableName], change: (fr) => {
          const t = fr.table(tableName);
          // iptables-legacy's commit starts the built-in chains' policy counters again from zero
          // (rule counters are kept); -P -c then sets them. docs/compat.md.
          for (const c of t.chains.values()) {
            if (c.builtin) {
              c.pkts = 0;
              c.bytes = 0;
            }
          }
          applyCommand(t, cmd, family, nf.registry);
        } }]);
      } catch (e) {
        if (echo !== '') (e as { echo?: string }).echo = echo;
        throw e;
      }
      return echo;
    }
  }
}

function zero(table: Table, chain: Chain | null, ruleNum: number | null): void {
  const chains = chain ? [chain] : [...table.chains.values()];
  for (const c of chains) {
    if (ruleNum === null) {
      c.pkts = 0;
      c.bytes = 0;
    }
    c.rules.forEach((r, i) => {
      if (ruleNum !== null && i + 1 !== ruleNum) return;
      r.pkts = 0;
      r.bytes = 0;
    });
  }
}

/** iptables-save text of the tables in use (or `-t TABLE`), newest first like the kernel's table list. */
export function saveText(nf: Netfilter, family: Family, opts: { counters: boolean; table?: XtrTable | null; now?: Date; persist?: boolean }): string {
  return runSteps(saveTextSteps(nf.rules(family), opts));
}

/**
 * saveText as steps (one per table and per 256 rules), over `fr` as it is
 * when called: a rule set is replaced, never edited, so pausing between
 * steps still writes one consistent set (counters as they are read).
 */
export function* saveTextSteps(fr: FamilyRules, opts: { counters: boolean; table?: XtrTable | null; now?: Date; persist?: boolean }): Steps<string> {
  const family = fr.family;
  const names = opts.table ? [opts.table] : fr.loaded.slice();
  const when = ctime(opts.now ?? new Date());
  const prog = progName(family, '-save');
  let out = '';
  for (const name of names) {
    out += `# Generated by ${prog} v1.8.9 on ${when}\n`;
    out += yield* saveTableSteps(fr.table(name), opts.counters, opts.persist ?? false);
    out += `# Completed on ${when}\n`;
  }
  return out;
}

export function runSave(nf: Netfilter, family: Family, args: readonly string[], opts: CommandOptions = {}): CommandResult {
  return runSteps(saveSteps(nf, family, args, opts));
}

function* saveSteps(nf: Netfilter, family: Family, args: readonly string[], opts: CommandOptions = {}): Steps<CommandResult> {
  const prog = progName(family, '-save');
  let counters = false;
  let table: XtrTable | null = null;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-c' || a === '--counters') counters = true;
    else if (a === '-t' || a === '--table' || a.startsWith('--table=')) {
      const v = a.startsWith('--table=') ? a.slice(8) : args[++i];
      if (v === undefined || !isTableName(v)) {
        return { status: 1, stdout: '', stderr: `${prog} v1.8.9 (xtr): Can't initialize: Table does not exist (do you need to insmod?)\n` };
      }
      table = v;
    } else if (a === '-M' || a === '--modprobe') i++;
    else if (a === '-V' || a === '--version') return ok(`${prog} v1.8.9 (xtr)\n`);
    else return { status: 1, stdout: '', stderr: `${prog}: unrecognized option '${a}'\nUnknown arguments found on commandline\n` };
  }
  if (table) nf.touch(family, table);
  return ok(yield* saveTextSteps(nf.rules(family), { counters, table, now: opts.now?.() }));
}

/** Splits an iptables-restore rule line into words, honouring "double quotes" as iptables-restore does. */
export function splitLine(line: string, lineNo: number): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '\\' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cur += ch;
      continue;
    }
    if (ch === '"') {
      quoted = true;
      inWord = true;
    } else if (ch === ' ' || ch === '\t') {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += ch;
      inWord = true;
    }
  }
  if (quoted) throw new RestoreError(`iptables-restore: line ${lineNo}: unterminated quote`, 1);
  if (inWord) words.push(cur);
  return words;
}

export class RestoreError extends Error {
  constructor(
    readonly text: string,
    readonly status: number,
  ) {
    super(text);
  }
}

export interface RestoreOptions {
  noflush: boolean;
  test: boolean;
  counters: boolean;
  /** Only this table (`-T`). */
  table: XtrTable | null;
}

/**
 * Restores a whole iptables-save file atomically: every table in it is
 * rebuilt on copies, checked, and swapped in together; any error leaves
 * the running rule set as it was. Returns '' or throws RestoreError.
 */
/** Returns what the extensions noted on stderr for the rules (ExtensionBase.notice), in line order. */
export function restore(nf: Netfilter, family: Family, input: string, opts: RestoreOptions): string {
  return runSteps(restoreSteps(nf, family, input, opts));
}

/** restore as steps that may pause (slices.ts): one per line, then the transaction's own. */
export function* restoreSteps(nf: Netfilter, family: Family, input: string, opts: RestoreOptions): Steps<string> {
  const prog = progName(family, '-restore');
  let notices = '';
  const lines = input.split('\n');
  // iptables-restore reads with fgets: a last line without its newline is not recognised as
  // COMMIT / *table / :chain and is parsed as rule arguments instead (so it fails), as there.
  const unterminated = lines.length > 0 && lines[lines.length - 1] !== '' ? lines.length : 0;
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const tables: XtrTable[] = [];
  let scanned = 0;
  for (const l of lines) {
    if ((++scanned & 1023) === 0) yield;
    const m = /^\*(\S+)/.exec(l.trim());
    if (m && isTableName(m[1]) && !tables.includes(m[1]) && (!opts.table || opts.table === m[1])) tables.push(m[1]);
  }
  const commitLine = new Map<string, number>();
  let failedLine = 0;
  const paramError = (e: NfError, lineNo: number): RestoreError => {
    const text = formatError(e, prog);
    const hintAt = text.lastIndexOf('Try `');
    const withLine = hintAt >= 0 ? `${text.slice(0, hintAt)}Error occurred at line: ${lineNo}\n${text.slice(hintAt)}` : `${text}Error occurred at line: ${lineNo}\n`;
    return new RestoreError(withLine, e.status);
  };
  const lineFailed = (lineNo: number, e: NfError | null): RestoreError => {
    let text = `${prog}: line ${lineNo} failed\n`;
    if (e) text += `${prog}: line ${lineNo}: ${e.message}${e.detail ? ` (${e.detail})` : ''}\n`;
    return new RestoreError(text, 1);
  };

  const change = function* (fr: FamilyRules): Steps<void> {
    notices = '';
    let current: XtrTable | null = null;
    let skipping = false;
    let lineNo = 0;
    const env = parseEnv(nf, family, () => fr);
    for (const raw of lines) {
      if (lineNo % 16 === 15) yield;
      lineNo++;
      failedLine = lineNo;
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      if (lineNo === unterminated && current !== null && !skipping) {
        try {
          parseCommand(splitLine(line, lineNo), env, current);
        } catch (e) {
          throw paramError(toNfError(e), lineNo);
        }
      }
      if (line === 'COMMIT') {
        if (current === null) throw lineFailed(lineNo, null);
        commitLine.set(current, lineNo);
        current = null;
        skipping = false;
        continue;
      }
      if (line.startsWith('*')) {
        if (current !== null) throw paramError(new NfError(`Bad argument \`${line.split(/\s+/)[0]}'`, 2, 'bare'), lineNo);
        const name = line.slice(1).trim();
        if (!isTableName(name)) {
          throw paramError(new NfError(`${prog}: unable to initialize table '${name}'\n`), lineNo);
        }
        current = name;
        skipping = opts.table !== null && opts.table !== name;
        if (!skipping) {
          // A restored table's policy counters start from zero (set from the file under -c).
          for (const c of fr.table(name).chains.values()) {
            c.pkts = 0;
            c.bytes = 0;
          }
        }
        if (!skipping && !opts.noflush) {
          // Without --noflush the table starts empty: user chains go, built-in chains keep their policy.
          const t = fr.table(name);
          for (const [n, c] of [...t.chains]) {
            if (c.builtin) c.rules = [];
            else t.chains.delete(n);
          }
        }
        continue;
      }
      if (current === null) throw lineFailed(lineNo, null);
      if (skipping) continue;
      const table = fr.table(current);
      if (line.startsWith(':')) {
        const m = /^:(\S+)\s+(\S+)(?:\s+\[(\d+):(\d+)\])?\s*$/.exec(line);
        if (!m) throw paramError(new NfError(`${prog}: line ${lineNo} policy invalid`), lineNo);
        const [, chainName, policy, pk, by] = m;
        const existing = table.chains.get(chainName);
        if (policy === '-') {
          if (existing && existing.builtin) {
            throw new RestoreError(`${prog} v1.8.9 (xtr): Can't set policy \`-' on \`${chainName}' line ${lineNo}: Bad policy name\n`, 1);
          }
          if (existing) {
            if (opts.noflush) existing.rules = [];
          } else {
            try {
              applyCommand(table, { ...EMPTY_CMD, commands: ['N'], chain: chainName }, family, nf.registry);
            } catch (e) {
              const err = toNfError(e);
              throw err.status === 2 ? paramError(err, lineNo) : lineFailed(lineNo, err);
            }
          }
        } else {
          if (!existing || !existing.builtin) {
            throw new RestoreError(`${prog} v1.8.9 (xtr): Can't set policy \`${policy}' on \`${chainName}' line ${lineNo}: Bad built-in chain name\n`, 1);
          }
          if (policy !== 'ACCEPT' && policy !== 'DROP') {
            throw new RestoreError(`${prog} v1.8.9 (xtr): Can't set policy \`${policy}' on \`${chainName}' line ${lineNo}: Bad policy name\n`, 1);
          }
          existing.policy = policy;
        }
        const c = table.chains.get(chainName)!;
        // User chains have no counters of their own in the kernel.
        if (opts.counters && pk !== undefined && c.builtin) {
          c.pkts = Number(pk);
          c.bytes = Number(by);
        }
        continue;
      }
      let words = splitLine(line, lineNo);
      let counters: [string, string] | null = null;
      const cm = /^\[(\d+):(\d+)\]$/.exec(words[0] ?? '');
      if (cm) {
        counters = [cm[1], cm[2]];
        words = words.slice(1);
      }
      if (words.some((w) => w === '-t' || w === '--table')) {
        throw paramError(new NfError(`The -t option cannot be used in ${prog}.\n`), lineNo);
      }
      if (counters && opts.counters) words = [...words, '-c', counters[0], counters[1]];
      let cmd: ParsedCommand;
      try {
        cmd = parseCommand(words, env, current);
      } catch (e) {
        const err = toNfError(e);
        throw err.status === 1 ? lineFailed(lineNo, err) : paramError(err, lineNo);
      }
      if (cmd.otherFamily || cmd.info) continue;
      notices += noticeOf(cmd);
      const kind = cmd.commands[0];
      try {
        if (kind === 'L' || kind === 'S' || kind === 'C') continue;
        if (kind === 'Z') {
          zero(table, cmd.chain === null ? null : table.chains.get(cmd.chain) ?? null, cmd.ruleNum);
          continue;
        }
        applyCommand(table, cmd, family, nf.registry);
      } catch (e) {
        const err = toNfError(e);
        throw err.status === 2 ? paramError(err, lineNo) : lineFailed(lineNo, err);
      }
    }
    if (current !== null) throw new RestoreError(`${prog}: COMMIT expected at line ${lineNo + 1}\n`, 1);
  };

  try {
    yield* nf.commitSteps([{ family, tables, change }], { dryRun: opts.test });
  } catch (e) {
    if (e instanceof RestoreError || e instanceof RuleSetChanged) throw e;
    const err = toNfError(e);
    if (err.table !== null) throw lineFailed(commitLine.get(err.table) ?? failedLine, err);
    if (e instanceof XtError || e instanceof NfError) throw err.status === 2 ? paramError(err, failedLine) : lineFailed(failedLine, err);
    throw e;
  }
  // Tables come into use in file order, so iptables-save lists tables new to the engine newest
  // first, as the kernel does (restoreState puts back the saved order itself).
  if (!opts.test) for (const t of tables) nf.touch(family, t);
  return notices;
}

const EMPTY_CMD: ParsedCommand = {
  commands: [],
  table: 'filter',
  chain: null,
  ruleNum: null,
  arg2: null,
  rules: [],
  verbose: false,
  numeric: false,
  exact: false,
  lineNumbers: false,
  counters: null,
  otherFamily: false,
  info: null,
};

export function runRestore(nf: Netfilter, family: Family, args: readonly string[], input: string | null): CommandResult {
  return runSteps(restoreCommandSteps(nf, family, args, input));
}

function* restoreCommandSteps(nf: Netfilter, family: Family, args: readonly string[], input: string | null): Steps<CommandResult> {
  const prog = progName(family, '-restore');
  const opts: RestoreOptions = { noflush: false, test: false, counters: false, table: null };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-n' || a === '--noflush') opts.noflush = true;
    else if (a === '-t' || a === '--test') opts.test = true;
    else if (a === '-c' || a === '--counters') opts.counters = true;
    else if (a === '-v' || a === '--verbose' || a === '-w' || a === '--wait') continue;
    else if (a === '-W' || a === '--wait-interval' || a === '-M' || a === '--modprobe') i++;
    else if (a === '-T' || a === '--table') {
      const v = args[++i];
      if (v === undefined || !isTableName(v)) return { status: 1, stdout: '', stderr: `${prog}: table '${v}' does not exist\n` };
      opts.table = v;
    } else if (a === '-V' || a === '--version') return ok(`${prog} v1.8.9 (xtr)\n`);
    else return { status: 1, stdout: '', stderr: `${prog}: unrecognized option '${a}'\n` };
  }
  try {
    return { ...ok(), stderr: yield* restoreSteps(nf, family, input ?? '', opts) };
  } catch (e) {
    if (e instanceof RestoreError) return { status: e.status, stdout: '', stderr: e.text };
    if (e instanceof RuleSetChanged) throw e;
    return fail(e, prog);
  }
}

/** `xtr proc ls | cat PATH | write PATH DATA...` over the extensions' procfs-like files. */
export function runProc(nf: Netfilter, args: readonly string[], input: string | null): CommandResult {
  const [verb, path, ...rest] = args;
  const err = (status: number, text: string): CommandResult => ({ status, stdout: '', stderr: `proc: ${text}\n` });
  switch (verb) {
    case 'ls':
      return ok(nf.proc.paths().map((p) => `${p}\n`).join(''));
    case 'cat': {
      if (!path) return err(2, 'usage: proc cat PATH');
      const f = nf.proc.get(path);
      if (!f) return err(1, `${path}: No such file or directory`);
      return ok(f.read());
    }
    case 'write': {
      if (!path) return err(2, 'usage: proc write PATH DATA');
      const f = nf.proc.get(path);
      if (!f) return err(1, `${path}: No such file or directory`);
      if (!f.write) return err(1, `${path}: Permission denied`);
      const data = rest.length > 0 ? rest.join(' ') : (input ?? '');
      try {
        // Like `echo LINE > file`: each line is one write.
        for (const line of data.split('\n')) if (line !== '') f.write(line);
      } catch (e) {
        return err(1, `${path}: ${e instanceof Error ? e.message : String(e)}`);
      }
      return ok();
    }
    default:
      return err(2, 'usage: proc ls | proc cat PATH | proc write PATH DATA');
  }
}

/**
 * The CommandTable the control socket registers. Rule changes and saves run
 * in slices (slices.ts), so a large rule set never stalls forwarding; the
 * socket runs one command at a time, so they do not interleave.
 */
export function netfilterCommands(nf: Netfilter, opts: CommandOptions = {}): CommandTable {
  return {
    iptables: (args) => runSliced(() => iptablesSteps(nf, 4, args)),
    ip6tables: (args) => runSliced(() => iptablesSteps(nf, 6, args)),
    'iptables-save': (args) => runSliced(() => saveSteps(nf, 4, args, opts)),
    'ip6tables-save': (args) => runSliced(() => saveSteps(nf, 6, args, opts)),
    'iptables-restore': (args, input) => runSliced(() => restoreCommandSteps(nf, 4, args, input)),
    'ip6tables-restore': (args, input) => runSliced(() => restoreCommandSteps(nf, 6, args, input)),
    proc: (args, input) => runProc(nf, args, input),
  };
}
