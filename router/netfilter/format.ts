/**
 * Printing the rule set the way iptables 1.8.9 does: rule text for
 * `-S` / iptables-save, and the `-L` table with its column layout
 * (print_header / print_rule_details / xtables_print_num of iptables).
 */
import { isAny, listAddr, saveAddr } from './addr.js';
import type { Chain, RuleSpec, Table } from './model.js';
import { builtinProtocolName, protocolName } from './protocols.js';
import { runSteps, type Steps } from './slices.js';

/**
 * The rule in save form after "-A CHAIN": " -s 10.0.0.1/32 -p tcp -m tcp --dport 22 -j ACCEPT".
 * `persist`: the text for xtr's own root-only state file, where an extension
 * may keep what iptables-save hides (pknock's secrets, which upstream never
 * prints so its saved rules cannot be restored) - its `persistSave`.
 */
export function ruleText(s: RuleSpec, persist = false): string {
  // Pieces joined once: `+=` would keep every rule's text as a tree of
  // ~10 cons strings (32 bytes each plus the pieces) for as long as the rule
  // lives, and a 10,000-rule restore copies what it keeps through the young
  // generation (longer GC pauses for the packets waiting meanwhile).
  const out: string[] = [];
  const neg = (inv: boolean) => (inv ? ' !' : '');
  if (s.src && !(isAny(s.src) && !s.srcInv)) out.push(neg(s.srcInv), ' -s ', saveAddr(s.src));
  if (s.dst && !(isAny(s.dst) && !s.dstInv)) out.push(neg(s.dstInv), ' -d ', saveAddr(s.dst));
  if (s.inIf !== '') out.push(neg(s.inInv), ' -i ', s.inIf);
  if (s.outIf !== '') out.push(neg(s.outInv), ' -o ', s.outIf);
  if (s.proto !== 0) out.push(neg(s.protoInv), ' -p ', protocolName(s.proto));
  if (s.frag) out.push(neg(s.fragInv), ' -f');
  for (const m of s.matches) out.push(' -m ', m.ext.name, persist && m.ext.persistSave ? m.ext.persistSave(m.params) : m.ext.save(m.params));
  out.push(targetText(s));
  return out.join('');
}

function targetText(s: RuleSpec): string {
  const t = s.target;
  switch (t.kind) {
    case 'none':
      return '';
    case 'verdict':
      return ` -j ${t.verdict}`;
    case 'jump':
      return t.goto ? ` -g ${t.chain}` : ` -j ${t.chain}`;
    case 'ext':
      return ` -j ${t.ext.name}${t.ext.save(t.params)}`;
  }
}

/** `iptables -S [chain]` lines (with `-v`, counters as " -c PKTS BYTES" like iptables). */
export function listRulesText(table: Table, chain: Chain | null, ruleNum: number | null, counters: boolean): string {
  const chains = chain ? [chain] : table.ordered();
  let out = '';
  if (ruleNum === null) {
    for (const c of chains) {
      if (c.builtin) out += `-P ${c.name} ${c.policy}${counters ? ` -c ${c.pkts} ${c.bytes}` : ''}\n`;
      else out += `-N ${c.name}\n`;
    }
  }
  for (const c of chains) {
    c.rules.forEach((r, i) => {
      if (ruleNum !== null && i + 1 !== ruleNum) return;
      // The text now, not as parsed: the kernel prints live match data (quota2's counter left).
      const text = ruleText(r.spec);
      out += `-A ${c.name}${counters ? withCounters(text, r.pkts, r.bytes) : text}\n`;
    });
  }
  return out;
}

/** iptables -S -v puts " -c P B" after the generic part, before the first -m/-j. */
function withCounters(text: string, pkts: number, bytes: number): string {
  const at = text.search(/ -[mjg] /);
  const c = ` -c ${pkts} ${bytes}`;
  return at < 0 ? text + c : text.slice(0, at) + c + text.slice(at);
}

/** One table in iptables-save form (between the header and footer comments). */
export function saveTableText(table: Table, counters: boolean, persist = false): string {
  return runSteps(saveTableSteps(table, counters, persist));
}

/** saveTableText as steps of 256 rules (slices.ts): a 10,000-rule table takes tens of ms to print. */
export function* saveTableSteps(table: Table, counters: boolean, persist = false): Steps<string> {
  let out = `*${table.name}\n`;
  const chains = table.ordered();
  for (const c of chains) out += `:${c.name} ${c.builtin ? c.policy : '-'} [${c.pkts}:${c.bytes}]\n`;
  // ruleText now, not the parsed text: save() may print live state, as quota2's current counter.
  let n = 0;
  for (const c of chains)
    for (const r of c.rules) {
      out += `${counters ? `[${r.pkts}:${r.bytes}] ` : ''}-A ${c.name}${ruleText(r.spec, persist)}\n`;
      if ((++n & 255) === 0) yield;
    }
  out += 'COMMIT\n';
  return out;
}

/** ctime(3) form used in the save header: "Sat Nov 21 07:05:24 2026". */
export function ctime(d: Date): string {
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p2 = (n: number) => String(n).padStart(2, '0');
  return `${days[d.getDay()]} ${months[d.getMonth()]} ${String(d.getDate()).padStart(2, ' ')} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`;
}

export interface ListFormat {
  numeric: boolean;
  verbose: boolean;
  exact: boolean;
  lineNumbers: boolean;
}

const pad = (s: string, n: number) => s.padEnd(n, ' ');
const lpad = (s: string, n: number) => s.padStart(n, ' ');

