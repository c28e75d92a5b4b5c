/**
 * Seed 001's port-knocking script with its rules placed in FORWARD (the rules of
 * its "Now the real part" section appended to FORWARD instead of INPUT),
 * protecting port 22 on the server behind the router (a socat listener on
 * 203.0.113.2:22), run with real iptables in the kernel reference and with
 * `IPTABLES="xtr iptables"` in xtr's lab: same command results, outcomes,
 * counters and recent table.
 */
import test from 'ava';
import { KernelRouter, XtrRouter } from './helpers/kernel-router.js';
import { registerKnockTests } from './helpers/knock.js';

registerKnockTests(test, 'FORWARD', () => XtrRouter.create(), () => KernelRouter.create());
