/**
 * Applying a parsed iptables command to a (copied) table: what libiptc does
 * between iptc_init and iptc_commit, with its errno values turned into
 * iptables' messages. Shared by single commands and iptables-restore lines.
 */
import type { Family } from '../../xt/packet.js';
import type { ExtensionRegistry } from '../../modules/registry.js';
import { KERNEL, kernelError, NfError } from './errors.js';
import { Chain, Rule, type RuleSpec, type Table } from './model.js';
import { ruleText } from './format.js';
import { RESERVED_TARGETS, type ParsedCommand } from './parse.js';

const MAX_CHAIN_NAME = 29;

/** iptables' parse-time checks of a new chain name (status 2). */
export function checkChainName(name: string, family: Family, registry: ExtensionRegistry): void {
  if (name.length >= MAX_CHAIN_NAME) throw new NfError(`chain name \`${name}' too long (must be under ${MAX_CHAIN_NAME} chars)`);
  if (name.startsWith('-')) throw new NfError("chain name not allowed to start with `-'");
  if (name === '' || /\s/.test(name)) throw new NfError(`Invalid chain name \`${name}'`);
  if (RESERVED_TARGETS.has(name) || registry.hasTarget(name, family)) throw new NfError('chain name may not clash with target name');
}

function chainOf(table: Table, name: string | null): Chain {
  const c = name === null ? undefined : table.chains.get(name);
  if (!c) throw kernelError(KERNEL.ENOENT);
  return c;
}

/**
 * libiptc maps a rule's jump target before it looks for the rule's chain: a jump or goto to a
 * built-in chain is "Invalid argument" whatever else is wrong.
 */
export function checkJumps(table: Table, cmd: ParsedCommand): void {
  for (const r of cmd.rules) {
    const t = r.spec.target;
    if (t.kind === 'jump' && table.chains.get(t.chain)?.builtin) {
      throw kernelError(KERNEL.EINVAL, `x_tables: jump to built-in chain ${t.chain} is not allowed`);
    }
  }
}

/**
 * The chain a -D/-C rule spec is looked for in. libiptc reports a missing chain there as a
 * missing rule ("Bad rule"), and then maps the jump target (a built-in chain: EINVAL).
 */
export function chainForMatching(table: Table, cmd: ParsedCommand): Chain {
  const chain = cmd.chain === null ? undefined : table.chains.get(cmd.chain);
  if (!chain) throw kernelError(KERNEL.BAD_RULE);
  checkJumps(table, cmd);
  return chain;
}

/** No such rule: libiptc's last call differs for a rule jumping to a user chain, and so does the message. */
export function ruleNotFound(rule: Rule): NfError {
  return kernelError(rule.spec.target.kind === 'jump' ? KERNEL.ENOENT : KERNEL.BAD_RULE);
}

/** Index of the first rule whose save text equals `rule`'s, or -1 (libiptc compares the whole entry). */
export function findRule(chain: Chain, rule: Rule): number {
  return chain.rules.findIndex((r) => r.text === rule.text);
}

/**
 * Applies a modifying command (A I R D F N X P E) to `table`, which the
 * caller has copied. Z and read-only commands are handled by the caller.
 */
