/**
 * RouterServices for extensions: packets they originate (REJECT, TARPIT,
 * ECHO, TEE copies) enter the OUTPUT path as locally generated, log lines go
 * to the process logger, and time is the router's monotonic clock.
 */
import type { Family } from './packet.js';
import type { RouterServices } from '../modules/types.js';
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

  /** Kernel-style lines (LOG, LOGMARK) keep their text as the message; `syslog` keeps the severity. */
  log(level: number, line: string): void {
    const method = syslogToPino(level);
    this.logger[method]({ syslog: level }, line);
  }

  now(): number {
    return this.clock();
  }
}
