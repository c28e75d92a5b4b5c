/**
 * The router: reads batches from its TUN/TAP devices, runs every packet
 * through one pipeline (L2, validation, netfilter hooks, routing, TTL, MTU,
 * L2 again) and writes the survivors with one write per egress device per
 * batch.
 *
 * Paths, with the netfilter hooks in the kernel's order:
 *   link in  -> PREROUTING -> route -> local:  INPUT -> host interface
 *                                   -> remote: (TTL, MTU checks) FORWARD -> POSTROUTING -> link out
 *   host interface in (the local stack's output), and packets xtr builds
 *   (ICMP errors, services.emitLocal)
 *            -> route -> OUTPUT -> POSTROUTING -> link out (or INPUT -> host interface)
 *
 * Fragments: while conntrack is in use for a family (a loaded rule needs
 * it; Netfilter.conntrackInUse), fragments are reassembled before
 * PREROUTING and before OUTPUT, as the kernel's nf_defrag hooks do
 * (dataplane/reassembly.ts); the rules see the whole datagram, and egress
 * fragments it again as the kernel does: along the original fragments when
 * they fit, else no larger than the largest of them (frag_max_size) or the
 * MTU. Otherwise fragments go through the rules as they are (`-f`).
 *
 * Memory: one Buffer holds the read batch's slots followed by a scratch area
 * for packets xtr builds. Forwarded packets are never copied: they are edited
 * in place (TTL, Ethernet header written into the headroom) and queued for
 * transmission as offsets into that buffer. One PacketContext is re-pointed
 * at every packet. The fast path (parse, hooks, one LPM lookup, neighbour
 * hash probe on TAP, queue) allocates nothing and creates no closures.
 *
 * Re-entrancy: packets built while another is in the pipeline (an ICMP error
 * about it, an emitLocal from a target) are queued as "pending" in scratch
 * and run through the OUTPUT path right after the current packet.
 *
 * This file is the pipeline; its parts live beside it: egress.ts
 * (fragmentation, neighbour resolution, transmit queues), icmp-errors.ts
 * (ICMP errors and their one rate limiter), scratch.ts (the scratch arena
 * and pending queue), route-install.ts (the routing tables from the config),
 * status.ts (the status report).
 */
import { setU32 } from '../dataplane/bytes.js';
import { HEADROOM, type PacketBatch, type PacketDevice } from '../dataplane/device.js';
import { ETH_HLEN, EthernetView, isMulticastMac } from '../dataplane/ethernet.js';
import { Ipv4OptionCursor, Ipv4View } from '../dataplane/ipv4.js';
import { Ipv6View } from '../dataplane/ipv6.js';
import { DEFRAG_IN, DEFRAG_OUT, Reassembler, ReasmResult, type ReassemblerOptions } from '../dataplane/reassembly.js';
import { DropReason } from '../dataplane/drop.js';
import type { TunDevice } from '../dataplane/tun.js';
import { QueueWorkers } from '../dataplane/workers.js';
import { parsePacket } from '../dataplane/parse.js';
import type { XtrConfig } from './config.js';
import { Egress, MAX_FRAGMENTS } from './egress.js';
import { IcmpErrors } from './icmp-errors.js';
import { DROP_COUNT, RouterDrop, RouterInterface } from './interfaces.js';
import type { Logger } from './log.js';
import {
  DEFAULT_NEIGHBOR_TIMERS,
  ETHERTYPE_ARP,
  ETHERTYPE_IPV4,
  ETHERTYPE_IPV6,
  NeighborCache,
  type NeighborIO,
  type NeighborTimers,
} from './neighbor.js';
import { installRoutes } from './route-install.js';
import { RouteKind, RouteTable4, RouteTable6 } from './routing.js';
import { PendingFlag, ScratchArena } from './scratch.js';
import { monotonicMs, Services, type ServicesBackend } from './services.js';
import { routerStatus, type RouterStatus } from './status.js';
import { CtState, Hook, PacketContext, Verdict, type Family } from '../xt/packet.js';
import type { RouterServices } from '../xt/extension.js';
import type { DupOptions, EmitOptions } from '../xt/services.js';

export type { InterfaceStatusEntry, RouterStatus } from './status.js';

/** The rule engine's seam: one call per packet per hook. */
export interface Netfilter {
  hook(hook: Hook, ctx: PacketContext): Verdict;
  /** Whether conntrack is in use for the family (then fragments are reassembled before the rules); absent = never. */
  conntrackInUse?(family: Family): boolean;
}

/** Accepts everything: the router before a rule engine is plugged in. */
export const ACCEPT_ALL: Netfilter = {
  hook: () => Verdict.ACCEPT,
};

export interface RouterOptions {
  config: XtrConfig;
  /** Devices by config interface name. */
  devices: Map<string, PacketDevice>;
  /** The host interface (local delivery), or null (gateway mode: local packets go back into their ingress TUN). */
  host: PacketDevice | null;
  logger: Logger;
  /** Packets per read (default 64). */
  batchSize?: number;
  /** Neighbour timers (tests shorten them). */
  neighborTimers?: Partial<NeighborTimers>;
  /** Monotonic milliseconds (tests substitute a fake clock). */
  clock?: () => number;
  /** How often neighbour timers run, ms (default 250). */
  tickMs?: number;
  /** Fragment reassembly limits, per family (default 4 MiB, 30 s as the kernel's). */
  reassembly?: ReassemblerOptions;
  /**
   * Queue workers (config `workers`, docs/design.md "Queue workers"): with N > 1, the links whose
   * devices were opened with N queues are read and written by N native threads, one per queue, and
   * this thread runs the pipeline on their batches. Default 1: the devices are read here.
   */
  workers?: number;
}

const DEFAULT_BATCH = 64;
const SCRATCH_SIZE = 512 * 1024;
/** Buckets of Router.readBatches: 1, 2-3, 4-7, ... packets per read (a batch holds at most 2^31). */
const BATCH_SIZE_BUCKETS = 32;
/** Most batches drained per wake-up before yielding to other devices (the poll is level-triggered). */
const MAX_ROUNDS = 16;
/**
 * Pure SYNs a batch admits at least while new flows are shed (see Router.synBudget): 4 of 64.
 * A floor of 1 let long backlogged stretches starve new flows (with the quarter/+4 control
 * below, bench:flood runs of 55k and 60k new flows/s beside one of 104k; with 4: 109k, 108k, 81k).
 */
const SYN_BUDGET_MIN = 4;
/** What a wake-up that empties the device adds back to synBudget. */
const SYN_BUDGET_STEP = 4;
/** routeOutput: sent to a next hop given with the packet (egress.viaGateway), not a route's. */
const FORCED_HOP = -2;

export class Router implements ServicesBackend {
  readonly services: RouterServices;
  /** Interfaces by index (0 unused); the host interface, if any, is last. */
  readonly interfaces: RouterInterface[] = [];
  readonly host: RouterInterface | null;
  readonly routes4 = new RouteTable4();
  readonly routes6 = new RouteTable6();

