/**
 * Audit of rule and state changes (issue 13 §3): every control command that may change the rule
 * set or extension state is logged as one pino line `{"audit": true, "argv": [...], "exitStatus": N,
 * "peer": {...}}` with msg "audit" after it ran, and published as a `rule-change` event on the
 * `xtr events` stream. A config reload by SIGHUP is audited the same way with `"signal":"SIGHUP"`
 * instead of a peer (router/reload.ts).
 *
 * Who: the peer of the control connection as the kernel recorded it at connect (SO_PEERCRED),
 * not as the client claims. Node has no getsockopt, so the accepted socket is handed to a short
 * child as its fd 3 and the child asks the kernel: Perl's getsockopt(SOL_SOCKET, SO_PEERCRED)
 * (perl-base is Essential in Debian, so it is in every Debian system and in the image; no native
 * code of ours). The lookup starts when the first changing command of a connection arrives and runs
 * beside the command (the child holds its own copy of the socket, and the kernel keeps the
 * credentials after the client hangs up), so the command is not delayed; the audit line is written
 * when both are done, just after the answer. One child per connection that changes something (a
 * few ms on an idle machine); status, listings and the event stream never start one. comm is the
 * peer's /proc/PID/comm when it is still there. If the lookup fails the line says `"peer": null`
 * with the reason in `peerError` rather than guessing. The socket is root-only (0600), so uid is 0
 * unless a process with CAP_DAC_OVERRIDE connects.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type net from 'node:net';
import type { CommandResult } from './commands.js';
import type { ControlRequest } from './control.js';

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

const PEERCRED_SCRIPT =
  'open(my $s, "+<&=", 3) or die "fd 3: $!\\n"; my $c = getsockopt($s, SOL_SOCKET, SO_PEERCRED) or die "getsockopt SO_PEERCRED: $!\\n"; print join(" ", unpack("i3", $c)), "\\n"';

/** The kernel's SO_PEERCRED of an accepted control connection (see the top of this file). */
export function peerCredentials(sock: net.Socket, timeoutMs = 10_000): Promise<PeerCred> {
  return new Promise((resolve, reject) => {
    // The descriptor, not the Socket: given a Socket, spawn stops reading it in this process.
    const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
    if (typeof fd !== 'number' || fd < 0) {
      reject(new Error('the connection has no file descriptor'));
      return;
    }
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn('perl', ['-MSocket=SOL_SOCKET,SO_PEERCRED', '-e', PEERCRED_SCRIPT], { stdio: ['ignore', 'pipe', 'pipe', fd] });
    } catch (e) {
      reject(e as Error);
      return;
    }
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run perl for SO_PEERCRED: ${e.message}`));
    });
    child.on('close', async (code) => {
      clearTimeout(timer);
      const m = /^(\d+) (\d+) (\d+)$/.exec(out.trim());
      if (code !== 0 || !m) {
        reject(new Error(`SO_PEERCRED lookup failed: ${err.trim() || `exit ${code}`}`));
        return;
      }
      const pid = Number(m[1]);
      let comm: string | null = null;
      try {
        comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
      } catch {
        /* exited meanwhile: pid and uid are still the answer */
      }
      resolve({ pid, uid: Number(m[2]), comm });
    });
  });
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
