/**
 * A large iptables-restore file of the shapes users load (issue 12 §5): an
 * address blocklist jumping to a user chain of port rules with comments, and
 * conntrack-matched accepts, none of which matches the lab's ping
 * (198.51.100.0/24 <-> 203.0.113.0/24), which the FORWARD policy accepts.
 * `variant` changes every port so successive restores really replace the set;
 * `badLine` puts an invalid port at that line (iptables-restore refuses it naming the line).
 */
export function bigRuleset(lines: number, opts: { variant?: number; badLine?: number } = {}): string {
  const variant = opts.variant ?? 0;
  const out = ['*filter', ':INPUT ACCEPT [0:0]', ':FORWARD ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':blocked - [0:0]'];
  // The last three lines are fixed: a rule each, then COMMIT.
  for (let i = 0; out.length < lines - 3; i++) {
    const a = (i >> 8) & 255;
    const b = i & 255;
    const port = 1000 + ((i * 7 + variant * 13) % 50000);
    if (i % 3 === 0) out.push(`-A FORWARD -s 10.${a}.${b}.1/32 -j blocked`);
    else if (i % 3 === 1) out.push(`-A blocked -p tcp -m tcp --dport ${port} -m comment --comment "rule ${i}" -j DROP`);
    else out.push(`-A FORWARD -d 172.16.${a}.${b}/32 -p udp -m udp --sport ${port} -m state --state NEW -j ACCEPT`);
  }
  out.push('-A blocked -j RETURN', '-A FORWARD -d 192.0.2.99/32 -j DROP', 'COMMIT');
  if (opts.badLine !== undefined) {
    if (!out[opts.badLine - 1]?.startsWith('-A ')) throw new Error(`bigRuleset: line ${opts.badLine} is not a rule line`);
    out[opts.badLine - 1] = '-A FORWARD -p tcp -m tcp --dport 99999 -j DROP';
  }
  return `${out.join('\n')}\n`;
}
