/**
 * Seed 001's port-knocking script protecting port 22 on the router itself
 * (INPUT, a socat listener on 198.51.100.1:22 in the router namespace), run with
 * real iptables in the kernel reference and with `IPTABLES="xtr iptables"` in
 * xtr's lab: same command results, outcomes, counters and recent table.
 */
import test from 'ava';
import { KernelRouter, XtrRouter } from './helpers/kernel-router.js';
import { registerKnockTests } from './helpers/knock.js';

registerKnockTests(test, 'INPUT', () => XtrRouter.create(), () => KernelRouter.create());
