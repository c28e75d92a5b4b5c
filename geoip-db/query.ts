/**
 * xt_geoip_query / xt_asn_query: print the ranges of a built database file
 * as `start-end` lines (inet_ntop text), IPv4 first then IPv6, with the
 * upstream tools' checks and messages.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatIPv4, formatIPv6, readV6 } from './addr.js';

export class QueryError extends Error {
  constructor(message: string, readonly status: number = 1) {
    super(message);
    this.name = 'QueryError';
  }
}

/**
 * Prints one country's or AS number's ranges through `print`. The `.iv4`
 * file must exist even when only IPv6 is asked for (as upstream). Complete
 * records before a trailing partial one are printed, then the short read is
 * reported.
 */
export function queryRanges(
  kind: 'geoip' | 'asn',
  dir: string,
  name: string,
  v4: boolean,
  v6: boolean,
  print: (line: string) => void,
): void {
  const valid = kind === 'geoip' ? /^(?:[a-z]{2}|a[12]|o1)$/i.test(name) : /^[0-9]+$/.test(name);
  const what = kind === 'geoip' ? '' : 'ASN ';
  if (!valid) throw new QueryError(kind === 'geoip' ? `Invalid country code '${name}'` : `Invalid ASN '${name}'`);
  const base = join(dir, kind === 'geoip' ? name.toUpperCase() : name);
  if (!existsSync(`${base}.iv4`) || !statSync(`${base}.iv4`).isFile()) {
    throw new QueryError(kind === 'geoip' ? `Can't find data for country '${name}'` : `Can't find data for ASN '${name}'`);
  }
  for (const family of [4, 6] as const) {
    if ((family === 4 && !v4) || (family === 6 && !v6)) continue;
    let bytes: Buffer;
    try {
      bytes = readFileSync(`${base}.iv${family}`);
    } catch {
      throw new QueryError(kind === 'geoip' ? `Couldn't open file for '${name}'` : `Couldn't open file '${base}.iv${family}'`, 2);
    }
    const size = family === 4 ? 8 : 32;
    const whole = bytes.length - (bytes.length % size);
    let text = '';
    for (let off = 0; off < whole; off += size) {
      text +=
        family === 4
          ? `${formatIPv4(bytes.readUInt32BE(off))}-${formatIPv4(bytes.readUInt32BE(off + 4))}\n`
          : `${formatIPv6(readV6(bytes, off))}-${formatIPv6(readV6(bytes, off + 16))}\n`;
      if (text.length > 65536) {
        print(text);
        text = '';
      }
    }
    if (text) print(text);
    if (whole !== bytes.length) throw new QueryError(`Short read on file for ${what}'${name}'`);
  }
}
