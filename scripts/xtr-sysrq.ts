/**
 * xtr-sysrq: sends an authenticated SysRq request to a host running xtr's (or
 * the kernel's xt_SYSRQ) `-j SYSRQ` rule - what the man page's sha1sum +
 * socat snippet does, as one command (docs/sysrq.md).
 *
 *   XTR_SYSRQ_PASSWORD=... xtr-sysrq [options] HOST KEYS
 *   xtr-sysrq --password-file FILE [options] HOST KEYS
 *
 * The request is `<keys>,<seqno>,<salt>,<hexdigest>` with hexdigest =
 * HASH("<keys>,<seqno>,<salt>,<address>,<password>"), the address being the
 * destination the rule sees (dotted quad, or IPv6 fully expanded). The
 * password is never taken from the command line (ps(1) shows it to anyone).
 */
import { createHash, getHashes, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { helpOrVersion, quietEpipe } from '../xt/version.js';

const USAGE = `usage: xtr-sysrq [-4|-6] [-p PORT] [-H HASH] [-s SEQNO] [--salt SALT] [-a ADDRESS]
                 [--password-file FILE] [-n] [-v] HOST KEYS
  HOST                 where the request goes (address or name)
  KEYS                 the SysRq key(s), e.g. s or sb (on xtr: s save, b restart, o stop,
                       u flush conntrack, t status; docs/sysrq.md)
  -4, -6               resolve HOST to this family only
  -p, --port PORT      UDP port of the rule (default 9, as the man page's example)
  -H, --hash HASH      digest: sha1 (default, the module's default) or any Node hash (sha256, ...)
  -s, --seqno N        sequence number (default: the time of day in seconds); must be greater
                       than the last one the host took
      --salt SALT      salt (default: 12 random bytes in base64); no comma
  -a, --address ADDR   address to hash when the rule sees another destination than HOST (DNAT)
      --password-file FILE   the password (first line); else $XTR_SYSRQ_PASSWORD
  -n, --dry-run        print the request, send nothing
  -v, --verbose        print the request and where it went
  -q, --quiet          print nothing (the default unless -n or -v)
  -h, --help / -V, --version
exit status: 0 sent, 1 failure (unresolvable host, send error), 2 usage error
`;

class UsageError extends Error {}

interface Args {
  family: 0 | 4 | 6;
  port: number;
  hash: string;
  seqno: string | null;
  salt: string | null;
  address: string | null;
  passwordFile: string | null;
  dryRun: boolean;
  verbose: boolean;
  host: string;
  keys: string;
}

export function parseArgs(argv: readonly string[]): Args {
  const a: Args = { family: 0, port: 9, hash: 'sha1', seqno: null, salt: null, address: null, passwordFile: null, dryRun: false, verbose: false, host: '', keys: '' };
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const w = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${w} needs a value`);
      return argv[++i];
    };
    switch (w) {
      case '-4':
        a.family = 4;
        break;
      case '-6':
        a.family = 6;
        break;
      case '-p':
      case '--port': {
        const v = value();
        if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 65535) throw new UsageError(`${w} ${v}: not a port (1-65535)`);
        a.port = Number(v);
        break;
      }
      case '-H':
      case '--hash':
        a.hash = value().toLowerCase();
        if (!getHashes().includes(a.hash)) throw new UsageError(`${w} ${a.hash}: not a hash Node's crypto offers`);
        break;
      case '-s':
      case '--seqno':
        a.seqno = value();
        if (!/^\d+$/.test(a.seqno)) throw new UsageError(`${w} ${a.seqno}: not a decimal number`);
        break;
      case '--salt':
        a.salt = value();
        if (a.salt.includes(',')) throw new UsageError('--salt: a comma would end the salt early');
        break;
      case '-a':
      case '--address':
        a.address = value();
        if (isIP(a.address) === 0) throw new UsageError(`${w} ${a.address}: not an IPv4 or IPv6 address`);
        break;
      case '--password-file':
        a.passwordFile = value();
        break;
      case '--password':
        throw new UsageError('--password: not taken on the command line (ps shows it); use --password-file or XTR_SYSRQ_PASSWORD');
      case '-q':
      case '--quiet':
        a.verbose = false;
        break;
      case '-n':
      case '--dry-run':
        a.dryRun = true;
        break;
      case '-v':
      case '--verbose':
        a.verbose = true;
        break;
      default:
        if (w.startsWith('-') && w !== '-') throw new UsageError(`unknown option ${w}`);
        rest.push(w);
    }
  }
  if (rest.length !== 2) throw new UsageError('HOST and KEYS are required');
  [a.host, a.keys] = rest;
  if (a.keys === '' || a.keys.includes(',')) throw new UsageError('KEYS: one or more SysRq keys, no comma');
  return a;
}

