/**
 * The packet device contract shared by the native TUN/TAP layer, the in-memory
 * test device and the router.
 *
 * Batch-first, after wireguard-go's tun.Device: one call moves every packet
 * that is ready (up to the batch capacity) so the JS<->native boundary is
 * crossed once per wake-up, never once per packet.
 *
 * Layout of a batch: one preallocated Buffer cut into `capacity` slots of
 * `slotSize` bytes. A read places packet i at `offsets[i]` (= slot start +
 * HEADROOM) with `lengths[i]` bytes. The headroom lets the router prepend an
 * Ethernet header (TUN -> TAP) or build an ICMP error around a packet in
 * place; stripping a header is `offsets[i] += 14`.
 */

/** Bytes left free in front of every packet read into a batch. */
export const HEADROOM = 64;

export interface PacketBatch {
  readonly data: Buffer;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly capacity: number;
  readonly slotSize: number;
  /** Packets currently held (set by read). */
  count: number;
  /**
   * Per slot, set by a read from a device with TSO/USO in force: the
   * gso_size of a super-packet (its segments' payload), 0 for an ordinary
   * packet. Absent: the device drops super-packets (none arrive without offloads).
   */
  readonly gso?: Uint32Array;
}

/** Allocates a batch once; the hot path reuses it forever. */
export function createBatch(capacity: number, maxFrame: number): PacketBatch {
  const slotSize = alignUp(HEADROOM + maxFrame, 64);
  const offsets = new Uint32Array(capacity);
  for (let i = 0; i < capacity; i++) offsets[i] = i * slotSize + HEADROOM;
  return {
    data: Buffer.alloc(capacity * slotSize),
    offsets,
    lengths: new Uint32Array(capacity),
    gso: new Uint32Array(capacity),
    capacity,
    slotSize,
    count: 0,
  };
}

/** Resets offsets to the slot layout (a read does this itself for the slots it fills). */
export function resetOffsets(batch: PacketBatch): void {
  for (let i = 0; i < batch.capacity; i++) batch.offsets[i] = i * batch.slotSize + HEADROOM;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

export type DeviceKind = 'tun' | 'tap';

/** Counters a device keeps about itself (read by `xtr status`). */
export interface DeviceStats {
  rxPackets: number;
  rxBytes: number;
  txPackets: number;
  txBytes: number;
  /** Writes the kernel refused (EAGAIN on a full queue, EIO, ...). */
  txDropped: number;
}

export interface PacketDevice {
  readonly name: string;
  readonly kind: DeviceKind;
  readonly stats: DeviceStats;
  /**
   * Fills `batch` with every packet available now, up to its capacity, and
   * returns how many (also stored in batch.count). Never blocks; 0 = nothing
   * ready. Packet i starts at batch.offsets[i] (slot start + HEADROOM).
   */
  read(batch: PacketBatch): number;
  /**
   * Writes `count` packets; packet i is data[offsets[i] .. offsets[i] + lengths[i]).
   * Returns how many were accepted by the device; the rest are counted in
   * stats.txDropped. Never blocks.
   */
  write(data: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number, gso?: Uint32Array): number;
  /**
   * Whether write() takes super-packets (gso[i] != 0) whole; a device
   * without it gets them segmented first (dataplane/gso.ts). Absent = no.
   */
  readonly gsoWrites?: boolean;
  /** Largest packet read() may return when above the MTU (TSO/USO super-packets); absent or 0 = the MTU. */
  readonly maxPacket?: number;
  /**
   * Registers the wake-up: `cb` runs when the device becomes readable. The
   * callee drains with read() until it returns less than capacity.
   */
  onReadable(cb: () => void): void;
  /** Stops polling and closes the fd; idempotent; never hangs process exit. */
  close(): void;
}
