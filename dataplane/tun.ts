/**
 * TUN (L3) and TAP (L2) devices for the router, over the native addon
 * `build/Release/xtr_tun.node` (sources in dataplane/native/).
 *
 * The fd is opened non-blocking with IFF_NO_PI, so a TUN read yields a bare IP
 * packet and a TAP read a bare Ethernet frame. Readiness comes from a uv_poll
 * watcher on the main loop; read() and write() move a whole batch in one call
 * into C. Nothing here allocates per packet.
 *
 * The device is created in the namespace of the calling process and keeps
 * working through its fd after `ip link set DEV netns NS`, which is how the
 * router and the tests place it. Address, MTU and link state are left to the
 * caller (`ip`), except for the small setMtu/setLinkUp helpers below, which act
 * in the caller's own namespace.
 *
 * Semantics the router can rely on:
 * - read() never returns a truncated packet: one longer than its slot
 *   (slotSize - HEADROOM) is dropped and counted in stats.rxErrors.
 * - write() stops at a full queue (EAGAIN); a packet the kernel refuses
 *   (EINVAL: not IPv4/IPv6 on a TUN, shorter than 14 bytes on a TAP) is
 *   dropped alone. Both count in stats.txDropped; lastError keeps the errno.
 * - When the link is deleted (or its namespace destroyed) read() records
 *   EBADFD in lastError and stops the wake-ups instead of spinning.
 * - An active onReadable watcher keeps the process alive, like a listening
 *   socket, unless unref()ed. close() is idempotent and synchronous for the
 *   fd; devices that are never closed are closed when collected or when their
 *   environment (a worker thread) ends.
 *
 * - IFF_VNET_HDR (default on): every read and write carries a 10-byte
 *   virtio_net_hdr that the addon adds and strips, so batches hold bare
 *   packets as before. No TUNSETOFFLOAD: the kernel never hands xtr GSO or
 *   checksum-partial packets. On a TUN, write() merges runs of consecutive
 *   datagrams of one UDP flow into one VIRTIO_NET_HDR_GSO_UDP_L4 write that
 *   the kernel cuts back into exactly those packets (conditions in
 *   dataplane/native/tun.c); one syscall then carries up to 64 packets.
 *   `gso: false` (or XTR_GSO=0 in the environment) writes one packet per
 *   syscall; `vnetHdr: false` opens the device without the header.
 *
 * Non-goals: receive offloads (TUNSETOFFLOAD) and persistent devices.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants as osConstants } from 'node:os';
import type { DeviceKind, DeviceStats, PacketBatch, PacketDevice } from './device.js';
import { HEADROOM } from './device.js';

/** The addon's surface (see dataplane/native/tun.c for the exact semantics). */
export interface TunAddon {
  open(name: string, tap: boolean, multiQueue: boolean, vnetHdr?: boolean): { fd: number; name: string; handle: object };
  readBatch(
    fd: number,
    data: Uint8Array,
    offsets: Uint32Array,
    lengths: Uint32Array,
    capacity: number,
    slotSize: number,
    headroom: number,
    out?: Float64Array,
    vnetHdr?: boolean,
  ): number;
  writeBatch(
    fd: number,
    data: Uint8Array,
    offsets: Uint32Array,
    lengths: Uint32Array,
    count: number,
    out?: Float64Array,
    /** 0: plain fd; 1: IFF_VNET_HDR, one packet per write; 2: IFF_VNET_HDR with UDP GSO coalescing */
    mode?: number,
  ): number;
  /** Coalescer test hook: write sizes (packets per write) for a batch; returns the number of writes. */
  gsoRuns(data: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number, runs: Uint32Array): number;
  /** Coalescer test hook: vnet header + super-packet IP/UDP header for packets start..start+n-1. */
  gsoHeader(data: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, start: number, n: number, out: Uint8Array): number;
  pollStart(handle: object, cb: () => void): void;
  pollStop(handle: object): void;
  pollRef(handle: object, ref: boolean): void;
  close(handle: object): void;
  setMtu(name: string, mtu: number): void;
  setUp(name: string, up: boolean): void;
}

