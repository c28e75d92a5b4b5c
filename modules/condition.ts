/**
 * `-m condition [!] --condition NAME` (xtables-addons' libxt_condition +
 * xt_condition): matches while the named boolean is 1, flipped by writing
 * `0` or `1` to /proc/net/nf_condition/NAME. Facts:
 * ../shared/spec/matches-facts.md §3.
 *
 * As upstream v3:
 *  - --condition is mandatory and given once ("Condition match: must specify
 *    --condition", "Can't specify multiple conditions"); a name of 31 bytes
 *    or more is "File name too long"; the kernel check refuses "", ".", ".."
 *    and names holding "/" (EINVAL, `xt_condition: name not allowed or too
 *    long: "NAME"`);
 *  - one variable per name, shared by IPv4 and IPv6 rules, created at 0 by
 *    the first rule naming it and gone with the last;
 *  - read gives "0\n" or "1\n"; a write looks at its first byte only: "0"
 *    clears, "1" sets, anything else (and an empty write) changes nothing
 *    and still succeeds.
 *
 * Declared state (key "condition:NAME"): its value is saved across restarts.
 */
import type { PacketContext } from '../xt/packet.js';
import { XtError, type MatchExtension } from '../xt/extension.js';
import type { StateSpec } from '../xt/state.js';

/** The name buffer is 31 bytes with its NUL. */
export const CONDITION_NAME_MAX = 30;

export interface ConditionParams {
  name: string;
  invert: boolean;
}

export interface ConditionVar {
  enabled: boolean;
}

const condition: MatchExtension<ConditionParams> = {
  kind: 'match',
  name: 'condition',
  families: [4, 6],
  options: [{ name: 'condition', arg: 'required', invertible: true }],
  parse(opts) {
    let p: ConditionParams | null = null;
    for (const o of opts) {
      if (p) throw new XtError("Can't specify multiple conditions");
      const v = o.value ?? '';
      if (Buffer.byteLength(v) > CONDITION_NAME_MAX) throw new XtError('File name too long');
      p = { name: v, invert: o.inverted };
    }
    if (!p) throw new XtError('Condition match: must specify --condition');
    return p;
  },
  check(p, env) {
    if (p.name === '' || p.name === '.' || p.name === '..' || p.name.includes('/')) {
      throw new XtError(`xt_condition: name not allowed or too long: "${p.name}"`, 1, 'EINVAL');
    }
    const spec: StateSpec<ConditionVar> = {
      key: `condition:${p.name}`,
      create: () => ({ enabled: false }),
      proc: {
        path: `net/nf_condition/${p.name}`,
        read: (c) => (c.enabled ? '1\n' : '0\n'),
        write: (c, data) => {
          if (data[0] === '0') c.enabled = false;
          else if (data[0] === '1') c.enabled = true;
        },
      },
      save: (c) => (c.enabled ? 1 : 0),
      load: (c, saved) => {
        if (saved !== 0 && saved !== 1) throw new XtError(`condition: ${p.name}: saved value ${JSON.stringify(saved)} is not 0 or 1`, 1);
        c.enabled = saved === 1;
      },
    };
    const v = env.state.declare(spec);
    const invert = p.invert;
    let released = false;
    return {
      match: (_pkt: PacketContext) => v.enabled !== invert,
      destroy() {
        if (released) return;
        released = true;
        env.state.release(spec.key);
      },
    };
  },
  save(p) {
    return `${p.invert ? ' !' : ''} --condition "${p.name}" `;
  },
  print(p) {
    return ` -m condition${condition.save(p)}`;
  },
};

export default condition;
