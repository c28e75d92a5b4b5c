/**
 * Where an extension may be placed, checked as the kernel's xt_check_match /
 * xt_check_target do before an extension's own checkentry: its table list,
 * the hooks from which the rule's chain is reachable, and its `-p` protocol.
 * The rule engine, sub-targets (CHAOS calling DELUDE/TARPIT) and the module
 * test harness all go through here, so a refusal reads the same everywhere.
 */
import { HOOK_NAMES } from '../../xt/packet.js';
import type { CheckEnv, Extension, RuleInfo, TargetInstance } from '../../xt/extension.js';
import type { ExtensionRegistry } from '../../modules/registry.js';
import { KERNEL, kernelError, NfError } from './errors.js';
import { parseExtensionArgs } from './parse.js';

/** Throws the kernel's EINVAL (with the line it logs) when `ext` may not sit in `rule` under `hookMask`. */
export function checkPlacement(ext: Extension, rule: RuleInfo, hookMask: number): void {
  const fam = rule.family === 4 ? 'ip_tables' : 'ip6_tables';
  const what = `${ext.name} ${ext.kind}`;
  if (ext.tables && !ext.tables.includes(rule.table)) {
    throw kernelError(KERNEL.EINVAL, `x_tables: ${fam}: ${what}: only valid in ${ext.tables.join('/')} table, not ${rule.table}`);
  }
  if (ext.hooks) {
    let ok = 0;
    for (const h of ext.hooks) ok |= 1 << h;
    if ((hookMask & ~ok) !== 0) {
      const bad = HOOK_NAMES.filter((_, h) => hookMask & ~ok & (1 << h));
      throw kernelError(KERNEL.EINVAL, `x_tables: ${fam}: ${what}: used from hooks ${bad.join('/')}, but only usable from ${ext.hooks.map((h) => HOOK_NAMES[h]).join('/')}`);
    }
  }
  if (ext.proto !== undefined && ext.proto !== 0 && (rule.proto !== ext.proto || rule.protoInverted)) {
    throw kernelError(KERNEL.EINVAL, `x_tables: ${fam}: ${what}: only valid for protocol ${ext.proto}`);
  }
}

/**
 * CheckEnv.subTarget for one rule (xt_request_find_target, then the target's
 * checks in the caller's rule context): the registry's target of the rule's
 * family, its option words read as iptables reads them, its placement
 * checked, then its check() with the caller's env. Each instance is pushed
 * on `created`, whose owner activates and destroys it with the caller's.
 */
export function subTargetOf(registry: ExtensionRegistry, env: () => CheckEnv, created: TargetInstance[]): CheckEnv['subTarget'] {
  return (name, args, how) => {
    const e = env();
    const ext = registry.target(name, e.rule.family);
    if (!ext) throw new NfError(`Couldn't load target \`${name}':No such file or directory\n`);
    const { params } = parseExtensionArgs(ext, args, e.rule);
    // The caller may vouch for the packets it hands over (SubTargetOptions.placement).
    if (how?.placement !== false) checkPlacement(ext, e.rule, e.hookMask);
    const inst = ext.check(params, e);
    created.push(inst);
    return inst;
  };
}
