/**
 * `-j RAWSNAT --to-source addr[/len]` (xtables-addons ≤ 2.3): stateless
 * rewrite of the source prefix, usually in `rawpost` POSTROUTING (after NAT
 * and conntrack) for the replies of a RAWDNAT mapping. modules/lib/rawnat.ts
 * has the behaviour and the deliberate differences from upstream.
 */
import { End } from '../dataplane/mangle.js';
import { rawnatTarget } from './lib/rawnat.js';

export default rawnatTarget({ name: 'RAWSNAT', option: 'to-source', end: End.SRC });
