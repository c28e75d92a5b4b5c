/**
 * RouterServices for extensions: packets they originate (REJECT, TARPIT,
 * ECHO, TEE copies) enter the OUTPUT path as locally generated, log lines go
 * to the process logger, and time is the router's monotonic clock.
 */
import { randomBytes } from 'node:crypto';
import type { Family, PacketContext } from '../xt/packet.js';
import type { DupOptions, EmitOptions, IfaceFacts, RouteFacts } from '../xt/services.js';
import type { RouterServices } from '../xt/extension.js';
import { syslogToPino, type Logger } from './log.js';

/** What the services need from the router: a way to inject a locally generated packet. */
export interface LocalPacketSink {
  /** Copies the packet and sends it through OUTPUT -> routing -> POSTROUTING. */
  injectLocal(bytes: Uint8Array, offset: number, length: number, family: Family): void;
}

/** Monotonic milliseconds (performance.now is monotonic and cheap). */
export function monotonicMs(): number {
  return performance.now();
}

export class Services implements RouterServices {
  /** `clock`: the router's clock, so extensions and ctx.now agree (tests substitute a fake one). */
  constructor(
    private readonly sink: LocalPacketSink,
    private readonly logger: Logger,
    private readonly clock: () => number = monotonicMs,
  ) {}

  emitLocal(bytes: Uint8Array, offset: number, length: number, family: Family): void {
    this.sink.injectLocal(bytes, offset, length, family);
  }

  // INTERIM (platform issue in progress): emit ignores `how` beyond the family; dup/route/iface/icmpError land with the router split.
  emit(bytes: Uint8Array, offset: number, length: number, how: EmitOptions): boolean {
    this.sink.injectLocal(bytes, offset, length, how.family);
    return true;
  }
  dup(_pkt: PacketContext, _how: DupOptions): boolean {
    throw new Error('services.dup: not implemented yet');
  }
  route(_family: Family, _dst: Uint32Array): RouteFacts | null {
    throw new Error('services.route: not implemented yet');
  }
  iface(_name: string): IfaceFacts | null {
    throw new Error('services.iface: not implemented yet');
  }
  icmpError(_pkt: PacketContext, _type: number, _code: number, _info: number): boolean {
    throw new Error('services.icmpError: not implemented yet');
  }

  /** Random words drawn from the OS in blocks of 1 KiB (one syscall per 256 calls). */
  private readonly randomPool = new Uint32Array(256);
  private randomLeft = 0;
  random(): number {
    if (this.randomLeft === 0) {
      const b = randomBytes(1024);
      this.randomPool.set(new Uint32Array(b.buffer, b.byteOffset, 256));
      this.randomLeft = 256;
    }
    return this.randomPool[--this.randomLeft];
  }

  wallNow(): number {
    return Date.now();
  }

  /** Kernel-style lines (LOG, LOGMARK) keep their text as the message; `syslog` keeps the severity. */
  log(level: number, line: string): void {
    const method = syslogToPino(level);
    this.logger[method]({ syslog: level }, line);
  }

  now(): number {
    return this.clock();
  }
}
