/**
 * Audit of rule and state changes (issue 13 §3): every control command that may change the rule
 * set or extension state is logged as one pino line `{"audit": true, "argv": [...], "exitStatus": N,
 * "peer": {...}}` with msg "audit" after it ran, and published as a `rule-change` event on the
 * `xtr events` stream. A config reload by SIGHUP is audited the same way with `"signal":"SIGHUP"`
 * instead of a peer (router/reload.ts).
 *
 * Who: the peer of the control connection as the kernel recorded it at connect (SO_PEERCRED),
 * not as the client claims. Node has no getsockopt, so the native addon asks the kernel
 * (getsockopt(SOL_SOCKET, SO_PEERCRED) on the accepted socket's descriptor: one syscall, where a
 * child process per connection cost a CLI call a third more than Node's own start). The lookup is
 * made when the first changing command of a connection arrives (the kernel keeps the credentials
 * after the client hangs up); the audit line is written just after the answer. Status, listings and
 * the event stream never look. comm is the peer's /proc/PID/comm when it is still there. If the lookup fails the line says `"peer": null`
 * with the reason in `peerError` rather than guessing. The socket is root-only (0600), so uid is 0
 * unless a process with CAP_DAC_OVERRIDE connects.
 */
import { readFile } from 'node:fs/promises';
import type net from 'node:net';
import type { CommandResult } from './commands.js';
import type { ControlRequest } from './control.js';
import { socketPeerCredentials } from '../dataplane/tun.js';

export interface PeerCred {
  pid: number;
  uid: number | null;
  comm: string | null;
}

/** The event kind of an audited change on the `xtr events` stream. */
export const RULE_CHANGE_EVENT = 'rule-change';

const IPT_CHANGE_LONG = new Set(['--append', '--insert', '--delete', '--replace', '--flush', '--zero', '--new-chain', '--delete-chain', '--policy', '--rename-chain']);

/**
 * Whether `cmd args` may change rules or extension state (and so is audited). Listings, checks,
 * status, health and the event stream are not. A new control command that changes state must be
 * added here.
 */
export function isChange(cmd: string, args: readonly string[]): boolean {
  switch (cmd) {
    case 'iptables':
    case 'ip6tables':
      // A command option among -A -I -D -R -F -Z -N -X -P -E (alone or in a cluster like -vZ) or its long form.
      return args.some((a) => IPT_CHANGE_LONG.has(a.split('=')[0]) || (/^-[A-Za-z]+$/.test(a) && /[AIDRFZNXPE]/.test(a)));
    case 'iptables-restore':
    case 'ip6tables-restore':
      return !args.some((a) => a === '-t' || a === '--test' || (/^-[A-Za-z]+$/.test(a) && a.includes('t')));
    case 'conntrack':
      return args.some((a) => a === '-F' || a === '--flush' || a === '-D' || a === '--delete' || a === '-U' || a === '--update');
    case 'proc':
      return args[0] === 'write';
    case 'ext':
      // An extension command may change its state (flush, reset, add ...); which ones is the extension's business.
      return args.length > 0 && args[0] !== '-h' && args[0] !== '--help';
    case 'reload':
    case 'reload-databases':
    case 'save':
      return true;
    default:
      return false;
  }
}

/** The kernel's SO_PEERCRED of an accepted control connection (see the top of this file). */
export async function peerCredentials(sock: net.Socket): Promise<PeerCred> {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the connection has no file descriptor');
  const { pid, uid } = socketPeerCredentials(fd);
  let comm: string | null = null;
  try {
    comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  } catch {
    /* exited meanwhile: pid and uid are still the answer */
  }
  return { pid, uid, comm };
}

export interface AuditLog {
  info(obj: object, msg?: string): void;
}

export interface AuditSink {
  publish(e: { kind: string; time: number; fields: Readonly<Record<string, unknown>> }): void;
}

/** What one audit record says (the log line's fields, the event's fields). */
export interface AuditRecord {
  audit: true;
  argv: string[];
  /** The command's exit status (not `status`: a stream line with a numeric status reads as an answer to the CLI). */
  exitStatus: number;
  /** The control connection's peer (null: not found, see peerError) ... */
  peer?: PeerCred | null;
  peerError?: string;
  /** ... or the signal that asked for it. */
  signal?: string;
  /** Bytes of standard input the command carried (a restore file). */
  inputBytes?: number;
  /** The command's error output, first line, when it failed. */
  error?: string;
  /** What a config reload changed. */
  changed?: string[];
}

/** Logs one audit line and publishes it as a `rule-change` event. */
export function recordAudit(log: AuditLog, sink: AuditSink | null, rec: AuditRecord): void {
  log.info(rec, 'audit');
  const { audit: _audit, ...fields } = rec;
  sink?.publish({ kind: RULE_CHANGE_EVENT, time: Date.now(), fields });
}

/** The ControlServer.audit hook: peer credentials once per connection, one record per changing command. */
export function controlAudit(log: AuditLog, sink: AuditSink | null, lookup: (sock: net.Socket) => Promise<PeerCred> = peerCredentials) {
  const peers = new WeakMap<net.Socket, Promise<PeerCred>>();
  return async (sock: net.Socket, req: ControlRequest): Promise<((res: CommandResult) => void) | null> => {
    if (!isChange(req.cmd, req.args)) return null;
    let p = peers.get(sock);
    if (!p) {
      p = lookup(sock);
      p.catch(() => undefined);
      peers.set(sock, p);
    }
    const peer = p;
    // The command runs meanwhile; the line is written once it has answered and the peer is known.
    return (res) => {
      const rec: AuditRecord = { audit: true, argv: [req.cmd, ...req.args], exitStatus: res.status };
      if (req.input !== null) rec.inputBytes = Buffer.byteLength(req.input);
      if (res.status !== 0) rec.error = res.stderr.split('\n').find((l) => l.trim() !== '')?.slice(0, 500) ?? '';
      peer.then(
        (cred) => recordAudit(log, sink, { ...rec, peer: cred }),
        (e: Error) => recordAudit(log, sink, { ...rec, peer: null, peerError: e.message }),
      );
    };
  };
}
