/**
 * Environment overrides of the common settings (issue 13 §6, docs/config.md
 * "Environment overrides"): what a container user sets with `docker run -e` or
 * compose's `environment:` instead of editing the mounted file.
 *
 * They are applied to the parsed document before validation, so a bad value
 * gets the same check as in the file, and the error names the variable. An
 * empty variable counts as unset (compose's `FOO: ""` and `-e FOO=` are common
 * ways of leaving one blank). A command-line flag (--log-level, --socket,
 * --state-dir, --config) still wins over its variable.
 */
import { ConfigError } from './config.js';

export type Env = Readonly<Record<string, string | undefined>>;

/** Variable -> the config path it sets (docs/config.md lists the same). */
export const ENV_OVERRIDES = {
  XTR_LOG_LEVEL: 'logLevel',
  XTR_STATE_DIR: 'stateDir',
  XTR_SOCKET: 'control.socket',
  XTR_RULES_V4: 'netfilter.rulesFiles.v4',
  XTR_RULES_V6: 'netfilter.rulesFiles.v6',
  XTR_METRICS_LISTEN: 'metrics.listen',
  XTR_FAIL_OPEN: 'failOpen',
  XTR_NAT_PORTS: 'gateway.natPorts',
  XTR_FORWARD_PORTS: 'gateway.forwardPorts',
  XTR_WORKERS: 'workers',
} as const;

export type EnvVar = keyof typeof ENV_OVERRIDES;

/** `XTR_CONFIG`: the configuration file when no --config is given. */
export function configPathFromEnv(env: Env): string | undefined {
  const v = env.XTR_CONFIG?.trim();
  return v ? v : undefined;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Sets `path` (dot-separated) in a copy of `doc`, copying each object on the way. */
function setPath(doc: Record<string, unknown>, path: string, value: unknown, name: string): Record<string, unknown> {
  const [head, ...rest] = path.split('.');
  const out = { ...doc };
  if (rest.length === 0) {
    out[head!] = value;
    return out;
  }
  const inner = out[head!];
  if (inner !== undefined && inner !== null && !isObj(inner)) {
    throw new ConfigError(head!, `${name} sets ${path}, but the file's ${head} is not a mapping`);
  }
  out[head!] = setPath(isObj(inner) ? inner : {}, rest.join('.'), value, name);
  return out;
}

const TRUE = ['1', 'true', 'yes', 'on'];
const FALSE = ['0', 'false', 'no', 'off'];

/**
 * The document with every set XTR_* override applied; `used` maps each config
 * path that was overridden to its variable, for `withEnvBlame`.
 */
export function applyEnvOverrides(doc: unknown, env: Env): { doc: unknown; used: Map<string, EnvVar> } {
  const used = new Map<string, EnvVar>();
  let out: unknown = doc === null || doc === undefined ? {} : doc;
  for (const name of Object.keys(ENV_OVERRIDES) as EnvVar[]) {
    const raw = env[name]?.trim();
    if (!raw) continue;
    if (!isObj(out)) return { doc: out, used }; // validation refuses the root itself
    const path: string = ENV_OVERRIDES[name];
    let value: unknown = raw;
    if (name === 'XTR_FAIL_OPEN') {
      const l = raw.toLowerCase();
      if (TRUE.includes(l)) value = true;
      else if (FALSE.includes(l)) value = false;
      else throw new ConfigError('failOpen', `${name}=${JSON.stringify(raw)} is not a boolean (${[...TRUE, ...FALSE].join(', ')})`);
    } else if (name === 'XTR_WORKERS') {
      value = /^[0-9]+$/.test(raw) ? Number(raw) : raw; // not a number: validation names it
    } else if (name === 'XTR_FORWARD_PORTS') {
      value = raw.split(/[\s,]+/).filter((s) => s !== '');
    } else if (name === 'XTR_METRICS_LISTEN' && raw.toLowerCase() === 'off') {
      // Turns a metrics endpoint the file enables off.
      out = { ...out, metrics: null };
      used.set('metrics', name);
      continue;
    }
    out = setPath(out, path, value, name);
    used.set(path, name);
  }
  return { doc: out, used };
}

/**
 * Runs the validation; a ConfigError about an overridden path is re-thrown
 * naming the variable, since the file is not where the bad value came from.
 */
export function withEnvBlame<T>(used: ReadonlyMap<string, EnvVar>, validate: () => T): T {
  try {
    return validate();
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    for (const [path, name] of used) {
      if (e.path === path || e.path.startsWith(`${path}.`) || e.path.startsWith(`${path}[`)) {
        throw new ConfigError(e.path, `${e.message.slice(e.path.length + 2)} (from the environment: ${name})`);
      }
    }
    throw e;
  }
}
