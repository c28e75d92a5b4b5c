/**
 * xtables_save_string: how iptables-save quotes free text (comment, LOG prefix).
 */

const NO_QUOTE = /^[A-Za-z0-9_-]+$/;

/** xtables_save_string: bare if only [A-Za-z0-9_-], else double-quoted with \ before " \ and '. */
export function saveString(s: string): string {
  if (NO_QUOTE.test(s)) return ` ${s}`;
  return ` "${s.replace(/["\\']/g, (c) => `\\${c}`)}"`;
}