  private readonly logger: Logger;
  private readonly config: XtrConfig;
  private readonly clock: () => number;
  private readonly tickMs: number;
  /** The batch being processed: this thread's reads, or a queue worker's (its region of buf). */
  private batch: PacketBatch;
  private readonly ownBatch: PacketBatch;
  /** Where the batch in hand lies in buf: its region's read slots start here, its scratch follows them. */
  private batchBase = 0;
  /** Bytes per region: read slots, then scratch (this thread's region first, then one per queue worker). */
  private readonly regionSize: number;
  /** Queue workers (RouterOptions.workers), and their batches' regions; null with one worker. */
  private workers: QueueWorkers | null = null;
  private readonly workerBatches: PacketBatch[] = [];
  /** The links the queue workers serve, in the order of their devices in QueueWorkers. */
  private workerIfs: RouterInterface[] = [];
  private readonly buf: Buffer;
  private readonly ctx = new PacketContext();
  private nf: Netfilter = ACCEPT_ALL;

  private readonly scratch: ScratchArena;
  private readonly egress: Egress;
  private readonly icmp: IcmpErrors;

  /** Codec views re-pointed at the packet in hand (never one per packet). */
  private readonly eth = new EthernetView();
  private readonly ip4 = new Ipv4View();
  private readonly ip6 = new Ipv6View();
  private readonly optCursor = new Ipv4OptionCursor();
  /** Views for the services (a clone's TTL), apart from the pipeline's so a target's call never moves those. */
  private readonly cloneIp4 = new Ipv4View();
  private readonly cloneIp6 = new Ipv6View();

  /**
   * How the packet in ctx was emitted (PendingFlag bits; 0 for everything
   * else), its pending slot, and the interface it was told to leave by.
   */
  private emitFlags = 0;
  private emitSlot = 0;
  private forcedOif: RouterInterface | null = null;
  /** The interface routeOutput chose. */
  private routedOut: RouterInterface | null = null;
  private readonly savedDst6 = new Uint32Array(4);

  /** Fragment queues per family (used only while conntrack is in use). */
  readonly reassembly4: Reassembler;
  readonly reassembly6: Reassembler;

  /** Drops of packets not from any interface (xtr's own). */
  readonly localDrops = new Float64Array(DROP_COUNT);

  private running = false;
  private startedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  now = 0;

  constructor(opts: RouterOptions) {
    this.config = opts.config;
    this.logger = opts.logger;
    this.clock = opts.clock ?? monotonicMs;
    this.tickMs = opts.tickMs ?? 250;
    const batchSize = opts.batchSize ?? DEFAULT_BATCH;
    const timers: NeighborTimers = { ...DEFAULT_NEIGHBOR_TIMERS, ...opts.neighborTimers };

    // One buffer: read slots, then scratch. Slots fit the largest frame of any device.
    let maxFrame = opts.config.hostInterface.mtu;
    for (const ic of opts.config.interfaces) maxFrame = Math.max(maxFrame, ic.mtu + (ic.mode === 'tap' ? ETH_HLEN : 0));
    // offloads: a device with TSO/USO in force reads super-packets of up to 64 KiB (docs/design.md "Offloads")
    for (const dev of opts.devices.values()) maxFrame = Math.max(maxFrame, dev.maxPacket ?? 0);
    const slotSize = Math.ceil((HEADROOM + maxFrame) / 64) * 64;
    const slots = batchSize * slotSize;
    // Queue workers: one more region (read slots + scratch) per worker, after this thread's
    const workers = opts.workers ?? 1;
    const queued = workers > 1 ? opts.config.interfaces.filter((ic) => (opts.devices.get(ic.name) as Partial<TunDevice> | undefined)?.queueFds?.length === workers) : [];
    const regions = queued.length ? 1 + workers : 1;
    this.regionSize = slots + SCRATCH_SIZE;
    const data = Buffer.alloc(this.regionSize * regions);
    const regionBatch = (base: number): PacketBatch => {
      const offsets = new Uint32Array(batchSize);
      for (let i = 0; i < batchSize; i++) offsets[i] = base + i * slotSize + HEADROOM;
      return { data, offsets, lengths: new Uint32Array(batchSize), gso: new Uint32Array(batchSize), capacity: batchSize, slotSize, count: 0 };
    };
    this.batch = this.ownBatch = regionBatch(0);
    for (let k = 1; k < regions; k++) this.workerBatches.push(regionBatch(k * this.regionSize));
    this.buf = data;
    this.scratch = new ScratchArena(data, slots, this.ctx, this.regionSize);
    this.egress = new Egress(data, this.ctx, this.interfaces, this.routes4, this.routes6, this.scratch, this);
    // a scratch recycled mid-batch must first see its packets written, also those a queue worker holds
    this.scratch.tx = { flushAll: () => (this.egress.flushAll(), this.workers?.flushCurrent()) };
    this.icmp = new IcmpErrors(this.scratch);

    const txCapacity = batchSize * 4 + MAX_FRAGMENTS;
    this.interfaces.push(null as unknown as RouterInterface); // index 0 = none
    for (const ic of opts.config.interfaces) {
      const dev = opts.devices.get(ic.name);
      if (!dev) throw new Error(`interface ${ic.name}: no device given to the router`);
      if (dev.kind !== ic.mode) throw new Error(`interface ${ic.name}: config says ${ic.mode} but the device is ${dev.kind}`);
      const ri = new RouterInterface(ic.name, this.interfaces.length, ic.mode, ic.mtu, dev, ic, txCapacity);
      if (ic.mode === 'tap') ri.neighbors = new NeighborCache(ri.macValue, ri.v4, ri.v6, this.neighborIO(ri), timers);
      this.interfaces.push(ri);
      if (!this.icmp.anySource4 && ri.icmpSource4) this.icmp.anySource4 = ri.icmpSource4;
      if (!this.icmp.anySource6 && ri.icmpSource6) this.icmp.anySource6 = ri.icmpSource6;
    }
    if (opts.host) {
      const h = new RouterInterface(opts.config.hostInterface.name, this.interfaces.length, 'host', opts.config.hostInterface.mtu, opts.host, null, txCapacity);
      this.interfaces.push(h);
      this.host = h;
    } else {
      this.host = null;
    }
    installRoutes(this.config, this.interfaces, this.host, this.routes4, this.routes6);
    if (queued.length) {
      this.workerIfs = queued.map((ic) => this.interfaces.find((ri) => ri?.name === ic.name)!);
      this.workers = new QueueWorkers(
        this.workerIfs.map((ri) => ri.device as TunDevice),
        this.workerBatches.map((b, k) => ({ base: (k + 1) * this.regionSize, capacity: batchSize, slotSize, offsets: b.offsets, lengths: b.lengths, gso: b.gso! })),
        data,
        (k) => this.workerBatch(k),
      );
    }
    this.services = new Services(this, this.logger, this.clock, this);
    this.reassembly4 = new Reassembler(opts.reassembly);
    this.reassembly6 = new Reassembler(opts.reassembly);
  }

  // ------------------------------------------------------------ set-up

  /** The I/O a TAP link's neighbour cache does through the router (one object per link, made once). */
  private neighborIO(ri: RouterInterface): NeighborIO {
    const egress = this.egress;
    return {
      sendFrame: (b, off, len) => egress.sendFrame(ri, b, off, len),
      release: (pkt, len, mac) => egress.sendResolved(ri, pkt, len, mac),
      unresolved: (pkt, len) => {
        ri.drops[RouterDrop.NEIGHBOR_FAILED]++;
        this.hostUnreachable(pkt, len);
      },
    };
  }

