/**
 * The `xtr` command: `xtr [--socket PATH] COMMAND [ARGS...]` sends one request
 * to the router's control socket, prints what the command printed and exits
 * with its status. Commands that read a file from standard input (rule-set
 * restores, `proc write NAME` without a data argument) get stdin forwarded.
 */
import net from 'node:net';
import { DEFAULT_SOCKET, INPUT_CHUNK_CHARS, type ControlRequest } from './control-protocol.js';
import type { CommandResult } from './commands.js';
import { quietEpipe, versionLine } from '../xt/version.js';

/** Commands whose standard input is forwarded as the request's `input`. */
export const STDIN_COMMANDS: readonly string[] = ['iptables-restore', 'ip6tables-restore'];

/** Whether `cmd args` reads standard input. */
export function readsStdin(cmd: string, args: readonly string[]): boolean {
  if (STDIN_COMMANDS.includes(cmd)) return true;
  // `proc write NAME` with no data argument: the data is stdin (like `echo ... > /proc/net/...`).
  if (cmd === 'proc' && args[0] === 'write' && args.length === 2) return true;
  return false;
}

export class RouterNotRunning extends Error {}

/**
 * Writes a request. A large input (an iptables-restore file) is streamed as
 * chunk lines after the request line (ControlRequest.inputStream), so no line
 * has to be as long as the file (the router bounds lines: control.maxLineBytes).
 */
export function writeRequest(sock: net.Socket, req: ControlRequest): void {
  const input = req.input;
  if (input === null || input.length <= INPUT_CHUNK_CHARS) {
    sock.write(JSON.stringify(req) + '\n');
    return;
  }
  let out = JSON.stringify({ cmd: req.cmd, args: req.args, input: null, inputStream: true }) + '\n';
  for (let i = 0; i < input.length; i += INPUT_CHUNK_CHARS) out += JSON.stringify(input.slice(i, i + INPUT_CHUNK_CHARS)) + '\n';
  sock.write(out + 'null\n');
}

/** Sends one request and resolves with the router's answer. */
export function sendCommand(socketPath: string, req: ControlRequest, timeoutMs = 120_000): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (err: Error | null, res?: CommandResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(res!);
    };
    const timer = setTimeout(() => finish(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)), timeoutMs);
    sock.on('connect', () => writeRequest(sock, req));
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      if (c.includes(10)) {
        const text = Buffer.concat(chunks).toString('utf8');
        const line = text.slice(0, text.indexOf('\n'));
        try {
          const res = JSON.parse(line) as CommandResult;
          finish(null, { status: Number(res.status), stdout: String(res.stdout ?? ''), stderr: String(res.stderr ?? '') });
        } catch (e) {
          finish(new Error(`malformed answer from ${socketPath}: ${(e as Error).message}`));
        }
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
        finish(new RouterNotRunning(`xtr: the router is not running (no one listening on ${socketPath}); start it with "npm start" or "node dist/router/main.js", or point --socket/XTR_SOCKET at its socket`));
      } else if (e.code === 'EACCES') {
        finish(new Error(`xtr: permission denied on ${socketPath}: the control socket is root-only`));
      } else finish(new Error(`xtr: ${socketPath}: ${e.message}`));
    });
    sock.on('end', () => finish(new Error(`xtr: the router closed the connection without answering`)));
  });
}

/**
 * `xtr events [--kind PREFIX]... [--count N]`: prints the router's event
 * stream (JSON lines) until interrupted, or until N events (not counting the
 * stream's own `events.*` lines) have been printed. Resolves with the exit status.
 */
export function streamEvents(socketPath: string, args: readonly string[], out: (line: string) => void): Promise<number> {
  let count = Infinity;
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--count' && i + 1 < args.length) {
      count = Number(args[++i]);
      if (!Number.isInteger(count) || count < 1) return Promise.reject(new Error(`xtr events: --count ${args[i]}: must be a positive integer`));
    } else rest.push(args[i]);
  }
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    let seen = 0;
    sock.on('connect', () => sock.write(JSON.stringify({ cmd: 'events', args: rest, input: null }) + '\n'));
    sock.on('data', (c: Buffer) => {
      buf += c.toString('utf8');
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let v: { kind?: unknown; status?: unknown; stderr?: unknown };
        try {
          v = JSON.parse(line);
        } catch {
          continue;
        }
        if (typeof v.status === 'number') {
          // An answer instead of a stream: an error (bad arguments, an old router).
          process.stderr.write(String(v.stderr ?? ''));
          sock.destroy();
          resolve(v.status);
          return;
        }
        out(line);
        if (typeof v.kind === 'string' && !v.kind.startsWith('events.') && ++seen >= count) {
          sock.destroy();
          resolve(0);
          return;
        }
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') reject(new RouterNotRunning(`xtr: the router is not running (no one listening on ${socketPath})`));
      else reject(new Error(`xtr: ${socketPath}: ${e.message}`));
    });
    sock.on('close', () => resolve(0));
  });
}

/**
 * Every command the router answers, for `xtr --help`. test/cli-conventions.test.ts
 * checks this list against the names a running router reports, so a command
 * added to the router without a line here fails that test.
 */
