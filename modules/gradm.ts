/**
 * `-m gradm [!] --enabled | [!] --disabled` (xtables-addons libxt_gradm;
 * the kernel half lives in grsecurity): matches when grsecurity's RBAC
 * system is enabled, XOR the rule's one "inverted" bit (matches-facts.md §6).
 *
 * Userspace facts kept: the options take no argument, may be repeated and
 * combined, and only ever *set* the bit (`! --enabled` and `--disabled` set
 * it, `--enabled` and `! --disabled` leave it), so any combination that
 * sets it once is `--disabled`; no option is `--enabled`. Save prints
 * ` --disabled ` or ` --enabled `.
 *
 * The appliance meaning (docs/compat.md): xtr has no grsecurity, so "RBAC
 * enabled" is an appliance-wide switch an operator flips, as `gradm -E` /
 * `gradm -D` flip RBAC on a grsecurity box. It starts from the config file
 * (`extensions: { gradm: { rbac: true } }`, default false: a router without
 * an RBAC system has it disabled), is read and set at run time through
 * `xtr proc cat|write net/xt_gradm` (`enabled` / `disabled`, or 1 / 0), and
 * survives restarts with the rule set's saved state. All gradm rules share it.
 */
import type { MatchExtension } from '../xt/extension.js';
import { XtError } from '../xt/extension.js';
import type { StateSpec } from '../xt/state.js';

export interface GradmParams {
  /** The rule matches when RBAC is disabled (the "inverted" bit). */
  readonly disabled: boolean;
}

/** The appliance's RBAC switch, shared by every gradm rule. */
export interface RbacSwitch {
  enabled: boolean;
}

export const GRADM_STATE_KEY = 'gradm:rbac';
export const GRADM_PROC = 'net/xt_gradm';

function configured(settings: Readonly<Record<string, unknown>>): boolean {
  const s = settings.gradm;
  if (s === undefined || s === null) return false;
  if (typeof s !== 'object') throw new XtError('gradm: extensions.gradm must be an object such as { rbac: true }', 1, 'EINVAL');
  const rbac = (s as Record<string, unknown>).rbac;
  if (rbac === undefined) return false;
  if (typeof rbac !== 'boolean') throw new XtError(`gradm: extensions.gradm.rbac must be true or false, not ${JSON.stringify(rbac)}`, 1, 'EINVAL');
  return rbac;
}

function parseSwitch(data: string): boolean {
  const w = data.trim().toLowerCase();
  if (w === 'enabled' || w === 'enable' || w === '1') return true;
  if (w === 'disabled' || w === 'disable' || w === '0') return false;
  throw new XtError(`gradm: write "enabled" or "disabled" (or 1 / 0), not ${JSON.stringify(data.trim())}`);
}

const gradm: MatchExtension<GradmParams> = {
  kind: 'match',
  name: 'gradm',
  revision: 0,
  families: [4, 6],
  options: [
    { name: 'enabled', arg: 'none', invertible: true },
    { name: 'disabled', arg: 'none', invertible: true },
  ],
  parse(opts) {
    let disabled = false;
    for (const o of opts) if ((o.name === 'disabled') !== o.inverted) disabled = true;
    return { disabled };
  },
  check(p, env) {
    const initial = configured(env.settings);
    const spec: StateSpec<RbacSwitch> = {
      key: GRADM_STATE_KEY,
      create: () => ({ enabled: initial }),
      proc: {
        path: GRADM_PROC,
        read: (v) => (v.enabled ? 'enabled\n' : 'disabled\n'),
        write: (v, data) => {
          v.enabled = parseSwitch(data);
        },
      },
      save: (v) => v.enabled,
      load: (v, saved) => {
        if (typeof saved !== 'boolean') throw new Error(`gradm: saved RBAC switch is not a boolean: ${JSON.stringify(saved)}`);
        v.enabled = saved;
      },
    };
    const rbac = env.state.declare(spec);
    const disabled = p.disabled;
    return {
      match: () => rbac.enabled !== disabled,
      destroy: () => env.state.release(GRADM_STATE_KEY),
    };
  },
  save(p) {
    return p.disabled ? ' --disabled ' : ' --enabled ';
  },
  print(p) {
    return ` -m gradm${gradm.save(p)}`;
  },
};

export default gradm;