  /**
   * Config reload (router/reload.ts): the links' addresses and the static routes of `next`, whose
   * interfaces are the running ones (same names, modes and devices: the caller refuses anything
   * else). Runs between two batches; the new tables are built aside and swapped in whole, so every
   * packet sees the old set or the new one. Throws, changing nothing, if a route reaches no link.
   */
  reconfigure(next: XtrConfig): void {
    const byName = new Map(next.interfaces.map((ic) => [ic.name, ic]));
    const links = this.interfaces.slice(1).filter((ri) => ri.kind !== 'host');
    for (const ri of links) if (!byName.has(ri.name)) throw new Error(`interface ${ri.name}: not in the new configuration`);
    const before = links.map((ri) => ri.config?.addresses ?? []);
    const current = this.currentAddresses;
    const r4 = new RouteTable4();
    const r6 = new RouteTable6();
    try {
      for (const ri of links) ri.setAddresses(byName.get(ri.name)!.addresses);
      installRoutes(next, this.interfaces, this.host, r4, r6);
    } catch (e) {
      links.forEach((ri, i) => ri.setAddresses(current.get(ri.name) ?? before[i]));
      throw e;
    }
    for (const ri of links) current.set(ri.name, byName.get(ri.name)!.addresses);
    this.routes4.adopt(r4);
    this.routes6.adopt(r6);
    this.icmp.anySource4 = 0;
    this.icmp.anySource6 = null;
    for (const ri of links) {
      if (!this.icmp.anySource4 && ri.icmpSource4) this.icmp.anySource4 = ri.icmpSource4;
      if (!this.icmp.anySource6 && ri.icmpSource6) this.icmp.anySource6 = ri.icmpSource6;
    }
  }
  /** Each link's addresses as last applied by reconfigure (the config's until then). */
  private readonly currentAddresses = new Map<string, readonly string[]>();

  setNetfilter(nf: Netfilter): void {
    this.nf = nf;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.startedAt = this.clock();
    for (let i = 1; i < this.interfaces.length; i++) {
      const ri = this.interfaces[i];
      if (!this.workerIfs.includes(ri)) ri.device.onReadable(() => this.drain(ri));
    }
    this.workers?.start();
    if (this.interfaces.some((ri) => ri?.neighbors)) {
      this.timer = setInterval(() => this.tick(), this.tickMs);
      this.timer.unref();
    }
    this.logger.info(
      { interfaces: this.interfaces.slice(1).map((i) => `${i.name}(${i.kind})`), routes4: this.routes4.size, routes6: this.routes6.size },
      'router started',
    );
  }

  /** Stops processing (devices are closed by their owner). Idempotent. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.workers?.stop();
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Runs the neighbour timers now (the interval does this every tickMs). */
  tick(): void {
    if (!this.running) return;
    const now = this.clock();
    this.now = now;
    for (let i = 1; i < this.interfaces.length; i++) this.interfaces[i].neighbors?.tick(now);
    this.finishOutOfBatch();
  }

  // ------------------------------------------------------------ batch loop

  /** Reads and processes everything the device has (bounded per wake-up). */
  drain(ri: RouterInterface): void {
    const batch = this.batch;
    let backlogged = true;
    for (let round = 0; round < MAX_ROUNDS && this.running; round++) {
      const n = ri.device.read(batch);
      if (n > 0) {
        this.readBatches[31 - Math.clz32(n)]++;
        this.processBatch(ri, n);
      }
      if (n < batch.capacity) {
        backlogged = false;
        break;
      }
    }
    this.adjustSynBudget(backlogged);
  }

  /** New-flow shedding's control (synBudget): a quarter less while the input outruns us, 4 more when it does not. */
  private adjustSynBudget(backlogged: boolean): void {
    const cap = this.ownBatch.capacity;
    if (backlogged) this.synBudget = Math.max(SYN_BUDGET_MIN, this.synBudget - Math.max(1, this.synBudget >> 2));
    else if (this.synBudget < cap) this.synBudget = Math.min(cap, this.synBudget + SYN_BUDGET_STEP);
  }

  /**
   * New-flow shedding under overload (issue 12, floods; README "bench:flood"). When a wake-up
   * ends with the device still backlogged (MAX_ROUNDS full batches and more waiting), the input
   * outruns the router and the kernel's TUN queue drops packets blindly, established flows'
   * as many as a flood's. Then a batch admits at most synBudget pure SYNs (TCP SYN without
   * ACK/RST/FIN: a connection attempt, the packet that costs a conntrack entry and that its
   * sender retransmits); the others are dropped before PREROUTING and counted as
   * new_flow_shed, so the router keeps reading fast enough for packets of flows it already
   * has. The budget loses a quarter at each backlogged wake-up (down to SYN_BUDGET_MIN) and
   * grows by SYN_BUDGET_STEP at each wake-up that empties the device, back to the batch size,
   * where nothing is shed. (Halving to a floor of 1 and +1 shed more than needed: in
   * alternated bench:flood runs its rounds admitted a median of 79k new flows/s (54-134k, 6
   * rounds), this control 108k (62-109k, 9 rounds), the established flow kept at 0.93-1.0.)
   */
  private synBudget = DEFAULT_BATCH;

  /**
   * What queue worker k read from its queues of the worker links, in region k (its slots, and
   * its scratch for what the batches build), one batch per link. The worker waits meanwhile;
   * the writes the batches make go to it (dataplane/workers.ts), and it makes them when this
   * returns, so the scratch is reset only before the first batch: a later one must not reuse
   * space whose packets are still to be written (a full arena writes them out first: scratch.tx).
   */
  private workerBatch(k: number): void {
    const w = this.workers!;
    if (!this.running) return;
    const b = this.workerBatches[k];
    this.batch = b;
    this.batchBase = (k + 1) * this.regionSize;
    this.scratch.rebase(this.batchBase + b.capacity * b.slotSize, this.batchBase + this.regionSize);
    this.holdScratch = true;
    let total = 0;
    try {
      for (let d = 0; d < this.workerIfs.length; d++) {
        const n = w.count(k, d);
        if (n <= 0) continue;
        total += n;
        this.readBatches[31 - Math.clz32(n)]++;
        this.processBatch(this.workerIfs[d], n, w.first(k, d));
      }
    } finally {
      this.holdScratch = false;
      this.batch = this.ownBatch;
      this.batchBase = 0;
      this.scratch.rebase(this.ownBatch.capacity * this.ownBatch.slotSize, this.regionSize);
    }
    // as many packets as the region has slots: the queues outrun us
    this.adjustSynBudget(total === b.capacity);
  }

  /** Pure SYNs the batch in hand may still admit. */
  private synLeft = DEFAULT_BATCH;

  /** While a queue worker's batches are processed: their scratch is not reset between them. */
  private holdScratch = false;

  private processBatch(ri: RouterInterface, n: number, first = 0): void {
    const now = this.clock();
    this.now = now;
    this.ctx.now = now;
    this.scratch.inBatch = true;
    this.synLeft = this.synBudget;
    const offsets = this.batch.offsets;
    const lengths = this.batch.lengths;
    const kind = ri.kind;
    const gso = this.batch.gso!;
    for (let i = first; i < first + n; i++) {
      const off = offsets[i];
      const len = lengths[i];
      this.egress.rxGso = gso[i]; // offloads: a super-packet's gso_size, taken by resetContext
      try {
        if (kind === 'tun') this.receiveIp(ri, off, len, -1);
        else if (kind === 'tap') this.receiveFrame(ri, off, len);
        else this.fromHost(ri, off, len);
        if (this.scratch.pendingCount !== 0) this.runPending();
      } catch (e) {
        // a bug in a hook or extension costs this packet, never the process or the batch
        this.internalError(ri, e);
      }
    }
    this.scratch.inBatch = false;
    this.egress.flushAll();
    if (!this.holdScratch) this.scratch.reset();
  }

