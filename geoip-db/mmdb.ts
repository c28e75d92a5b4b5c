/**
 * Reading every network of a MaxMind DB (.mmdb) file, for users who have
 * only the .mmdb and not the CSV. mmdb-lib answers single lookups; walking
 * the whole search tree uses its tree walker and data decoder, which it
 * does not export as API, so this file is the one place that depends on
 * mmdb-lib's internals (checked by the tests against mmdb-lib's own lookups);
 * package.json pins mmdb-lib exactly so an update that moves them is a deliberate change.
 *
 * IPv4 data of an IPv6 tree lives under ::/96 and is reported as IPv4; the
 * aliases that MaxMind writers add (::ffff:0:0/96, 2002::/16 pointing at the
 * same subtree) are skipped so IPv4 data does not reappear as IPv6.
 */
import { readFileSync } from 'node:fs';
import { Reader } from 'mmdb-lib';

export type MmdbRecord = Record<string, unknown>;

interface ReaderInternals {
  metadata: { nodeCount: number; nodeByteSize: number; ipVersion: number; searchTreeSize: number };
  walker: { left(offset: number): number; right(offset: number): number };
  resolveDataPointer(pointer: number): unknown;
}

export interface MmdbVisitor {
  v4(start: number, end: number, record: MmdbRecord): void;
  v6(start: bigint, end: bigint, record: MmdbRecord): void;
}

/** True if the bytes end with an MMDB metadata section marker. */
export function isMmdb(bytes: Uint8Array): boolean {
  const marker = Buffer.from('\xab\xcd\xefMaxMind.com', 'latin1');
  const tail = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).subarray(Math.max(0, bytes.length - 128 * 1024));
  return tail.lastIndexOf(marker) >= 0;
}

/** Calls the visitor once per network that has data (in no particular order). */
export function walkMmdb(path: string, visitor: MmdbVisitor): void {
  const reader = new Reader<MmdbRecord>(readFileSync(path)) as unknown as ReaderInternals;
  const { nodeCount, nodeByteSize, ipVersion } = reader.metadata;
  const cache = new Map<number, MmdbRecord>();
  const data = (pointer: number): MmdbRecord => {
    let r = cache.get(pointer);
    if (!r) {
      r = reader.resolveDataPointer(pointer) as MmdbRecord;
      cache.set(pointer, r);
    }
    return r;
  };
  // Node reached by following ::/96 - the IPv4 subtree of an IPv6 tree.
  let ipv4Start = -1;
  if (ipVersion === 6) {
    let node = 0;
    for (let i = 0; i < 96 && node < nodeCount; i++) node = reader.walker.left(node * nodeByteSize);
    ipv4Start = node;
  }
  const rootBits = ipVersion === 6 ? 128 : 32;

  // Explicit stack: [node, depth, prefix as bigint over rootBits]
  const stack: Array<[number, number, bigint]> = [[0, 0, 0n]];
  const emit = (depth: number, prefix: bigint, record: MmdbRecord): void => {
    const hostBits = BigInt(rootBits - depth);
    const start = prefix;
    const end = prefix | ((1n << hostBits) - 1n);
    if (ipVersion === 4) {
      visitor.v4(Number(start), Number(end), record);
    } else if (depth >= 96 && start >> 32n === 0n) {
      visitor.v4(Number(start), Number(end), record);
    } else {
      visitor.v6(start, end, record);
    }
  };
  while (stack.length > 0) {
    const [node, depth, prefix] = stack.pop()!;
    if (ipVersion === 6 && node === ipv4Start && !(depth === 96 && prefix === 0n)) continue; // alias of the IPv4 subtree
    if (depth >= rootBits) continue;
    const offset = node * nodeByteSize;
    const children: Array<[number, bigint]> = [
      [reader.walker.right(offset), prefix | (1n << BigInt(rootBits - depth - 1))],
      [reader.walker.left(offset), prefix],
    ];
    for (const [next, childPrefix] of children) {
      if (next < nodeCount) stack.push([next, depth + 1, childPrefix]);
      else if (next > nodeCount) emit(depth + 1, childPrefix, data(next));
    }
  }
}