/** The address as xt_SYSRQ hashes it: dotted quad, or eight groups of four lowercase hex digits. */
export function hashedAddress(addr: string): string {
  if (isIP(addr) === 4) return addr.split('.').map((o) => String(Number(o))).join('.');
  let groups: string[];
  let text = addr.toLowerCase();
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const o = v4[1].split('.').map(Number);
    text = `${text.slice(0, -v4[1].length)}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const dbl = text.indexOf('::');
  if (dbl >= 0) {
    const head = text.slice(0, dbl).split(':').filter((g) => g !== '');
    const tail = text.slice(dbl + 2).split(':').filter((g) => g !== '');
    groups = [...head, ...Array(8 - head.length - tail.length).fill('0'), ...tail];
  } else {
    groups = text.split(':');
  }
  return groups.map((g) => g.padStart(4, '0')).join(':');
}

/** The request for these fields: `<keys>,<seqno>,<salt>,<hexdigest>`. */
export function buildRequest(keys: string, seqno: string, salt: string, address: string, password: string, hash = 'sha1'): string {
  const head = `${keys},${seqno},${salt},`;
  return head + createHash(hash).update(`${head}${hashedAddress(address)},${password}`).digest('hex');
}

function readPassword(a: Args): string {
  let pw: string | undefined;
  if (a.passwordFile !== null) {
    try {
      pw = readFileSync(a.passwordFile, 'utf8');
    } catch (e) {
      throw new Error(`--password-file ${a.passwordFile}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  } else {
    pw = process.env.XTR_SYSRQ_PASSWORD;
  }
  if (pw === undefined) throw new UsageError('no password: give --password-file FILE or set XTR_SYSRQ_PASSWORD');
  // As the module reads its parameter: up to the first newline.
  const nl = pw.indexOf('\n');
  return nl >= 0 ? pw.slice(0, nl) : pw;
}

async function main(argv: readonly string[]): Promise<number> {
  const std = helpOrVersion('xtr-sysrq', argv, USAGE);
  if (std !== null) return std;
  const a = parseArgs(argv);
  const password = readPassword(a);
  let dest = a.host;
  if (isIP(dest) === 0) {
    try {
      dest = (await lookup(a.host, a.family === 0 ? {} : { family: a.family })).address;
    } catch (e) {
      throw new Error(`${a.host}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  } else if (a.family !== 0 && isIP(dest) !== a.family) {
    throw new UsageError(`${a.host}: not an IPv${a.family} address`);
  }
  const seqno = a.seqno ?? String(Math.floor(Date.now() / 1000));
  const salt = a.salt ?? randomBytes(12).toString('base64');
  const req = buildRequest(a.keys, seqno, salt, a.address ?? dest, password, a.hash);
  if (a.dryRun || a.verbose) process.stdout.write(`${req}\n`);
  if (a.dryRun) return 0;
  const sock = createSocket(isIP(dest) === 6 ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => sock.send(`${req}\n`, a.port, dest, (err) => (err ? reject(err) : resolve())));
  } finally {
    sock.close();
  }
  if (a.verbose) process.stdout.write(`sent to ${dest} port ${a.port}\n`);
  return 0;
}

const isMain = process.argv[1] !== undefined && /xtr-sysrq(\.[jt]s)?$/.test(process.argv[1]);
if (isMain) {
  quietEpipe();
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`xtr-sysrq: ${(e as Error).message}\n${e instanceof UsageError ? USAGE : ''}`);
      process.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}