const ADDON_PATH = join('build', 'Release', 'xtr_tun.node');
let addon: TunAddon | undefined;

/**
 * Walks up from this file to the first directory with a package.json and the
 * built addon, so the same code works from source (tsx) and from dist/.
 */
function findRepoRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, ADDON_PATH))) return dir;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(
    `xtr: native TUN/TAP addon ${ADDON_PATH} not found above ${start}; run \`npm ci\` or \`npx node-gyp rebuild\` in the repository root`,
  );
}

/** Loads the addon once; throws a clear error when it has not been built. */
export function loadTunAddon(): TunAddon {
  if (addon) return addon;
  const here = dirname(fileURLToPath(import.meta.url));
  const require = createRequire(import.meta.url);
  addon = require(join(findRepoRoot(here), ADDON_PATH)) as TunAddon;
  return addon;
}

export interface OpenTunOptions {
  kind: DeviceKind;
  /** IFF_MULTI_QUEUE: the same name may be opened again for another queue. */
  multiQueue?: boolean;
  /** Whether an active readable watcher keeps the process alive (default true, like a server socket). */
  ref?: boolean;
  /** IFF_VNET_HDR framing (default true). */
  vnetHdr?: boolean;
  /** UDP GSO coalescing of writes on a TUN with vnetHdr (default true unless XTR_GSO=0). */
  gso?: boolean;
}

/** A PacketDevice over a kernel TUN/TAP fd, plus the few extras the router uses. */
export interface TunDevice extends PacketDevice {
  readonly fd: number;
  readonly stats: TunStats;
  /** The last hard error from read/write (e.g. EBADFD after the link was deleted); null if none. */
  readonly lastError: NodeJS.ErrnoException | null;
  readonly closed: boolean;
  /** Stops wake-ups without closing; onReadable(cb) starts them again. */
  pause(): void;
  ref(): void;
  unref(): void;
}

export interface TunStats extends DeviceStats {
  /** Reads the kernel failed other than "nothing ready" (oversized packet, device gone). */
  rxErrors: number;
  /** UDP GSO writes made, and the packets they carried (included in txPackets). */
  txGsoWrites: number;
  txGsoPackets: number;
}

const IFNAME_MAX = 15;

/**
 * Opens (creating if needed) the TUN or TAP interface `name`; '' lets the
 * kernel choose (`tun0`, `tap0`, ...), and `device.name` tells which.
 */
export function openTun(name: string, opts: OpenTunOptions): TunDevice {
  if (opts.kind !== 'tun' && opts.kind !== 'tap') {
    throw new TypeError(`openTun(${JSON.stringify(name)}): kind must be 'tun' or 'tap', got ${JSON.stringify(opts.kind)}`);
  }
  if (Buffer.byteLength(name) > IFNAME_MAX || /[\s/:]/.test(name)) {
    throw new RangeError(
      `openTun(${JSON.stringify(name)}): interface name must be at most ${IFNAME_MAX} bytes without spaces, '/' or ':'`,
    );
  }
  const native = loadTunAddon();
  const vnet = opts.vnetHdr !== false;
  const opened = native.open(name, opts.kind === 'tap', opts.multiQueue === true, vnet);
  const gso = vnet && opts.kind === 'tun' && (opts.gso ?? process.env.XTR_GSO !== '0');
  const writeMode = !vnet ? 0 : gso ? 2 : 1;
  return new NativeTunDevice(native, opened.fd, opened.name, opened.handle, opts.kind, opts.ref !== false, vnet, writeMode);
}

/** Sets the MTU of an interface in the caller's network namespace. */
export function setMtu(name: string, mtu: number): void {
  loadTunAddon().setMtu(name, mtu);
}

