/**
 * The control-command contract: the control socket (router/control.ts)
 * dispatches `xtr NAME args...` to a handler registered under NAME, so the
 * rule engine, conntrack and extensions add commands without the socket code
 * knowing them.
 */

export interface CommandResult {
  /** Process exit status the CLI returns (iptables: 0 ok, 1 error, 2 parameter problem). */
  status: number;
  stdout: string;
  stderr: string;
}

/** `input` is the CLI's standard input when the command reads it (e.g. iptables-restore), else null. */
export type CommandHandler = (args: string[], input: string | null) => CommandResult | Promise<CommandResult>;

export type CommandTable = Record<string, CommandHandler>;
