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
 *   XTR_OFFLOADS=0 in the environment turns every offload below off.
 *
 * - Offloads (`offloads`, TUN only, all off unless asked for): TUNSETOFFLOAD
 *   with TUN_F_CSUM, TSO4/TSO6 and USO4/USO6, each probed at open and kept
 *   only if this kernel takes it (`device.offloads` says what is in force).
 *   With TSO/USO a read may yield a super-packet of up to 64 KiB: its
 *   gso_size lands in batch.gso[i] (0 for an ordinary packet) and its L4
 *   checksum stays partial (the router marks it csumPartial), so the router
 *   handles it as one packet, as the kernel handles a GRO skb. write() takes the same per-packet gso sizes
 *   and sends each super-packet as one GSO write the kernel segments
 *   (device.gsoWrites: any TUN with the virtio header can). `gro` also
 *   merges runs of consecutive TCP segments of one flow into one
 *   VIRTIO_NET_HDR_GSO_TCPV4/6 write (rules in dataplane/native/tun.c).
 *
 * Non-goals: persistent devices.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { constants as osConstants } from 'node:os';
import type { DeviceKind, DeviceStats, PacketBatch, PacketDevice } from './device.js';
import { HEADROOM } from './device.js';

/** workersStart's argument (dataplane/native/workers.c). */
export interface WorkersConfig {
  data: Buffer;
  headroom: number;
  devices: { fds: number[]; vnet: boolean; mode: number; uring: boolean }[];
  regions: { base: number; capacity: number; slotSize: number; offsets: Uint32Array; lengths: Uint32Array; gso: Uint32Array }[];
  /** Per worker and device: [packets handed over (< 0: the device failed, -errno), index of the first]. */
  counts: Int32Array;
  /** Per worker and device, its last read: [bytes, failed, errno, super-packets, io_uring refused]. */
  readInfo: Float64Array;
  /** Per worker and device, cumulative: [accepted, bytes, dropped, GSO writes, their packets, super-packets, io_uring refused, last errno]. */
  txStats: Float64Array;
  /** What `worker` read is in its region (counts says what); its writes go to it until this returns. */
  onBatch(worker: number): void;
}

/** The addon's surface (see dataplane/native/tun.c for the exact semantics). */
export interface TunAddon {
  /** SO_PEERCRED of a connected Unix socket's descriptor (the control socket's audit). */
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  open(name: string, tap: boolean, multiQueue: boolean, vnetHdr?: boolean, offloads?: number): { fd: number; name: string; handle: object; offloads: number };
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
    /** per slot: gso_size of the packet read (0 = not a super-packet); without it GSO packets are dropped */
    gso?: Uint32Array,
    /** read through io_uring (out[4] = 1 when the device refused it) */
    uring?: boolean,
  ): number;
  writeBatch(
    fd: number,
    data: Uint8Array,
    offsets: Uint32Array,
    lengths: Uint32Array,
    count: number,
    out?: Float64Array,
    /** 0: plain fd; 1: IFF_VNET_HDR, one packet per write; 2: IFF_VNET_HDR with UDP GSO coalescing; 3: 2 + TCP coalescing; 4: TCP coalescing only */
    mode?: number,
    /** per packet: gso_size of a super-packet to write as one GSO write (modes 1..3), 0 = an ordinary packet */
    gso?: Uint32Array,
    /** write through io_uring (out[6] = 1 when the device refused it) */
    uring?: boolean,
  ): number;
  /** 0 when this thread can use io_uring for batched reads and writes, else -errno (io_uring_setup refused). */
  uringReady(): number;
  /** Queue workers (dataplane/native/workers.c, dataplane/workers.ts). */
  workersStart(cfg: WorkersConfig): object;
  workersWrite(handle: object, worker: number, device: number, offsets: Uint32Array, lengths: Uint32Array, count: number, gso?: Uint32Array): number;
  workersFlush(handle: object, worker: number): void;
  workersStop(handle: object): void;
  /** Coalescer test hook: write sizes (packets per write) for a batch; returns the number of writes. */
  gsoRuns(data: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number, runs: Uint32Array, tcp?: boolean): number;
  /** Coalescer test hook: vnet header + super-packet IP/UDP header for packets start..start+n-1. */
  gsoHeader(data: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, start: number, n: number, out: Uint8Array, tcp?: boolean): number;
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
  /** Offloads to ask for (TUN with vnetHdr only; each is probed, see device.offloads). Default: none. */
  offloads?: OffloadRequest;
  /**
   * Queues to open (IFF_MULTI_QUEUE; default 1): queue 0 is the device's own fd, the others are
   * for queue workers (dataplane/workers.ts), one each. All are opened here, before the device
   * can be moved to another namespace, where its name no longer reaches it.
   */
  queues?: number;
}