  /** After work outside a batch (timers, emitLocal from elsewhere): run pending packets and write. */
  private finishOutOfBatch(): void {
    if (this.scratch.inBatch) return;
    const now = this.clock();
    this.now = now;
    this.ctx.now = now;
    this.scratch.inBatch = true;
    try {
      if (this.scratch.pendingCount !== 0) this.runPending();
    } catch (e) {
      this.internalError(null, e);
    }
    this.scratch.inBatch = false;
    this.egress.flushAll();
    this.scratch.reset();
  }

  private internalErrors = 0;

  private internalError(ri: RouterInterface | null, e: unknown): void {
    (ri ? ri.drops : this.localDrops)[RouterDrop.INTERNAL_ERROR]++;
    this.scratch.clearPending();
    // the first few with their stack, then one line per thousand
    if (this.internalErrors++ < 10 || this.internalErrors % 1000 === 0) {
      this.logger.error({ err: e instanceof Error ? e.stack : String(e), count: this.internalErrors, iface: ri?.name }, 'packet processing failed; packet dropped');
    }
  }

  // ------------------------------------------------------------ ingress

  private receiveFrame(ri: RouterInterface, off: number, len: number): void {
    const eth = this.eth.point(this.buf, off, len);
    if (!eth.checkLen()) {
      ri.drops[DropReason.TRUNCATED_FRAME]++;
      return;
    }
    // own MAC, broadcast or multicast (I/G bit): anything else is for another station
    const dst = eth.dst;
    if (dst !== ri.macValue && !isMulticastMac(dst)) {
      ri.drops[RouterDrop.OTHER_HOST]++;
      return;
    }
    const type = eth.ethertype;
    if (type === ETHERTYPE_IPV4 || type === ETHERTYPE_IPV6) {
      this.receiveIp(ri, eth.payloadOffset, eth.payloadLength, off);
    } else if (type === ETHERTYPE_ARP) {
      if (!ri.neighbors!.handleArp(this.buf, eth.payloadOffset, eth.payloadLength, this.now)) ri.drops[RouterDrop.BAD_NEIGHBOR_MSG]++;
    } else {
      ri.drops[RouterDrop.UNKNOWN_ETHERTYPE]++;
    }
  }

  private resetContext(inIf: RouterInterface | null, l2off: number, local: boolean): void {
    const ctx = this.ctx;
    ctx.l2off = l2off;
    ctx.inIf = inIf;
    ctx.outIf = null;
    ctx.locallyGenerated = local;
    ctx.mark = 0;
    ctx.ct = null;
    ctx.ctState = CtState.UNTRACKED;
    ctx.notrack = false;
    ctx.ctAttached = false;
    ctx.fragMaxSize = 0;
    this.egress.reasmPieces = 0;
    this.egress.viaGateway = false;
    this.egress.gsoSize = this.egress.rxGso; // offloads: 0 unless this is a super-packet just read
    ctx.csumPartial = this.egress.rxGso !== 0; // a super-packet's checksum is partial (dataplane/native/tun.c)
    this.egress.rxGso = 0;
    this.emitFlags = 0;
    // Room to grow in place (TCPMSS adds an option): up to the end of the packet's read slot; none in scratch.
    const slot = this.batch.slotSize;
    const rel = ctx.l3off - this.batchBase;
    ctx.tailroom = rel >= 0 && rel < slot * this.batch.capacity ? (Math.floor(rel / slot) + 1) * slot - rel - ctx.l3len : 0;
  }

  /**
   * Whether the packet in ctx is one the kernel would defragment now: a
   * fragment (IPv6: anything with a Fragment header, atomic ones too) while
   * conntrack is in use for its family. Read right after parsePacket.
   */
  private wantsDefrag(): boolean {
    const ctx = this.ctx;
    return (ctx.isFragment || ctx.fragHdrOff >= 0) && this.nf.conntrackInUse?.(ctx.family) === true;
  }

  /**
   * nf_defrag (priority -400, before raw): the fragment in ctx joins its
   * queue. True when ctx now holds a packet to go on with - the completed
   * datagram, copied into scratch and parsed, or the fragment itself when it
   * is not for reassembly; false when it was queued or dropped.
   */
  private defrag(drops: Float64Array, user: number): boolean {
    const ctx = this.ctx;
    const reasm = ctx.family === 4 ? this.reassembly4 : this.reassembly6;
    const r = reasm.add(this.buf, ctx.l3off, ctx.l3len, user, this.now);
    if (r === ReasmResult.PASS) return true;
    if (r !== ReasmResult.COMPLETE) {
      if (r === ReasmResult.DROPPED) drops[RouterDrop.REASSEMBLY]++;
      return false;
    }
    const n = reasm.datagramLength;
    const p = this.scratch.alloc(n);
    if (p < 0) {
      reasm.discard();
      drops[RouterDrop.SCRATCH_FULL]++;
      return false;
    }
    reasm.emit(this.buf, p);
    this.scratch.pos = p + n;
    const inIf = ctx.inIf as RouterInterface | null;
    const local = ctx.locallyGenerated;
    let l2off = ctx.l2off;
    if (l2off >= 0) {
      // the link header stays in front of the datagram (the mac match reads it)
      this.buf.copyWithin(p - ETH_HLEN, l2off, l2off + ETH_HLEN);
      l2off = p - ETH_HLEN;
    }
    const bad = parsePacket(ctx, this.buf, p, n);
    if (bad !== 0) {
      drops[bad]++;
      return false;
    }
    this.resetContext(inIf, l2off, local);
    ctx.fragMaxSize = reasm.fragMaxSize;
    this.egress.keepGeometry(reasm);
    return true;
  }