/** xtables_print_num: K/M/G/T rounding unless -x. */
function num(n: number, exact: boolean): string {
  if (exact) return `${lpad(String(n), 8)} `;
  if (n <= 99999) return `${lpad(String(n), 5)} `;
  for (const unit of ['K', 'M', 'G']) {
    n = Math.floor((n + 500) / 1000);
    if (n <= 9999) return `${lpad(String(n), 4)}${unit} `;
  }
  n = Math.floor((n + 500) / 1000);
  return `${lpad(String(n), 4)}T `;
}

function header(c: Chain, refs: number, f: ListFormat): string {
  let out = `Chain ${c.name}`;
  if (c.builtin) out += ` (policy ${c.policy}${f.verbose ? ` ${c.pkts} packets, ${c.bytes} bytes` : ''})\n`;
  else out += ` (${refs} references)\n`;
  if (f.lineNumbers) out += pad('num', 4) + ' ';
  if (f.verbose) out += f.exact ? `${lpad('pkts', 8)} ${lpad('bytes', 10)} ` : `${lpad('pkts', 5)} ${lpad('bytes', 5)} `;
  out += pad('target', 10) + ' prot opt';
  if (f.verbose) out += ` ${pad('in', 6)} ${pad('out', 6)} `;
  out += ` ${pad('source', 19)} `;
  out += ` ${pad('destination', 19)} `;
  return out + '\n';
}

function ruleLine(spec: RuleSpec, pkts: number, bytes: number, n: number, f: ListFormat): string {
  let out = '';
  if (f.lineNumbers) out += pad(String(n), 4) + ' ';
  if (f.verbose) out += num(pkts, f.exact) + num(bytes, f.exact);
  const t = spec.target;
  const tname = t.kind === 'none' ? '' : t.kind === 'verdict' ? t.verdict : t.kind === 'jump' ? t.chain : t.ext.name;
  out += pad(tname, 9) + ' ';
  out += spec.protoInv ? '!' : ' ';
  // iptables pads the protocol to 4 and adds a space, so long names ("ipv6-icmp") push the columns right.
  out += pad(f.numeric ? String(spec.proto) : protocolName(spec.proto), 4) + ' ';
  out += spec.family === 4 ? `${spec.fragInv ? '!' : '-'}${spec.frag ? 'f' : '-'} ` : '-- ';
  if (f.verbose) {
    const iface = (name: string, inv: boolean) => `${inv ? '!' : ''}${name !== '' ? name : f.numeric ? '*' : 'any'}`;
    out += ` ${pad(iface(spec.inIf, spec.inInv), 6)} `;
    out += `${pad(iface(spec.outIf, spec.outInv), 6)} `;
  }
  const any = (addr: RuleSpec['src']) => (addr ? listAddr(addr, f.numeric) : f.numeric ? (spec.family === 4 ? '0.0.0.0/0' : '::/0') : 'anywhere');
  out += (spec.srcInv ? '!' : ' ') + pad(any(spec.src), 19) + ' ';
  out += (spec.dstInv ? '!' : ' ') + pad(any(spec.dst), 19) + ' ';
  if (t.kind === 'jump' && t.goto) out += '[goto] ';
  for (const m of spec.matches) out += m.ext.print ? m.ext.print(m.params, f.numeric) : ` ${m.ext.name}${m.ext.save(m.params)}`;
  if (t.kind === 'ext') out += t.ext.print ? t.ext.print(t.params, f.numeric) : t.ext.save(t.params);
  return out + '\n';
}

/** `iptables -L [chain [num]]` text. */
export function listText(table: Table, chain: Chain | null, ruleNum: number | null, f: ListFormat): string {
  if (chain && ruleNum !== null) {
    const r = chain.rules[ruleNum - 1];
    return r ? ruleLine(r.spec, r.pkts, r.bytes, ruleNum, f) : '';
  }
  const chains = chain ? [chain] : table.ordered();
  return chains
    .map((c) => header(c, table.references(c.name), f) + c.rules.map((r, i) => ruleLine(r.spec, r.pkts, r.bytes, i + 1, f)).join(''))
    .join('\n');
}

/** The rule as `iptables -v -A/-I/-D/-R` echoes it (print_firewall with FMT_NOTABLE). */
export function echoRule(spec: RuleSpec): string {
  const t = spec.target;
  const tname = t.kind === 'none' ? '' : t.kind === 'verdict' ? t.verdict : t.kind === 'jump' ? t.chain : t.ext.name;
  let out = `${tname} `;
  out += `${spec.protoInv ? '!' : ' '}${builtinProtocolName(spec.proto)} `;
  out += `opt ${spec.family === 4 ? `${spec.fragInv ? '!' : '-'}${spec.frag ? 'f' : '-'}` : '--'} `;
  out += `in ${spec.inInv ? '!' : ''}${spec.inIf || '*'} out ${spec.outInv ? '!' : ''}${spec.outIf || '*'} `;
  const addr = (a: RuleSpec['src']) => (a ? listAddr(a, true) : spec.family === 4 ? '0.0.0.0/0' : '::/0');
  out += `${spec.srcInv ? '!' : ' '}${addr(spec.src)} `;
  out += `${spec.dstInv ? '!' : ' '}-> ${addr(spec.dst)} `;
  out += ' ';
  if (t.kind === 'jump' && t.goto) out += '[goto] ';
  // The echo is printed with FMT_NUMERIC: ports and names as numbers.
  for (const m of spec.matches) out += m.ext.print ? m.ext.print(m.params, true) : ` ${m.ext.name}${m.ext.save(m.params)}`;
  if (t.kind === 'ext') out += t.ext.print ? t.ext.print(t.params, true) : t.ext.save(t.params);
  return `${out}\n`;
}
