/**
 * `-j RAWDNAT --to-destination addr[/len]` (xtables-addons ≤ 2.3): stateless
 * rewrite of the destination prefix, usually in `raw` PREROUTING (before
 * conntrack) or raw OUTPUT for local packets. modules/lib/rawnat.ts has the
 * behaviour and the deliberate differences from upstream.
 */
import { End } from '../dataplane/mangle.js';
import { rawnatTarget } from './lib/rawnat.js';

export default rawnatTarget({ name: 'RAWDNAT', option: 'to-destination', end: End.DST });