  /** A packet from a link: validate, PREROUTING, route, then local delivery or forwarding. */
  private receiveIp(ri: RouterInterface, l3off: number, len: number, l2off: number): void {
    const ctx = this.ctx;
    const r = parsePacket(ctx, this.buf, l3off, len);
    if (r !== 0) {
      ri.drops[r]++;
      return;
    }
    // a pure SYN over the batch's budget while overloaded (synBudget)
    if (ctx.proto === 6 && (ctx.tcpFlags & 0x17) === 0x02 && this.synLeft-- <= 0) {
      ri.drops[RouterDrop.NEW_FLOW_SHED]++;
      return;
    }
    this.resetContext(ri, l2off, false);
    if (ctx.family === 4) {
      const d = ctx.dst4;
      if (d >>> 28 === 0xe || d === 0xffffffff) {
        ri.drops[RouterDrop.MULTICAST]++;
        return;
      }
      // ip_route_input_slow's martians: 0/8 and 127/8 either way, multicast/class E sources
      const s = ctx.src4;
      const s8 = s >>> 24;
      const d8 = d >>> 24;
      if (s8 === 0 || s8 === 127 || s8 >= 224 || d8 === 0 || d8 === 127) {
        ri.drops[RouterDrop.MARTIAN]++;
        return;
      }
    } else {
      if (ctx.proto === 58 && (ctx.icmpType === 135 || ctx.icmpType === 136) && ri.neighbors !== null) {
        const ethSrc = l2off >= 0 ? this.eth.point(this.buf, l2off, ETH_HLEN).src : -1;
        if (!ri.neighbors.handleNdp(this.buf, l3off, ctx.l4off, ctx.l4len, ethSrc, this.now)) ri.drops[RouterDrop.BAD_NEIGHBOR_MSG]++;
        return;
      }
      const d0 = ctx.dst6[0];
      if (d0 >>> 24 === 0xff) {
        ri.drops[RouterDrop.MULTICAST]++;
        return;
      }
      const s6 = ctx.src6;
      if (s6[0] >>> 24 === 0xff || isLoopback6(s6) || isLoopback6(ctx.dst6)) {
        ri.drops[RouterDrop.MARTIAN]++;
        return;
      }
      if ((d0 & 0xffc00000) >>> 0 === 0xfe800000 || (ctx.src6[0] & 0xffc00000) >>> 0 === 0xfe800000) {
        ri.drops[RouterDrop.LINK_LOCAL]++;
        return;
      }
    }
    if (this.wantsDefrag() && !this.defrag(ri.drops, DEFRAG_IN)) return;
    ctx.hook = Hook.PREROUTING;
    const v = this.nf.hook(Hook.PREROUTING, ctx);
    if (v !== Verdict.ACCEPT) {
      if (v === Verdict.DROP) ri.drops[RouterDrop.NETFILTER]++;
      return;
    }
    if (ctx.family === 4) {
      // ip_rcv_options: source-routed packets are refused after PREROUTING (accept_source_route=0)
      if (this.ip4.point(this.buf, ctx.l3off, ctx.l3len).headerLength !== 20 && this.hasSourceRoute()) {
        ri.drops[RouterDrop.SOURCE_ROUTE]++;
        return;
      }
      const id = this.routes4.lookup(ctx.dst4);
      if (id < 0) {
        this.icmpError(ri, 3, 0, 0);
        ri.drops[RouterDrop.NO_ROUTE]++;
        return;
      }
      const kind = this.routes4.kind[id];
      if (kind === RouteKind.LOCAL) this.deliverLocal(ri);
      else if (kind === RouteKind.CONNECTED && ctx.dst4 === this.routes4.broadcast[id]) ri.drops[RouterDrop.MULTICAST]++;
      else this.forward4(ri, this.interfaces[this.routes4.ifIndex[id]], id);
    } else {
      const id = this.routes6.lookup(ctx.dst6);
      if (id < 0) {
        this.icmpError(ri, 1, 0, 0);
        ri.drops[RouterDrop.NO_ROUTE]++;
        return;
      }
      if (this.routes6.kind[id] === RouteKind.LOCAL) this.deliverLocal(ri);
      else this.forward6(ri, this.interfaces[this.routes6.ifIndex[id]], id);
    }
  }

  /** INPUT, then into the host interface where the kernel's stack and local services receive it. */
  private deliverLocal(ri: RouterInterface): void {
    const ctx = this.ctx;
    ctx.hook = Hook.INPUT;
    ctx.outIf = null;
    const v = this.nf.hook(Hook.INPUT, ctx);
    if (v !== Verdict.ACCEPT) {
      if (v === Verdict.DROP) ri.drops[RouterDrop.NETFILTER]++;
      return;
    }
    if (this.host !== null) this.egress.queueLocal(this.host, ri.drops);
    else if (ri.kind === 'tun') this.egress.queueLocal(ri, ri.drops); // gateway mode: the namespace's kernel owns the address
    else ri.drops[RouterDrop.NO_LOCAL_DELIVERY]++;
  }

  private forward4(ri: RouterInterface, out: RouterInterface, id: number): void {
    const ctx = this.ctx;
    const ip = this.ip4.point(this.buf, ctx.l3off, ctx.l3len);
    if (ctx.ttl <= 1) {
      this.icmpError(ri, 11, 0, 0);
      ri.drops[RouterDrop.TTL_EXCEEDED]++;
      return;
    }
    if (ctx.l3len > out.mtu && ip.dontFragment && this.egress.fragmentsTooBig(out)) {
      this.icmpError(ri, 3, 4, out.mtu);
      ri.drops[RouterDrop.TOO_BIG]++;
      return;
    }
    // ip_decrease_ttl (RFC 1624 incremental checksum: the same bytes as the kernel's +0x0100 for every checksum value)
    ip.decrementTtl();
    ctx.ttl--;
    ctx.outIf = out;
    ctx.hook = Hook.FORWARD;
    let v = this.nf.hook(Hook.FORWARD, ctx);
    if (v === Verdict.ACCEPT) {
      // pointed again: services a rule calls (icmpError, emit) run router code that may use the same view
      if (this.ip4.point(this.buf, ctx.l3off, ctx.l3len).headerLength !== 20) this.forwardOptions(out);
      ctx.hook = Hook.POSTROUTING;
      v = this.nf.hook(Hook.POSTROUTING, ctx);
      if (v === Verdict.ACCEPT) {
        this.egress.transmit4(out, id, ri.drops);
        return;
      }
    }
    if (v === Verdict.DROP) ri.drops[RouterDrop.NETFILTER]++;
  }

  private forward6(ri: RouterInterface, out: RouterInterface, id: number): void {
    const ctx = this.ctx;
    const o = ctx.l3off;
    if (ctx.ttl <= 1) {
      this.icmpError(ri, 3, 0, 0);
      ri.drops[RouterDrop.TTL_EXCEEDED]++;
      return;
    }
    if (ctx.l3len > out.mtu && this.egress.fragmentsTooBig(out)) {
      this.icmpError(ri, 2, 0, out.mtu);
      ri.drops[RouterDrop.TOO_BIG]++;
      return;
    }
    this.ip6.point(this.buf, o, ctx.l3len).hopLimit = --ctx.ttl;
    ctx.outIf = out;
    ctx.hook = Hook.FORWARD;
    let v = this.nf.hook(Hook.FORWARD, ctx);
    if (v === Verdict.ACCEPT) {
      ctx.hook = Hook.POSTROUTING;
      v = this.nf.hook(Hook.POSTROUTING, ctx);
      if (v === Verdict.ACCEPT) {
        this.egress.transmit6(out, id, ri.drops);
        return;
      }
    }
    if (v === Verdict.DROP) ri.drops[RouterDrop.NETFILTER]++;
  }

  /** Whether the IPv4 packet in ctx (this.ip4 pointed at it) carries a loose or strict source route option. */
  private hasSourceRoute(): boolean {
    const c = this.optCursor.resetOn(this.ip4);
    while (c.next()) if (c.type === 131 || c.type === 137) return true;
    return false;
  }

  /**
   * ip_forward_options: a Record Route option with room gets the egress
   * interface's address and its pointer advanced; the header checksum is
   * then recomputed. this.ip4 is pointed at the packet in ctx.
   */
  private forwardOptions(out: RouterInterface): void {
    const ip = this.ip4;
    const buf = this.buf;
    const c = this.optCursor.resetOn(ip);
    while (c.next()) {
      if (c.type !== 7 || c.length < 3) continue;
      const ptr = buf[c.offset + 2];
      if (ptr < 4 || ptr + 3 > c.length || out.icmpSource4 === 0) return;
      setU32(buf, c.offset + ptr - 1, out.icmpSource4);
      buf[c.offset + 2] = ptr + 4;
      ip.fillChecksum();
      return;
    }
  }

