/**
 * Errors of the rule engine, carrying iptables' exit status and how iptables
 * would print them. Parameter problems (status 2) get the program/version
 * prefix and the "Try `iptables -h'" hint; refusals the kernel would give
 * (status 1) print as "iptables: <strerror text>."; a few parser messages
 * ("Bad argument `x'") are printed bare, as iptables does.
 */
import { XtError, type KernelErrno } from '../../xt/extension.js';

export type ErrorStyle = 'param' | 'kernel' | 'bare' | 'table';

export class NfError extends Error {
  /** The table whose validation failed (iptables-restore reports its COMMIT line). */
  table: string | null = null;
  /** Lines printed ahead of the error (an extension's own notes; XtError.preface). */
  preface = '';
  constructor(
    message: string,
    readonly status: 1 | 2 | 3 = 2,
    readonly style: ErrorStyle = status === 1 ? 'kernel' : status === 3 ? 'table' : 'param',
    /** Extra explanation xtr adds (what the kernel would have put in dmesg). */
    readonly detail: string | null = null,
  ) {
    super(message);
    this.name = 'NfError';
  }
}

/** The kernel refusals, as strerror() texts iptables prints. */
export const KERNEL = {
  EINVAL: "Invalid argument. Run `dmesg' for more information.",
  ENOENT: 'No chain/target/match by that name.',
  EEXIST_CHAIN: 'Chain already exists.',
  EEXIST: 'File exists.',
  EMLINK: 'Too many links.',
  ELOOP: 'Too many levels of symbolic links.',
  ENOTEMPTY: 'Directory not empty.',
  BAD_RULE: 'Bad rule (does a matching rule exist in that chain?).',
  BAD_BUILTIN: 'Bad built-in chain name.',
  BAD_POLICY: "Bad policy name. Run `dmesg' for more information.",
  IDX_DELETE: 'Index of deletion too big.',
  IDX_INSERT: 'Index of insertion too big.',
  IDX_REPLACE: 'Index of replacement too big.',
} as const;

/**
 * What iptables prints for a rule set the kernel refused with each errno
 * (libiptc's iptc_strerror: its own words for ENOENT and ENOMEM, else
 * strerror; EINVAL gets the dmesg hint).
 */
export const ERRNO_TEXT: Readonly<Record<KernelErrno, string>> = {
  EINVAL: KERNEL.EINVAL,
  ERANGE: 'Numerical result out of range.',
  EDOM: 'Numerical argument out of domain.',
  ENOENT: KERNEL.ENOENT,
  ENOMEM: 'Memory allocation problem.',
  EOPNOTSUPP: 'Operation not supported.',
  EPROTO: 'Protocol error.',
  ENOSPC: 'No space left on device.',
  EEXIST: KERNEL.EEXIST,
  EBUSY: 'Device or resource busy.',
  EPERM: 'Operation not permitted.',
  E2BIG: 'Argument list too long.',
  ELOOP: KERNEL.ELOOP,
  // xt_PROTO's checkentry refuses IPv6-only options on IPv4 rules with it
  EPROTOTYPE: 'Protocol wrong type for socket.',
};

export function kernelError(text: string, detail: string | null = null): NfError {
  return new NfError(text, 1, 'kernel', detail);
}

/** Converts an extension's XtError (or anything thrown) into an NfError. */
export function toNfError(e: unknown): NfError {
  if (e instanceof NfError) return e;
  if (e instanceof XtError) {
    const n = e.status === 1 ? kernelError(ERRNO_TEXT[e.errno] ?? KERNEL.EINVAL, e.message) : new NfError(e.message, 2);
    n.preface = e.preface;
    return n;
  }
  const msg = e instanceof Error ? e.message : String(e);
  return kernelError(KERNEL.EINVAL, msg);
}

/**
 * The text iptables prints for an error of program `prog` ("iptables",
 * "ip6tables", "iptables-restore", ...), ending with a newline.
 */
export function formatError(e: NfError, prog: string): string {
  const hint = `Try \`${prog} -h' or '${prog} --help' for more information.\n`;
  switch (e.style) {
    case 'kernel':
      return `${e.preface}${prog}: ${e.message}\n${e.detail ? `${e.detail}\n` : ''}`;
    case 'bare':
      return `${e.preface}${e.message}\n${hint}`;
    case 'table':
      return `${e.preface}${prog} v1.8.9 (xtr): ${e.message}\nPerhaps iptables or your kernel needs to be upgraded.\n`;
    default:
      return `${e.preface}${prog} v1.8.9 (xtr): ${e.message}\n${hint}`;
  }
}