export const USAGE = `usage: xtr [--socket PATH] COMMAND [ARGS...]
       xtr --help | --version
commands (sent to the running router over its control socket):
  status [--json]         interfaces, counters, drops by reason, uptime, extension state;
                          --json also names the metrics URL when metrics are enabled
  ping                    liveness: prints "pong"
  health [--json]         whether the router can forward as configured (devices up, rules
                          loaded, forwarding sysctls, no event-loop stall): exit 0 healthy, 1 not
  events [--kind PREFIX]... [--count N]
                          the events the router and its extensions emit as JSON lines: rule-change
                          (audited changes), drop (per reason, once per interval), knocks, scans ...
  nflog [-g GROUP]... [-w FILE|-] [--pcapng] [-y NFLOG|RAW] [-c COUNT] [-q]
                          packets NFLOG rules log to GROUP, as text or a pcap/pcapng file
                          tcpdump and Wireshark read ("xtr nflog --help" for the formats)
  iptables ARGS...        the iptables command line (-A/-I/-D/-R/-L/-S/-F/-Z/-N/-X/-P/-E ...)
  ip6tables ARGS...       the same for IPv6
  iptables-save [-c] [-t TABLE]      the rule set in iptables-save format
  ip6tables-save [-c] [-t TABLE]
  iptables-restore [-n] [-c] [-t] [-T TABLE] < FILE
                          replaces (with -n adds to; -t only tests) the rule set from stdin
  ip6tables-restore [-n] [-c] [-t] [-T TABLE] < FILE
  conntrack -L|-F|-C|-S [-f ipv4|ipv6] [-p PROTO]
                          list, flush, count or show statistics of the connection table
  proc ls | proc cat PATH | proc write PATH [DATA]
                          the extensions' /proc-like files (DATA from stdin when omitted)
  ext COMMAND [ARGS...]   an extension's own command (e.g. ext account ..., ext pknock ...);
                          "xtr ext" alone lists them
  reload                  re-reads the config file and applies what changed (addresses, routes, rule
                          files, settings), then reload-databases: what SIGHUP does; a broken or
                          refused config changes nothing: exit 1 with why
  reload-databases        extensions re-read their external data (geoip, asn, ...), as SIGHUP
  save                    writes the rules and extension state to the state directory now
  cluster status [--json] cluster mode (docs/cluster.md): connection, peers seen, lag, last sync,
                          outbox size and dropped updates
  cluster commit          imports the flows other gateways sent into the conntrack table (keepalived
                          notify_master; docs/cluster-conntrack.md)
  cluster conntrack       the flows held for a commit (external cache)
exit status: 0 ok, 1 runtime failure (router not running, command failed), 2 usage error
environment: XTR_SOCKET overrides the default socket ${DEFAULT_SOCKET}
`;

/** The commands USAGE documents (kept in step with the router by a test). */
export const DOCUMENTED_COMMANDS: readonly string[] = [
  'status', 'ping', 'health', 'events', 'nflog', 'iptables', 'ip6tables', 'iptables-save', 'ip6tables-save',
  'iptables-restore', 'ip6tables-restore', 'conntrack', 'proc', 'ext', 'reload', 'reload-databases', 'save',
  'cluster',
];

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function writeOut(stream: NodeJS.WriteStream, text: string): Promise<void> {
  return new Promise((resolve) => (text ? stream.write(text, () => resolve()) : resolve()));
}

export async function cliMain(argv: string[]): Promise<number> {
  // `xtr status | head`: a reader that went away is not an error worth a stack trace.
  quietEpipe();
  let socketPath = process.env.XTR_SOCKET || DEFAULT_SOCKET;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--socket' || a === '-s') {
      if (i + 1 >= argv.length) {
        process.stderr.write(`xtr: ${a} needs a path\n${USAGE}`);
        return 2;
      }
      socketPath = argv[++i];
    } else if (a.startsWith('--socket=')) socketPath = a.slice('--socket='.length);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE);
      return 0;
    } else if (a === '--version' || a === '-V') {
      process.stdout.write(versionLine('xtr'));
      return 0;
    } else if (a.startsWith('-')) {
      process.stderr.write(`xtr: unknown option ${a}\n${USAGE}`);
      return 2;
    } else break;
  }
  const cmd = argv[i];
  if (!cmd) {
    process.stderr.write(USAGE);
    return 2;
  }
  const args = argv.slice(i + 1);
  // A stream the CLI writes as a capture file (router/nflog-cli.ts), loaded only when asked for.
  if (cmd === 'nflog') return (await import('./nflog-cli.js')).nflogMain(socketPath, args);
  if (cmd === 'events') {
    try {
      return await streamEvents(socketPath, args, (line) => process.stdout.write(line + '\n'));
    } catch (e) {
      process.stderr.write(`${(e as Error).message}\n`);
      return 1;
    }
  }
  const input = readsStdin(cmd, args) ? await readStdin() : null;
  try {
    const res = await sendCommand(socketPath, { cmd, args, input });
    await writeOut(process.stdout, res.stdout);
    await writeOut(process.stderr, res.stderr);
    return res.status;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
}