  // ------------------------------------------------------------ local output

  /** A packet the local stack sent into the host interface. */
  private fromHost(host: RouterInterface, l3off: number, len: number): void {
    const r = parsePacket(this.ctx, this.buf, l3off, len);
    if (r !== 0) {
      host.drops[r]++;
      return;
    }
    this.resetContext(null, -1, true);
    this.output(host.drops);
  }

  /** A packet xtr built (ICMP error, emit, a clone), waiting in pending slot `slot`. */
  private fromXtr(slot: number): void {
    const s = this.scratch;
    const r = parsePacket(this.ctx, this.buf, s.pendingOff[slot], s.pendingLen[slot]);
    this.egress.takePending(slot, s.pendingOff[slot], s.pendingLen[slot]); // offloads: a clone of a super-packet stays one
    if (r !== 0) {
      this.egress.rxGso = 0;
      s.pendingCt[slot] = null;
      this.localDrops[r]++;
      return;
    }
    this.resetContext(null, -1, true);
    this.emitFlags = s.pendingFlags[slot];
    this.emitSlot = slot;
    this.output(this.localDrops);
    s.pendingCt[slot] = null;
  }

  /**
   * Gives the packet in ctx what it was emitted with (after nf_defrag,
   * which starts the packet afresh): nfmark, its flow (nf_ct_attach:
   * RELATED, in the reply direction when the packet it answers went the
   * original way), untracked, the interface to leave by.
   */
  private applyEmitOptions(flags: number): void {
    const ctx = this.ctx;
    const s = this.scratch;
    const slot = this.emitSlot;
    if ((flags & PendingFlag.MARK) !== 0) ctx.mark = s.pendingMark[slot];
    if ((flags & PendingFlag.ATTACHED) !== 0) {
      ctx.ct = s.pendingCt[slot];
      ctx.ctState = CtState.RELATED;
      ctx.ctReply = s.pendingCtReply[slot] === 1;
      ctx.ctAttached = true;
    }
    if ((flags & PendingFlag.UNTRACKED) !== 0) ctx.notrack = true;
    if ((flags & PendingFlag.OIF) !== 0) this.forcedOif = this.interfaces[s.pendingOif[slot]];
    if ((flags & PendingFlag.GATEWAY) !== 0) {
      if (ctx.family === 4) this.egress.setGateway4(s.pendingGw[slot * 4]);
      else this.egress.setGateway6(s.pendingGw, slot * 4);
    }
  }

  /**
   * Routes the locally generated packet in ctx (ip_route_output): by its
   * destination, or as it was emitted (a gateway, an interface). Returns
   * the route id, FORCED_HOP when egress sends to a given next hop, or -1
   * for no route; this.routedOut is the interface.
   */
  private routeOutput(v4: boolean): number {
    const ctx = this.ctx;
    const flags = this.emitFlags;
    if ((flags & (PendingFlag.GATEWAY | PendingFlag.OIF)) !== 0) return this.routeForced(v4, flags);
    const id = v4 ? this.routes4.lookup(ctx.dst4) : this.routes6.lookup(ctx.dst6);
    if (id >= 0) this.routedOut = this.interfaces[(v4 ? this.routes4.ifIndex : this.routes6.ifIndex)[id]];
    return id;
  }

  private routeForced(v4: boolean, flags: number): number {
    const ctx = this.ctx;
    const egress = this.egress;
    const oif = (flags & PendingFlag.OIF) !== 0 ? this.forcedOif : null;
    if ((flags & PendingFlag.GATEWAY) !== 0) {
      const out = this.onLinkInterface(v4, egress.gateway4, egress.gateway6, oif);
      if (out === null) return -1;
      this.routedOut = out;
      return FORCED_HOP;
    }
    egress.viaGateway = false;
    const id = v4 ? this.routes4.lookup(ctx.dst4) : this.routes6.lookup(ctx.dst6);
    if (id >= 0 && (v4 ? this.routes4.ifIndex : this.routes6.ifIndex)[id] === oif!.index) {
      this.routedOut = oif;
      return id;
    }
    // ip_route_output with an oif and no route through it takes the destination as on-link there
    if (v4) egress.setGateway4(ctx.dst4);
    else egress.setGateway6(ctx.dst6, 0);
    this.routedOut = oif;
    return FORCED_HOP;
  }

  /** The link `gw` is directly on (a connected route; through `oif` when given), or null. */
  private onLinkInterface(v4: boolean, gw4: number, gw6: Uint32Array, oif: RouterInterface | null): RouterInterface | null {
    const id = v4 ? this.routes4.lookup(gw4) : this.routes6.lookup(gw6);
    if (id < 0) return null;
    const kind = v4 ? this.routes4.kind[id] : this.routes6.kind[id];
    const ifIndex = v4 ? this.routes4.ifIndex[id] : this.routes6.ifIndex[id];
    if (kind !== RouteKind.CONNECTED || (oif !== null && ifIndex !== oif.index)) return null;
    return this.interfaces[ifIndex];
  }