/** The offload switches (router config `offloads`). */
export interface OffloadRequest {
  /** TUN_F_CSUM: the kernel may hand over partial checksums (xtr completes an ordinary packet's on read; a super-packet's stays partial). */
  csum?: boolean;
  /** TUN_F_TSO4|TSO6: reads may be TCP super-packets (needs csum). */
  tso?: boolean;
  /** TUN_F_USO4|USO6: reads may be UDP super-packets (needs csum). */
  uso?: boolean;
  /** Coalesce consecutive TCP segments of one flow into one GSO write. */
  gro?: boolean;
  /**
   * Batch the device's reads and writes through io_uring: one system call per
   * batch instead of one per packet (dataplane/native/uring.h). Probed: off
   * where io_uring_setup is refused (old kernel, io_uring_disabled, seccomp)
   * or the device cannot run them inline; XTR_URING=0 turns it off.
   */
  uring?: boolean;
}

/** What is in force on an open device. */
export interface TunOffloads {
  csum: boolean;
  tso4: boolean;
  tso6: boolean;
  uso: boolean;
  /** Super-packets can be written whole (a TUN with the virtio header). */
  gsoWrites: boolean;
  /** TCP segment runs are coalesced on write. */
  gro: boolean;
  /** Reads and writes go through io_uring (false once the device refused it). */
  uring: boolean;
}

export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

/** Largest packet a read can yield with TSO/USO in force (an IP datagram). */
export const SUPER_PACKET_MAX = 65535;

