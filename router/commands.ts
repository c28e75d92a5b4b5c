/**
 * The control-command contract: the control socket (router/control.ts)
 * dispatches `xtr NAME args...` to a handler registered under NAME, so the
 * rule engine, conntrack and extensions add commands without the socket code
 * knowing them.
 */
import { XtError } from '../xt/extension.js';
import type { ModuleCommand, StateLookup } from '../xt/state.js';

export interface CommandResult {
  /** Process exit status the CLI returns (iptables: 0 ok, 1 error, 2 parameter problem). */
  status: number;
  stdout: string;
  stderr: string;
}

/** `input` is the CLI's standard input when the command reads it (e.g. iptables-restore), else null. */
export type CommandHandler = (args: string[], input: string | null) => CommandResult | Promise<CommandResult>;

export type CommandTable = Record<string, CommandHandler>;

// ---------------------------------------------------------------------------
// Extensions' control commands: `xtr ext <command> [args]`.

/** What extensionCommands needs of an extension record (xt/extension.ts ExtensionBase). */
export interface CommandProvider {
  readonly name: string;
  readonly commands?: readonly ModuleCommand[];
}

/**
 * The `ext` command over every command the extensions offer, indexed once
 * from the registry's records (two extensions offering one name is a start-up
 * error naming both). An unknown command or arguments the command refuses
 * (XtError) exit with status 2 (or the XtError's status) and say what was wrong.
 */
export function extensionCommands(extensions: readonly CommandProvider[], state: StateLookup): CommandTable {
  const byName = new Map<string, { owner: string; cmd: ModuleCommand }>();
  for (const ext of extensions) {
    for (const cmd of ext.commands ?? []) {
      const had = byName.get(cmd.name);
      if (had?.cmd === cmd) continue; // one file registering the same record under several revisions
      if (had) throw new Error(`extension command "${cmd.name}" is offered by both ${had.owner} and ${ext.name}`);
      if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(cmd.name)) throw new Error(`extension ${ext.name}: command name ${JSON.stringify(cmd.name)} is not a plain word`);
      byName.set(cmd.name, { owner: ext.name, cmd });
    }
  }
  const synopsis = (cmd: ModuleCommand) => `xtr ext ${cmd.name}${cmd.usage ? ` ${cmd.usage}` : ''}`;
  const listing = () => {
    const names = [...byName.keys()].sort();
    if (names.length === 0) return 'no extension offers a command\n';
    return `${names.map((n) => `  ${synopsis(byName.get(n)!.cmd)}    (${byName.get(n)!.owner})`).join('\n')}\n`;
  };
  return {
    ext: (args) => {
      const [name, ...rest] = args;
      if (name === '-h' || name === '--help') return { status: 0, stdout: `usage: xtr ext COMMAND [ARGS...]\n${listing()}`, stderr: '' };
      if (name === undefined || name === '') return { status: 2, stdout: '', stderr: `xtr ext: which command? usage: xtr ext COMMAND [ARGS...]\n${listing()}` };
      const entry = byName.get(name);
      if (!entry) {
        const known = [...byName.keys()].sort();
        return { status: 2, stdout: '', stderr: `xtr ext: unknown command "${name}"; ${known.length ? `known: ${known.join(', ')}` : 'no extension offers a command'}\n` };
      }
      try {
        const out = entry.cmd.run(rest, state);
        return { status: 0, stdout: out === '' || out.endsWith('\n') ? out : `${out}\n`, stderr: '' };
      } catch (e) {
        // A bad argument is the user's mistake, said plainly; anything else is a fault the control server reports.
        if (!(e instanceof XtError)) throw e;
        const msg = e.message.endsWith('\n') ? e.message : `${e.message}\n`;
        return { status: e.status, stdout: '', stderr: `xtr ext ${name}: ${msg}usage: ${synopsis(entry.cmd)}\n` };
      }
    },
  };
}
