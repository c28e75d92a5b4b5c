/**
 * `-m comment --comment TEXT`: always matches; the text is kept for
 * iptables-save (at most 255 characters, longer text is cut as iptables
 * cuts it). Also exports iptables' quoting of saved strings.
 */
import { x6Check } from './mark.js';
import type { MatchExtension } from '../xt/extension.js';

const NO_QUOTE = /^[A-Za-z0-9_-]+$/;

/** xtables_save_string: bare if only [A-Za-z0-9_-], else double-quoted with \ before " \ and '. */
export function saveString(s: string): string {
  if (NO_QUOTE.test(s)) return ` ${s}`;
  return ` "${s.replace(/["\\']/g, (c) => `\\${c}`)}"`;
}

export interface CommentParams {
  comment: string;
}

const comment: MatchExtension<CommentParams> = {
  kind: 'match',
  name: 'comment',
  families: [4, 6],
  options: [{ name: 'comment', arg: 'required' }],
  parse(opts) {
    const o = x6Check('comment', opts, [{ name: 'comment', mand: true }]).get('comment')!;
    return { comment: Buffer.from(o.value ?? '').subarray(0, 255).toString() };
  },
  check() {
    return { match: () => true };
  },
  save(p) {
    return ` --comment${saveString(p.comment)}`;
  },
  print(p) {
    return ` /* ${p.comment} */`;
  },
};

export default comment;