/** A PacketDevice over a kernel TUN/TAP fd, plus the few extras the router uses. */
export interface TunDevice extends PacketDevice {
  readonly fd: number;
  readonly stats: TunStats;
  readonly closed: boolean;
  /** The offloads in force (all false without `offloads`). */
  readonly offloads: TunOffloads;
  /** The fd of every queue (queue 0 = fd): more than one when opened with `queues`. */
  readonly queueFds: readonly number[];
  /** The virtio header framing and write mode a queue worker uses for this device. */
  readonly queueIo: { vnet: boolean; mode: number };
  /**
   * While set, write() first offers its packets here: a queue worker holding the batch being
   * processed takes them (returns how many; dataplane/workers.ts), else -1 and the device writes.
   */
  deferWrites: ((data: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number, gso?: Uint32Array) => number) | null;
  /** The last hard error from read/write (e.g. EBADFD after the link was deleted); null if none. Queue workers set it too. */
  lastError: NodeJS.ErrnoException | null;
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
  /** Super-packets read (TSO/USO in force) and written whole as GSO writes. */
  rxSuperPackets: number;
  txSuperWrites: number;
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
  // XTR_OFFLOADS=0 in the environment turns every offload off whatever the config says (an A/B
  // switch for benchmarks and a way out on a kernel whose offloads misbehave, like XTR_GSO=0)
  const req = process.env.XTR_OFFLOADS === '0' ? {} : (opts.offloads ?? {});
  const tun = vnet && opts.kind === 'tun';
  const want = !tun || !req.csum ? 0 : TUN_F_CSUM | (req.tso ? TUN_F_TSO4 | TUN_F_TSO6 : 0) | (req.uso ? TUN_F_USO4 | TUN_F_USO6 : 0);
  const queues = opts.queues ?? 1;
  if (!(Number.isInteger(queues) && queues >= 1 && queues <= 64)) throw new RangeError(`openTun(${JSON.stringify(name)}): queues must be an integer from 1 to 64`);
  const multi = opts.multiQueue === true || queues > 1;
  const opened = native.open(name, opts.kind === 'tap', multi, vnet, want);
  const got = opened.offloads ?? 0;
  const extra: { fd: number; handle: object }[] = [];
  try {
    // the offloads are the device's: each queue asks for what the first one got
    for (let q = 1; q < queues; q++) extra.push(native.open(opened.name, opts.kind === 'tap', true, vnet, got));
  } catch (e) {
    for (const x of extra) native.close(x.handle);
    native.close(opened.handle);
    throw e;
  }
  const gso = tun && (opts.gso ?? process.env.XTR_GSO !== '0');
  const gro = tun && req.gro === true;
  // UDP coalescing (gso, XTR_GSO) and TCP coalescing (gro) are separate switches
  const writeMode = !vnet ? 0 : gso && gro ? 3 : gso ? 2 : gro ? 4 : 1;
  const offloads: TunOffloads = {
    csum: (got & TUN_F_CSUM) !== 0,
    tso4: (got & TUN_F_TSO4) !== 0,
    tso6: (got & TUN_F_TSO6) !== 0,
    uso: (got & TUN_F_USO4) !== 0,
    // The kernel takes a GSO write on any TUN with the virtio header, whatever
    // TUNSETOFFLOAD says; the tso/uso switch still governs it, so a device with
    // offloads off gets super-packets segmented by xtr (the fallback path).
    gsoWrites: tun && (req.tso === true || req.uso === true),
    gro,
    // io_uring is not an offload of the device but a way to reach it; it has the offloads' switch,
    // probe and status. XTR_URING=0 turns it off alone.
    uring: req.uring === true && process.env.XTR_URING !== '0' && native.uringReady() === 0,
  };
  const dev = new NativeTunDevice(native, opened.fd, opened.name, opened.handle, opts.kind, opts.ref !== false, vnet, writeMode, offloads);
  dev.addQueues(extra);
  return dev;
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

export function errnoError(syscall: string, negErrno: number, device: string): NodeJS.ErrnoException {
  const code = ERRNO_NAMES.get(-negErrno) ?? `E${-negErrno}`;
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${device}: ${code}`);
  err.errno = negErrno;
  err.code = code;
  err.syscall = syscall;
  return err;
}

class NativeTunDevice implements TunDevice {
  readonly stats: TunStats = {
    rxPackets: 0,
    rxBytes: 0,
    txPackets: 0,
    txBytes: 0,
    txDropped: 0,
    rxErrors: 0,
    txGsoWrites: 0,
    txGsoPackets: 0,
    rxSuperPackets: 0,
    txSuperWrites: 0,
  };
  /** Largest packet read() may return (0: the MTU bounds it, as the batch's slots do). */
  readonly maxPacket: number;
  get gsoWrites(): boolean {
    return this.offloads.gsoWrites;
  }
  lastError: NodeJS.ErrnoException | null = null;
  closed = false;
  /**
   * From the last native call, reused, never reallocated: [bytes, failed, errno, gso writes | super-packets
   * read, gso packets | io_uring refused by a read, super-packets written, io_uring refused by a write].
   */
  private readonly io = new Float64Array(7);
  private readable: (() => void) | null = null;
  private polling = false;
  private queueHandles: object[] = [];
  queueFds: number[];
  deferWrites: TunDevice['deferWrites'] = null;
  get queueIo(): { vnet: boolean; mode: number } {
    return { vnet: this.vnetHdr, mode: this.writeMode };
  }
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
    readonly offloads: TunOffloads,
  ) {
    this.refed = ref;
    this.maxPacket = offloads.tso4 || offloads.tso6 || offloads.uso ? SUPER_PACKET_MAX : 0;
    this.queueFds = [fd];
  }

  /** The queues opened after the first (openTun's `queues`); closed with the device. */
  addQueues(queues: readonly { fd: number; handle: object }[]): void {
    for (const q of queues) {
      this.queueFds.push(q.fd);
      this.queueHandles.push(q.handle);
    }
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
      batch.gso,
      this.offloads.uring,
    );
    this.stats.rxErrors += io[1];
    if (io[4] === 1) this.offloads.uring = false; // the device cannot run reads inline: plain syscalls from now on
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
    this.stats.rxSuperPackets += io[3];
    batch.count = n;
    return n;
  }

  write(data: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number, gso?: Uint32Array): number {
    if (this.closed) {
      this.stats.txDropped += count;
      return 0;
    }
    if (count === 0) return 0;
    if (this.deferWrites !== null) {
      const n = this.deferWrites(data, offsets, lengths, count, gso);
      if (n >= 0) return n; // a queue worker writes them (dataplane/workers.ts)
    }
    const io = this.io;
    io[3] = io[4] = io[5] = io[6] = 0;
    const n = this.native.writeBatch(this.fd, data, offsets, lengths, count, io, this.writeMode, gso, this.offloads.uring);
    if (io[6] === 1) this.offloads.uring = false; // as for reads
    this.stats.txPackets += n;
    this.stats.txBytes += io[0];
    this.stats.txDropped += count - n;
    this.stats.txGsoWrites += io[3];
    this.stats.txGsoPackets += io[4];
    this.stats.txSuperWrites += io[5];
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
    this.deferWrites = null;
    this.native.close(this.handle);
    for (const h of this.queueHandles) this.native.close(h);
  }
}

/**
 * The kernel's SO_PEERCRED of a connected Unix socket (who is at the other
 * end, as recorded at connect): Node has no getsockopt, the addon does it.
 */
export function socketPeerCredentials(fd: number): { pid: number; uid: number; gid: number } {
  return loadTunAddon().peerCred(fd);
}