export function applyCommand(table: Table, cmd: ParsedCommand, family: Family, registry: ExtensionRegistry): void {
  const kind = cmd.commands[0];
  // The order of the checks is libiptc's: the chain, then an index, then the jump target.
  switch (kind) {
    case 'A': {
      const chain = chainOf(table, cmd.chain);
      checkJumps(table, cmd);
      chain.rules.push(...cmd.rules);
      return;
    }
    case 'I': {
      const chain = chainOf(table, cmd.chain);
      const n = cmd.ruleNum ?? 1;
      if (n > chain.rules.length + 1) throw kernelError(KERNEL.IDX_INSERT);
      checkJumps(table, cmd);
      // libiptc inserts each expanded rule at the same position, so they end up reversed, as in iptables.
      for (const r of cmd.rules) chain.rules.splice(n - 1, 0, r);
      return;
    }
    case 'R': {
      if (cmd.rules.length !== 1) throw new NfError('Replacement rule does not specify a unique address');
      const chain = chainOf(table, cmd.chain);
      const n = cmd.ruleNum!;
      if (n > chain.rules.length) throw kernelError(KERNEL.IDX_REPLACE);
      checkJumps(table, cmd);
      chain.rules[n - 1] = cmd.rules[0];
      return;
    }
    case 'D': {
      if (cmd.ruleNum !== null) {
        const chain = chainOf(table, cmd.chain);
        if (cmd.ruleNum > chain.rules.length) throw kernelError(KERNEL.IDX_DELETE);
        chain.rules.splice(cmd.ruleNum - 1, 1);
        return;
      }
      const chain = chainForMatching(table, cmd);
      for (const r of cmd.rules) {
        const at = findRule(chain, r);
        if (at < 0) throw ruleNotFound(r);
        chain.rules.splice(at, 1);
      }
      return;
    }
    case 'F': {
      if (cmd.chain !== null) chainOf(table, cmd.chain).rules = [];
      else for (const c of table.chains.values()) c.rules = [];
      return;
    }
    case 'N': {
      checkChainName(cmd.chain!, family, registry);
      if (table.chains.has(cmd.chain!)) throw kernelError(KERNEL.EEXIST_CHAIN);
      table.chains.set(cmd.chain!, new Chain(cmd.chain!, null, null));
      return;
    }
    case 'X': {
      const victims = cmd.chain !== null ? [chainOf(table, cmd.chain)] : table.ordered().filter((c) => !c.builtin);
      // libiptc tries every chain and reports the last failure; nothing is committed if any failed.
      let failure: NfError | null = null;
      for (const c of victims) {
        if (c.builtin) failure = kernelError(KERNEL.EINVAL, `x_tables: cannot delete built-in chain ${c.name}`);
        else if (table.references(c.name) > 0) failure = kernelError(KERNEL.EMLINK);
        else if (c.rules.length > 0) failure = kernelError(KERNEL.ENOTEMPTY);
        else table.chains.delete(c.name);
      }
      if (failure) throw failure;
      return;
    }
    case 'P': {
      const c = cmd.chain === null ? undefined : table.chains.get(cmd.chain);
      if (!c || !c.builtin) throw kernelError(KERNEL.BAD_BUILTIN);
      if (cmd.arg2 !== 'ACCEPT' && cmd.arg2 !== 'DROP') throw kernelError(KERNEL.BAD_POLICY);
      c.policy = cmd.arg2;
      if (cmd.counters) {
        c.pkts = cmd.counters[0];
        c.bytes = cmd.counters[1];
      }
      return;
    }
    case 'E': {
      const oldName = cmd.chain!;
      const newName = cmd.arg2!;
      checkChainName(newName, family, registry);
      // libiptc checks the new name first.
      if (table.chains.has(newName) || RESERVED_TARGETS.has(newName)) throw kernelError(KERNEL.EEXIST);
      const c = table.chains.get(oldName);
      if (!c || c.builtin) throw kernelError(KERNEL.ENOENT);
      const renamed = new Chain(newName, null, null, c.rules);
      table.chains.delete(oldName);
      table.chains.set(newName, renamed);
      // Jumps to the chain now name the new chain (new rule objects; counters carry over).
      for (const chain of table.chains.values()) {
        chain.rules = chain.rules.map((r) => {
          const t = r.spec.target;
          if (t.kind !== 'jump' || t.chain !== oldName) return r;
          const spec: RuleSpec = { ...r.spec, target: { ...t, chain: newName } };
          const nr = new Rule(spec, ruleText(spec));
          nr.pkts = r.pkts;
          nr.bytes = r.bytes;
          return nr;
        });
      }
      return;
    }
    default:
      throw new Error(`applyCommand: -${kind} is not a modifying command`);
  }
}