  /**
   * route -> OUTPUT -> (re-route if the destination changed) -> POSTROUTING
   * -> link, or INPUT -> host. Routing comes before OUTPUT, as the kernel
   * routes a locally generated packet before its LOCAL_OUT hook, so OUTPUT
   * rules see the out-interface (`-o`). A clone (PendingFlag.DUPLICATE)
   * goes through no hook.
   */
  private output(drops: Float64Array): void {
    const ctx = this.ctx;
    const v4 = ctx.family === 4;
    const flags = this.emitFlags;
    if ((flags & PendingFlag.GATEWAY) === 0) {
      if (v4) {
        if (ctx.dst4 >>> 28 === 0xe || ctx.dst4 === 0xffffffff) {
          drops[RouterDrop.MULTICAST]++;
          return;
        }
      } else if (ctx.dst6[0] >>> 24 === 0xff || (ctx.dst6[0] & 0xffc00000) >>> 0 === 0xfe800000) {
        drops[ctx.dst6[0] >>> 24 === 0xff ? RouterDrop.MULTICAST : RouterDrop.LINK_LOCAL]++;
        return;
      }
    }
    const hooks = (flags & PendingFlag.DUPLICATE) === 0;
    // nf_defrag in OUTPUT: the local stack fragments to the host interface's MTU before xtr sees its packets
    if (hooks && this.wantsDefrag() && !this.defrag(drops, DEFRAG_OUT)) return;
    if (flags !== 0) {
      this.emitFlags = flags; // defrag started the datagram afresh
      this.applyEmitOptions(flags);
    }
    let id = this.routeOutput(v4);
    if (id === -1) {
      if ((flags & (PendingFlag.GATEWAY | PendingFlag.OIF)) === 0) this.icmpError(null, v4 ? 3 : 1, 0, 0);
      drops[RouterDrop.NO_ROUTE]++;
      return;
    }
    ctx.outIf = this.routedOut;
    let v: number;
    if (hooks) {
      const dst4 = ctx.dst4;
      if (!v4) this.savedDst6.set(ctx.dst6);
      ctx.hook = Hook.OUTPUT;
      v = this.nf.hook(Hook.OUTPUT, ctx);
      if (v !== Verdict.ACCEPT) {
        if (v === Verdict.DROP) drops[RouterDrop.NETFILTER]++;
        return;
      }
      const d6 = ctx.dst6;
      const s6 = this.savedDst6;
      if (v4 ? ctx.dst4 !== dst4 : d6[0] !== s6[0] || d6[1] !== s6[1] || d6[2] !== s6[2] || d6[3] !== s6[3]) {
        id = this.routeOutput(v4);
        if (id === -1) {
          drops[RouterDrop.NO_ROUTE]++;
          return;
        }
        ctx.outIf = this.routedOut;
      }
    }
    if (id >= 0 && (v4 ? this.routes4.kind[id] : this.routes6.kind[id]) === RouteKind.LOCAL) {
      // addressed to the router itself (an ICMP error for the local stack): loop back through INPUT
      ctx.hook = Hook.INPUT;
      ctx.outIf = null;
      if (hooks) {
        v = this.nf.hook(Hook.INPUT, ctx);
        if (v !== Verdict.ACCEPT) {
          if (v === Verdict.DROP) drops[RouterDrop.NETFILTER]++;
          return;
        }
      }
      if (this.host !== null) this.egress.queueTx(this.host, ctx.l3off, ctx.l3len);
      else drops[RouterDrop.NO_LOCAL_DELIVERY]++;
      return;
    }
    const out = this.routedOut!;
    if (ctx.l3len > out.mtu && (!v4 || this.ip4.point(this.buf, ctx.l3off, ctx.l3len).dontFragment) && this.egress.fragmentsTooBig(out)) {
      // the local stack learns the path MTU from this (as it would from EMSGSIZE)
      this.icmpError(out, v4 ? 3 : 2, v4 ? 4 : 0, out.mtu);
      drops[RouterDrop.TOO_BIG]++;
      return;
    }
    if (hooks) {
      ctx.hook = Hook.POSTROUTING;
      v = this.nf.hook(Hook.POSTROUTING, ctx);
      if (v !== Verdict.ACCEPT) {
        if (v === Verdict.DROP) drops[RouterDrop.NETFILTER]++;
        return;
      }
    }
    if (v4) this.egress.transmit4(out, id, drops);
    else this.egress.transmit6(out, id, drops);
  }

  // ------------------------------------------------------------ packets xtr builds

  private runPending(): void {
    const s = this.scratch;
    while (s.pendingHead < s.pendingCount) {
      const i = s.pendingHead++;
      this.fromXtr(i);
    }
    s.pendingHead = 0;
    s.pendingCount = 0;
  }

  /**
   * An ICMP/ICMPv6 error about the packet in ctx, from `via`'s address (the
   * interface it came in on, so traceroute shows that hop), sent through the
   * OUTPUT path after the current packet.
   */
  private icmpError(via: RouterInterface | null, type: number, code: number, info: number): void {
    const ctx = this.ctx;
    const slot = this.icmp.send(ctx, via, type, code, info, this.now);
    // icmp_glue_bits / icmpv6_getfrag: every error is nf_ct_attach'ed to the packet it is about
    if (slot >= 0 && ctx.ct !== null) this.scratch.pendingFlags[slot] = this.attach(slot, ctx);
  }

  /** Host unreachable for a packet whose next hop never answered (the kernel's neigh failure path). */
  private hostUnreachable(pkt: Buffer, len: number): void {
    if (this.scratch.inBatch) return; // only the timer path fails entries; never clobber a packet in flight
    const p = this.scratch.copyIn(pkt, 0, len);
    if (p < 0) return;
    const ctx = this.ctx;
    if (parsePacket(ctx, this.buf, p, len) !== 0) return;
    ctx.ct = null; // its flow was not kept while it waited: conntrack finds it from the quoted header
    this.now = this.clock();
    const v4 = ctx.family === 4;
    const id = v4 ? this.routes4.lookup(ctx.src4) : this.routes6.lookup(ctx.src6);
    const toward = id >= 0 ? this.interfaces[(v4 ? this.routes4 : this.routes6).ifIndex[id]] : null;
    this.icmpError(toward && toward.kind !== 'host' ? toward : null, v4 ? 3 : 1, v4 ? 1 : 3, 0);
  }

  /** RouterServices.emitLocal: copies the packet and sends it through OUTPUT. */
  injectLocal(bytes: Uint8Array, offset: number, length: number, _family: Family): void {
    const p = this.scratch.alloc(length);
    if (p < 0 || length <= 0) {
      this.localDrops[RouterDrop.SCRATCH_FULL]++;
      return;
    }
    this.buf.set(bytes.subarray(offset, offset + length), p);
    this.scratch.pos = p + length;
    if (this.scratch.pushPending(p, length) < 0) {
      this.localDrops[RouterDrop.SCRATCH_FULL]++;
      return;
    }
    if (!this.scratch.inBatch) this.finishOutOfBatch();
  }

  /** RouterServices.emit: a copy of the packet runs through the OUTPUT path after the current one, shaped by `how`. */
  emitPacket(bytes: Uint8Array, offset: number, length: number, how: EmitOptions): boolean {
    let oif = 0;
    if (how.oif !== undefined) {
      const ri = this.linkNamed(how.oif);
      if (ri === null) return false;
      oif = ri.index;
    }
    const s = this.scratch;
    const p = length > 0 ? s.copyIn(bytes, offset, length) : -1;
    const slot = p < 0 ? -1 : s.pushPending(p, length);
    if (slot < 0) {
      this.localDrops[RouterDrop.SCRATCH_FULL]++;
      return false;
    }
    let flags = 0;
    const from = how.ctFrom;
    if (how.untracked === true) flags |= PendingFlag.UNTRACKED;
    else if (from !== undefined && from.ct !== null) flags |= this.attach(slot, from);
    // An answer to a packet NOTRACK/CT --notrack left untracked stays untracked, as nf_ct_attach
    // passes the untracked mark on: a tarpit behind a raw NOTRACK must not start flows with its replies.
    else if (from !== undefined && from.notrack) flags |= PendingFlag.UNTRACKED;
    if (how.duplicate === true) flags |= PendingFlag.DUPLICATE;
    if (how.mark !== undefined) {
      flags |= PendingFlag.MARK;
      s.pendingMark[slot] = how.mark >>> 0;
    }
    if (oif !== 0) {
      flags |= PendingFlag.OIF;
      s.pendingOif[slot] = oif;
    }
    if (how.gateway !== undefined) {
      flags |= PendingFlag.GATEWAY;
      copyGateway(s.pendingGw, slot * 4, how.gateway, how.family);
    }
    s.pendingFlags[slot] = flags;
    if (!s.inBatch) this.finishOutOfBatch();
    return true;
  }

  /**
   * nf_ct_attach: the packet in `slot` answers `from` and joins its flow,
   * RELATED, in the reply direction when `from` went the original way
   * (IP_CT_RELATED_REPLY) and the original direction otherwise.
   */
  private attach(slot: number, from: PacketContext): number {
    const s = this.scratch;
    s.pendingCt[slot] = from.ct;
    s.pendingCtReply[slot] = from.ctReply ? 0 : 1;
    return PendingFlag.ATTACHED;
  }

