/**
 * `-p` names and numbers as iptables resolves them: a number 0-255, "all",
 * the names of /etc/protocols (getprotobyname), then iptables' own short
 * list (which is why "icmpv6" works although /etc/protocols says
 * "ipv6-icmp"). Saving prints the /etc/protocols name, as iptables-save does.
 */
import { readFileSync } from 'node:fs';
import type { Family } from '../../xt/packet.js';
import { NfError } from './errors.js';

/** iptables' built-in list (xtables_chain_protos), used when /etc/protocols lacks a name. */
const BUILTIN: readonly (readonly [string, number])[] = [
  ['tcp', 6], ['sctp', 132], ['udp', 17], ['udplite', 136], ['icmp', 1], ['icmpv6', 58],
  ['ipv6-icmp', 58], ['esp', 50], ['ah', 51], ['ipv6-mh', 135], ['mh', 135], ['all', 0],
];

let byName: Map<string, number> | null = null;
let byNumber: Map<number, string> | null = null;

function load(): void {
  byName = new Map();
  byNumber = new Map();
  try {
    for (const line of readFileSync('/etc/protocols', 'utf8').split('\n')) {
      const words = line.replace(/#.*/, '').trim().split(/\s+/);
      if (words.length < 2 || !/^[0-9]+$/.test(words[1])) continue;
      const n = Number(words[1]);
      for (const name of [words[0], ...words.slice(2)]) if (!byName.has(name)) byName.set(name, n);
      if (!byNumber.has(n)) byNumber.set(n, words[0]);
    }
  } catch {
    // No /etc/protocols (slim images): the built-in list below still resolves the common names.
  }
  for (const [name, n] of BUILTIN) {
    if (!byName.has(name)) byName.set(name, n);
    if (!byNumber.has(n) && n !== 0) byNumber.set(n, name === 'icmpv6' ? 'ipv6-icmp' : name);
  }
}

/** Protocol number for `-p WORD`, or an error with iptables' text. */
export function parseProtocol(word: string): number {
  if (byName === null) load();
  if (/^[0-9]+$/.test(word)) {
    const n = Number(word);
    if (n <= 255) return n;
  } else {
    const n = byName!.get(word.toLowerCase());
    if (n !== undefined) return n;
  }
  throw new NfError(`unknown protocol "${word}" specified`);
}

/** The name iptables-save prints for a protocol number (the number itself if unnamed). */
export function protocolName(n: number): string {
  if (byNumber === null) load();
  if (n === 0) return 'all';
  return byNumber!.get(n) ?? String(n);
}

/**
 * Names under which a protocol's own match may be registered, for the
 * implicit load of `-p tcp --dport 22` (libxtables looks the match up by the
 * protocol's name; ip6tables's ICMPv6 match is called "icmp6").
 */
export function implicitMatchNames(n: number, family: Family): string[] {
  if (n === 0) return [];
  const names = [protocolName(n)];
  if (n === 58 && family === 6) names.unshift('icmp6', 'icmpv6');
  return names;
}

/** The name from iptables' own list only (what `-v` echoes, where no lookup is done), else the number. */
export function builtinProtocolName(n: number): string {
  return BUILTIN.find(([, num]) => num === n)?.[0] ?? String(n);
}