/** Brings an interface in the caller's network namespace up or down. */
export function setLinkUp(name: string, up = true): void {
  loadTunAddon().setUp(name, up);
}

/** errno number -> name ("EBADFD"), from the table Node ships for this platform. */
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));
// Linux-only code the tun driver returns once its netdev is gone; Node's table lacks it.
ERRNO_NAMES.set(77, 'EBADFD');
const EAGAIN = osConstants.errno.EAGAIN;

function errnoError(syscall: string, negErrno: number, device: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(-negErrno) ?? `E${-negErrno}`;
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${device}: ${code}`);
  err.errno = negErrno;
  err.code = code;
  err.syscall = syscall;
  return err;
}

class NativeTunDevice implements TunDevice {
  readonly stats: TunStats = { rxPackets: 0, rxBytes: 0, txPackets: 0, txBytes: 0, txDropped: 0, rxErrors: 0, txGsoWrites: 0, txGsoPackets: 0 };
  lastError: NodeJS.ErrnoException | null = null;
  closed = false;
  /** [bytes, failed, errno, gso writes, gso packets] from the last native call; reused, never reallocated. */
  private readonly io = new Float64Array(5);
  private readable: (() => void) | null = null;
  private polling = false;
  private refed: boolean;
  private readonly wake = () => {
    if (this.readable) this.readable();
  };

  constructor(
    private readonly native: TunAddon,
    readonly fd: number,
    readonly name: string,
    private readonly handle: object,
    readonly kind: DeviceKind,
    ref: boolean,
    private readonly vnetHdr: boolean,
    private readonly writeMode: number,
  ) {
    this.refed = ref;
  }

  read(batch: PacketBatch): number {
    if (this.closed) {
      batch.count = 0;
      return 0;
    }
    const io = this.io;
    const n = this.native.readBatch(
      this.fd,
      batch.data,
      batch.offsets,
      batch.lengths,
      batch.capacity,
      batch.slotSize,
      HEADROOM,
      io,
      this.vnetHdr,
    );
    this.stats.rxErrors += io[1];
    if (n < 0) {
      // The device is gone (deleted, or its namespace destroyed): a level-triggered
      // watcher would spin on the error, so stop waking up.
      this.stats.rxErrors++;
      this.lastError = errnoError('read', n, this.name);
      this.pause();
      batch.count = 0;
      return 0;
    }
    this.stats.rxPackets += n;
    this.stats.rxBytes += io[0];
    batch.count = n;
    return n;
  }

  write(data: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    if (this.closed) {
      this.stats.txDropped += count;
      return 0;
    }
    if (count === 0) return 0;
    const io = this.io;
    const n = this.native.writeBatch(this.fd, data, offsets, lengths, count, io, this.writeMode);
    this.stats.txPackets += n;
    this.stats.txBytes += io[0];
    this.stats.txDropped += count - n;
    this.stats.txGsoWrites += io[3];
    this.stats.txGsoPackets += io[4];
    const err = io[2];
    if (err !== 0 && err !== EAGAIN /* queue full: not an error of the device */) {
      this.lastError = errnoError('write', -err, this.name);
    }
    return n;
  }

  onReadable(cb: () => void): void {
    if (this.closed) throw new Error(`${this.kind} ${this.name}: onReadable after close`);
    this.readable = cb;
    if (!this.polling) {
      this.native.pollStart(this.handle, this.wake);
      this.polling = true;
      if (!this.refed) this.native.pollRef(this.handle, false);
    }
  }

  pause(): void {
    if (this.polling && !this.closed) this.native.pollStop(this.handle);
    this.polling = false;
  }

  ref(): void {
    this.refed = true;
    if (!this.closed) this.native.pollRef(this.handle, true);
  }

  unref(): void {
    this.refed = false;
    if (!this.closed) this.native.pollRef(this.handle, false);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.polling = false;
    this.readable = null;
    this.native.close(this.handle);
  }
}