  /**
   * RouterServices.dup (nf_dup_ipv4 / nf_dup_ipv6): a copy of the packet in
   * `pkt` as it is now, TTL / hop limit decremented when taken in
   * PREROUTING or INPUT, sent untracked and through no hook to the gateway,
   * which must be on-link (through `how.oif` when given); else it is lost,
   * counted as dup_not_on_link.
   */
  dupPacket(pkt: PacketContext, how: DupOptions): boolean {
    // a clone is never cloned again (nf_skb_duplicated); clones see no hook, so only a misuse gets here
    if (pkt === this.ctx && (this.emitFlags & PendingFlag.DUPLICATE) !== 0) return false;
    const v4 = pkt.family === 4;
    const gw = how.gateway;
    let oif: RouterInterface | null = null;
    if (how.oif !== undefined) oif = this.linkNamed(how.oif);
    if ((how.oif !== undefined && oif === null) || this.onLinkInterface(v4, gw[0] >>> 0, gw, oif) === null) {
      this.localDrops[RouterDrop.DUP_NOT_ON_LINK]++;
      return false;
    }
    const s = this.scratch;
    const len = pkt.l3len;
    const p = s.copyIn(pkt.buf, pkt.l3off, len);
    const slot = p < 0 ? -1 : s.pushPending(p, len);
    if (slot < 0) {
      this.localDrops[RouterDrop.SCRATCH_FULL]++;
      return false;
    }
    if (pkt.hook === Hook.PREROUTING || pkt.hook === Hook.INPUT) {
      if (v4) {
        const ip = this.cloneIp4.point(this.buf, p, len);
        ip.ttl = (ip.ttl - 1) & 0xff;
        ip.fillChecksum(); // ip_send_check
      } else {
        const ip = this.cloneIp6.point(this.buf, p, len);
        ip.hopLimit = (ip.hopLimit - 1) & 0xff;
      }
    }
    let flags = PendingFlag.DUPLICATE | PendingFlag.UNTRACKED | PendingFlag.GATEWAY;
    if (pkt.mark !== 0) {
      flags |= PendingFlag.MARK;
      s.pendingMark[slot] = pkt.mark;
    }
    if (oif !== null) {
      flags |= PendingFlag.OIF;
      s.pendingOif[slot] = oif.index;
    }
    copyGateway(s.pendingGw, slot * 4, gw, pkt.family);
    s.pendingFlags[slot] = flags;
    if (pkt === this.ctx) this.egress.cloneToPending(slot); // offloads: the clone of a super-packet is segmented as it
    if (!s.inBatch) this.finishOutOfBatch();
    return true;
  }

  /**
   * RouterServices.icmpError (icmp_send / icmpv6_send): through the one
   * rate limiter, attached to pkt's flow. The source is pkt's destination
   * when that is one of xtr's addresses; else the address of the link pkt
   * came in on (FORWARD, PREROUTING: what traceroute shows), else of the
   * link towards its sender, else pkt's source when xtr itself sent it.
   */
  sendIcmpError(pkt: PacketContext, type: number, code: number, info: number): boolean {
    let src4 = 0;
    let src6: Uint32Array | null = null;
    if (pkt.family === 4) {
      const id = this.routes4.lookup(pkt.dst4);
      if (id >= 0 && this.routes4.kind[id] === RouteKind.LOCAL) src4 = pkt.dst4;
      else {
        const via = this.errorLink(pkt);
        src4 = via !== null ? this.icmp.source4(via) : this.ownSource4(pkt);
      }
    } else {
      const id = this.routes6.lookup(pkt.dst6);
      if (id >= 0 && this.routes6.kind[id] === RouteKind.LOCAL) src6 = pkt.dst6;
      else {
        const via = this.errorLink(pkt);
        src6 = via !== null ? this.icmp.source6(via) : this.ownSource6(pkt);
      }
    }
    const slot = this.icmp.sendFrom(pkt, type, code, info, this.now, src4, src6);
    if (slot < 0) return false;
    if (pkt.ct !== null) this.scratch.pendingFlags[slot] = this.attach(slot, pkt);
    if (!this.scratch.inBatch) this.finishOutOfBatch();
    return true;
  }

  /** The link an error about pkt is sent from: the one it came in on, else the one its sender is reached by; null when its sender is xtr. */
  private errorLink(pkt: PacketContext): RouterInterface | null {
    const inIf = pkt.inIf;
    if (inIf !== null && inIf.kind !== 'host' && this.interfaces[inIf.index] === inIf) return this.interfaces[inIf.index];
    const v4 = pkt.family === 4;
    const id = v4 ? this.routes4.lookup(pkt.src4) : this.routes6.lookup(pkt.src6);
    if (id < 0 || (v4 ? this.routes4.kind[id] : this.routes6.kind[id]) === RouteKind.LOCAL) return null;
    const ri = this.interfaces[v4 ? this.routes4.ifIndex[id] : this.routes6.ifIndex[id]];
    return ri.kind === 'host' ? null : ri;
  }

  /** Source of an error about a packet xtr's side sent (OUTPUT): its own source when that is ours, else any link's address. */
  private ownSource4(pkt: PacketContext): number {
    const id = this.routes4.lookup(pkt.src4);
    return id >= 0 && this.routes4.kind[id] === RouteKind.LOCAL ? pkt.src4 : this.icmp.source4(null);
  }

  private ownSource6(pkt: PacketContext): Uint32Array | null {
    const id = this.routes6.lookup(pkt.src6);
    return id >= 0 && this.routes6.kind[id] === RouteKind.LOCAL ? pkt.src6 : this.icmp.source6(null);
  }

  /** A TUN/TAP link by config name (not the host interface), or null. */
  private linkNamed(name: string): RouterInterface | null {
    for (let i = 1; i < this.interfaces.length; i++) {
      const ri = this.interfaces[i];
      if (ri.name === name && ri.kind !== 'host') return ri;
    }
    return null;
  }

  // ------------------------------------------------------------ status

  /**
   * Reads that returned packets, by size: bucket k counts reads of 2^k to 2^(k+1)-1 packets
   * (metrics xtr_read_batches_total): how well batching works at the offered load.
   */
  readonly readBatches = new Float64Array(BATCH_SIZE_BUCKETS);

  get icmpErrorsSent(): number {
    return this.icmp.sent;
  }
  get icmpRateLimited(): number {
    return this.icmp.limiter.limited;
  }

  /** The queue workers' links and hand-overs (status), or null without workers. */
  get workerStatus(): { links: string[]; handovers: number[] } | null {
    return this.workers ? { links: this.workerIfs.map((ri) => ri.name), handovers: [...this.workers.batches] } : null;
  }

  status(): RouterStatus {
    this.workers?.fold();
    return routerStatus(this, this.running, this.running ? (this.clock() - this.startedAt) / 1000 : 0);
  }
}

/** A next hop (IPv4: word 0) into the pending queue's gateway words at `at`, without a subarray view. */
function copyGateway(to: Uint32Array, at: number, gw: Uint32Array, family: Family): void {
  to[at] = gw[0];
  if (family === 6) {
    to[at + 1] = gw[1];
    to[at + 2] = gw[2];
    to[at + 3] = gw[3];
  }
}

function isLoopback6(a: Uint32Array): boolean {
  return a[0] === 0 && a[1] === 0 && a[2] === 0 && a[3] === 1;
}
