/**
 * Reads the members of a .zip archive held in memory: what the MaxMind
 * GeoLite2 CSV downloads are. Only what those archives use: stored (0) and
 * deflated (8) members, no encryption, no multi-disk, no ZIP64. Every member's
 * CRC-32 and size are checked, so a truncated or corrupted download is an
 * error here and never reaches a builder.
 *
 * Layout (APPNOTE.TXT 4.3): local headers and data, then the central
 * directory, then the end-of-central-directory record (EOCD, signature
 * 0x06054b50, at most 65535 + 22 bytes before the end). The central directory
 * is authoritative for names, sizes and offsets.
 */
import { crc32, inflateRawSync } from 'node:zlib';

export class ZipError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ZipError';
  }
}

export interface ZipMember {
  /** The path inside the archive, '/'-separated; directories end in '/'. */
  readonly name: string;
  /** The uncompressed bytes (checked against the CRC-32 and size). */
  readonly data: Buffer;
}

const SIG_EOCD = 0x06054b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;
const EOCD_LEN = 22;
const CENTRAL_LEN = 46;
const LOCAL_LEN = 30;

/** Whether the bytes begin like a zip archive (a local header or an empty archive's EOCD). */
export function looksLikeZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && (bytes[2] === 3 || bytes[2] === 5);
}

function findEocd(buf: Buffer): number {
  const lowest = Math.max(0, buf.length - EOCD_LEN - 0xffff);
  for (let i = buf.length - EOCD_LEN; i >= lowest; i--) if (buf.readUInt32LE(i) === SIG_EOCD) return i;
  throw new ZipError('not a zip archive, or truncated (no end-of-central-directory record)');
}

/** Every file member (directories skipped), in central-directory order. */
export function readZip(buf: Buffer): ZipMember[] {
  if (!looksLikeZip(buf)) throw new ZipError('not a zip archive (bad signature)');
  const eocd = findEocd(buf);
  const count = buf.readUInt16LE(eocd + 10);
  const cdSize = buf.readUInt32LE(eocd + 12);
  const cdOffset = buf.readUInt32LE(eocd + 16);
  if (cdOffset === 0xffffffff || count === 0xffff) throw new ZipError('ZIP64 archives are not supported');
  if (cdOffset + cdSize > eocd) throw new ZipError('truncated or corrupt zip archive (central directory out of range)');
  const out: ZipMember[] = [];
  let p = cdOffset;
  for (let k = 0; k < count; k++) {
    if (p + CENTRAL_LEN > eocd || buf.readUInt32LE(p) !== SIG_CENTRAL) throw new ZipError(`corrupt zip archive (central directory entry ${k + 1})`);
    const flags = buf.readUInt16LE(p + 8);
    const method = buf.readUInt16LE(p + 10);
    const crc = buf.readUInt32LE(p + 16);
    const compSize = buf.readUInt32LE(p + 20);
    const size = buf.readUInt32LE(p + 24);
    const nameLen = buf.readUInt16LE(p + 28);
    const extraLen = buf.readUInt16LE(p + 30);
    const commentLen = buf.readUInt16LE(p + 32);
    const localOff = buf.readUInt32LE(p + 42);
    const name = buf.toString('utf8', p + CENTRAL_LEN, p + CENTRAL_LEN + nameLen);
    p += CENTRAL_LEN + nameLen + extraLen + commentLen;
    if (name.endsWith('/')) continue;
    if (flags & 1) throw new ZipError(`${name}: encrypted zip members are not supported`);
    if (localOff + LOCAL_LEN > buf.length || buf.readUInt32LE(localOff) !== SIG_LOCAL) throw new ZipError(`${name}: truncated or corrupt zip archive (no local header)`);
    const dataOff = localOff + LOCAL_LEN + buf.readUInt16LE(localOff + 26) + buf.readUInt16LE(localOff + 28);
    if (dataOff + compSize > buf.length) throw new ZipError(`${name}: truncated zip archive`);
    const raw = buf.subarray(dataOff, dataOff + compSize);
    let data: Buffer;
    if (method === 0) data = Buffer.from(raw);
    else if (method === 8) {
      try {
        data = inflateRawSync(raw);
      } catch (e) {
        throw new ZipError(`${name}: corrupt compressed data (${(e as Error).message})`);
      }
    } else throw new ZipError(`${name}: unsupported compression method ${method}`);
    if (data.length !== size) throw new ZipError(`${name}: size ${data.length} does not match the archive's ${size}`);
    if (crc32(data) >>> 0 !== crc) throw new ZipError(`${name}: CRC-32 mismatch (corrupt download)`);
    out.push({ name, data });
  }
  return out;
}

/** A member name that is safe to create under a directory: relative, no '..', no empty parts. */
export function safeMemberPath(name: string): boolean {
  if (name.startsWith('/') || name.includes('\\') || name.includes('\0')) return false;
  return name.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}
