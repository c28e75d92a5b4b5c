/**
 * `-m comment --comment TEXT`: always matches; the text is kept for
 * iptables-save (at most 255 characters, longer text is cut as iptables
 * cuts it). (Quoting of saved strings: lib/strings.ts.)
 */
import type { MatchExtension } from '../xt/extension.js';
import { saveString } from './lib/strings.js';
import { x6Check } from './lib/options.js';

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
