/**
 * Connection tracking, after the kernel's nf_conntrack.
 *
 * API for the pipeline (the rule engine calls exactly these):
 *
 *   const ct = new Conntrack({ max: 65536 });
 *   // PREROUTING and OUTPUT, after the raw table and before mangle (kernel
 *   // priority NF_IP_PRI_CONNTRACK = -200):
 *   if (ct.in(pkt) === Verdict.DROP) drop the packet;   // table full
 *   // ... rules run; they read pkt.ctState / pkt.ct ...
 *   // At the end of INPUT (local delivery) and POSTROUTING (everything
 *   // leaving), only for packets that were accepted:
 *   ct.confirm(pkt);
 *
 *   `in` sets pkt.ct (a ConnEntry or null) and pkt.ctState (CtState bits:
 *   NEW, ESTABLISHED, RELATED, INVALID, UNTRACKED). Packets with
 *   pkt.notrack set (NOTRACK / CT --notrack in raw) become UNTRACKED.
 *   A packet seen twice (OUTPUT of a packet that already passed PREROUTING
 *   is impossible, but a looped-back local packet is not) is simply looked
 *   up again.
 *   A new flow's entry is created unconfirmed and only enters the table
 *   when `confirm` runs, so a NEW packet dropped by the rules leaves no
 *   entry behind, as in the kernel.
 *
 *   ct.list(family?) -> `conntrack -L` text; ct.flush(); ct.count();
 *   conntrackCommands(ct) -> CommandTable with `conntrack` (-L, -F, -C).
 *
 * Expiry is lazy: an entry found past its deadline is treated as absent and
 * freed; each `in` also frees at most a few expired entries from the head of
 * the age list so the table does not fill with dead flows.
 * Time is pkt.now (monotonic milliseconds, one clock read per batch).
 */
export {};
