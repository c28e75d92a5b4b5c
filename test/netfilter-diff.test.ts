/**
 * Differential test against the kernel: the same iptables command lines go
 * to iptables-legacy inside a throwaway network namespace and to xtr; exit
 * statuses, the first line of each error, `-S`, `-L -n -v --line-numbers`
 * and iptables-save must agree (xtr says "(xtr)" where iptables says
 * "(legacy)"). Needs root, `ip netns` and iptables-legacy; otherwise the
 * tests are skipped with the reason.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { splitLine } from '../router/netfilter/commands.js';
import { testEngine, type TestEngine } from '../router/netfilter/testkit.js';

function haveKernelReference(): string | null {
  if (process.getuid?.() !== 0) return 'not root';
  const probe = spawnSync('iptables-legacy', ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0 || !/v1\.8\.9/.test(probe.stdout)) return 'iptables-legacy 1.8.9 not installed';
  if (spawnSync('ip', ['netns', 'list']).status !== 0) return 'ip netns not available';
  return null;
}
const unavailable = haveKernelReference();

class Kernel {
  readonly ns = `xediff${process.pid}${Math.floor(Math.random() * 1e6)}`;
  constructor() {
    const r = spawnSync('ip', ['netns', 'add', this.ns], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip netns add: ${r.stderr}`);
  }
  run(words: string[], input?: string) {
    // iptables -> iptables-legacy, iptables-save -> iptables-legacy-save.
    const [base, ...suffix] = words[0].split('-');
    const tool = [`${base}-legacy`, ...suffix].join('-');
    const r = spawnSync('ip', ['netns', 'exec', this.ns, tool, ...words.slice(1)], { encoding: 'utf8', input, timeout: 20_000 });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }
  close() {
    spawnSync('ip', ['netns', 'del', this.ns]);
  }
}

const norm = (s: string) => s.replace(/\(legacy\)/g, '(xtr)').replace(/ on .*$/gm, ' on <TIME>');
const firstLine = (s: string) => norm(s).split('\n')[0];

interface Sequence {
  name: string;
  lines: string[];
  /** Extensions that must exist in this tree for the sequence to be meaningful. */
  needs?: { match?: string[]; target?: string[] };
  /**
   * Compare the first stderr line too (messages xtr's engine writes, not a
   * module's); 'whole': all of a parameter error's stderr (blank lines
   * included), and for a kernel refusal everything iptables prints (xtr then
   * adds the reason the kernel would have logged).
   */
  messages?: boolean | 'whole';
  /** Compare -L -n -v output (rules whose matches print the same in both). */
  list?: boolean;
}

const SEQUENCES: Sequence[] = [
  {
    name: 'chains, policies and rule positions, with the usual mistakes',
    messages: true,
    list: true,
    lines: [
      'iptables -N a',
      'iptables -N b',
      'iptables -N a',
      'iptables -N ACCEPT',
      'iptables -N -x',
      'iptables -A a -j b',
      'iptables -A b -j a',
      'iptables -A INPUT -j a',
      'iptables -A INPUT -s 10.0.0.1,10.0.0.2 -d 1.1.1.0/24 -j ACCEPT',
      'iptables -I INPUT 1 -s 1.1.1.1,2.2.2.2 -d 3.3.3.3,4.4.4.4 -j DROP',
      'iptables -I INPUT 9 -j ACCEPT',
      'iptables -I INPUT 0 -j ACCEPT',
      'iptables -R INPUT 2 -s 5.5.5.5 -j DROP',
      'iptables -R INPUT 99 -j DROP',
      'iptables -D INPUT 3',
      'iptables -D INPUT 30',
      'iptables -D INPUT -s 2.2.2.2 -d 3.3.3.3 -j DROP',
      'iptables -D INPUT -s 9.9.9.9 -j DROP',
      'iptables -A FORWARD -i eth+ ! -o eth0 -f -j DROP',
      'iptables -A FORWARD ! -s 10.0.0.0/255.255.0.0 -j DROP',
      'iptables -A FORWARD -s 10.0.0.0/255.0.255.0 -d 10.1 -j DROP',
      'iptables -A FORWARD -p 47 -j ACCEPT',
      'iptables -A FORWARD -p all -j ACCEPT',
      'iptables -A FORWARD -i ! -j ACCEPT',
      'iptables -A FORWARD -i ! lo -j ACCEPT',
      'iptables -A FORWARD -s ! 1.2.3.4 -j DROP',
      'iptables -A FORWARD -p ! tcp -j DROP',
      'iptables -A INPUT -o eth0 -j DROP',
      'iptables -A OUTPUT -i eth0 -j DROP',
      'iptables -A INPUT -s 1.2.3.400 -j DROP',
      'iptables -A INPUT -s 1.2.3.4/33 -j DROP',
      'iptables -A INPUT -s 1.2.3.4/ -j DROP',
      'iptables -A INPUT -i verylongifname1234 -j DROP',
      'iptables -A INPUT -m nosuch -j DROP',
      'iptables -A INPUT -j NOSUCH',
      'iptables -A INPUT --bogus',
      'iptables -A INPUT -j ACCEPT -j DROP',
      'iptables -A NOCHAIN -j ACCEPT',
      'iptables -A b -j INPUT',
      'iptables -X a',
      'iptables -X INPUT',
      'iptables -X nochain',
      'iptables -P a DROP',
      'iptables -P INPUT FOO',
      'iptables -P FORWARD DROP',
      'iptables -E b c',
      'iptables -E c a',
      'iptables -E c INPUT',
      'iptables -L NOPE',
      'iptables -F INPUT -L',
      'iptables -P FORWARD DROP -j ACCEPT',
      'iptables -A INPUT -x',
      'iptables -L INPUT -v -x -n',
      'iptables -t bogus -L',
      'iptables',
      'iptables -C INPUT -s 5.5.5.5 -j DROP',
      'iptables -C INPUT -s 5.5.5.6 -j DROP',
      'iptables -Z INPUT',
      'iptables -A INPUT -m state -s 1.2.3.400',
      'iptables -A INPUT -p tcp --dport 99999 -x',
      'iptables -A INPUT -o eth0 -p tcp --dport 99999',
      'iptables -t nat -A FORWARD -j DROP -n',
      'iptables -A OUTPUT -i eth0 ! -s 1.2.3.4,5.6.7.8',
      'iptables -C INPUT -j INPUT',
      'iptables -C nochain -j ACCEPT',
      'iptables -C INPUT -j a',
      'iptables -A INPUT -s garbage/0 -j DROP',
      'iptables -A INPUT -j NOPE -s 1.2.3.400',
      'iptables -A INPUT ! -p all',
      'iptables -A INPUT ! -m comment --comment x',
      'iptables -L -n -n',
      'iptables -F a',
      'iptables -X',
      'iptables -t nat -P PREROUTING DROP',
      'iptables -t nat -A POSTROUTING -j DROP',
      'iptables -t raw -P PREROUTING DROP',
      'iptables -A INPUT -v -i eth0 ! -s 10.0.0.0/8 -d 1.2.3.4 -j a',
      'iptables -A FORWARD -v -p 47 -o eth1 -f -g a',
      'iptables -D INPUT -v -s 7.7.7.7 -j ACCEPT',
      'iptables -Z -v',
      'iptables -F -v',
      'iptables -X -v',
    ],
  },
  {
    name: 'listing: goto, counters with K/M/G units, -x, line numbers',
    messages: true,
    list: true,
    lines: [
      'iptables -N g',
      'iptables -A INPUT -p tcp -g g',
      'iptables -A INPUT -s 1.2.3.4 -d 5.6.7.0/24 -i eth0 -c 100000 123456789 -j ACCEPT',
      'iptables -A INPUT -p udp -c 5 99999',
      'iptables -A INPUT -p icmp -c 99999999999 9999999999999 -j DROP',
      'iptables -P INPUT DROP -c 12 3456',
      'iptables -A INPUT -p udplite',
      'iptables -A INPUT ! -p 58',
      'iptables -A INPUT -p 132 -f',
      'iptables -L INPUT -v',
      'iptables -L INPUT',
      'iptables -L INPUT -v -x --line-numbers',
      'iptables -L INPUT 2 -n',
      'iptables -S INPUT 3',
      'iptables -S INPUT -v',
      'iptables -L -Z INPUT -n -v',
      'iptables -L INPUT -n -v',
    ],
  },
  {
    name: 'ip6tables generic criteria',
    messages: true,
    list: true,
    lines: [
      'ip6tables -A INPUT -s 2001:db8::1,2001:db8::/32 -i eth+ -j DROP',
      'ip6tables -A INPUT -s fe80::/10 -d ff02::1 -j ACCEPT',
      'ip6tables -A INPUT -s ::ffff:10.0.0.1 -j DROP',
      'ip6tables -A INPUT -d 2001:db8:0:0:1:0:0:1/64 -j DROP',
      'ip6tables -A INPUT -p icmpv6 -j ACCEPT',
      'ip6tables -A INPUT -f -j DROP',
      'ip6tables -A INPUT -s 10.0.0.1 -j DROP',
      'ip6tables -N k',
      'ip6tables -A OUTPUT -o lo -j k',
      'ip6tables -A INPUT -s ::1.2.3.4',
      'ip6tables -A INPUT -s ::102',
      'ip6tables -A INPUT -s ::ffff:0:1.2.3.4 -d 2001:db8::/ffff:0:ffff::',
      'ip6tables -A INPUT ! -p udplite',
      'ip6tables -L -v',
      'ip6tables -L INPUT -n --line-numbers',
    ],
  },
  {
    name: 'mainline matches and targets (module parsers against libxt_*)',
    list: true,
    needs: { match: ['tcp', 'udp', 'icmp', 'multiport', 'state', 'conntrack', 'limit', 'mark', 'comment', 'length', 'ttl', 'iprange'], target: ['MARK', 'CONNMARK', 'CT', 'NOTRACK'] },
    lines: [
      'iptables -A INPUT -p tcp --dport 22 -j ACCEPT',
      'iptables -A INPUT -p tcp --dport 70000 -j ACCEPT',
      'iptables -A INPUT -p tcp --dport 5:3 -j ACCEPT',
      'iptables -A INPUT -p tcp --syn --dport 80 -m state --state NEW,ESTABLISHED -j ACCEPT',
      'iptables -A INPUT -m state --state NEW -p tcp --dport 22 -j ACCEPT',
      'iptables -A INPUT -m state --state FOO',
      'iptables -A INPUT -m state',
      'iptables -A INPUT -p tcp --tcp-flags SYN',
      'iptables -A INPUT --dport 22',
      'iptables -A INPUT ! -p tcp --dport 22 -j DROP',
      'iptables -A INPUT -p udp -m multiport --sports 53,123 -j ACCEPT',
      'iptables -A INPUT -p icmp --icmp-type echo-request -m limit --limit 3/min -j ACCEPT',
      'iptables -A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
      'iptables -A INPUT -m comment --comment "two words" -j ACCEPT',
      'iptables -A INPUT -m length --length 0:64 -m ttl --ttl-gt 3 -j DROP',
      'iptables -A INPUT -m iprange --dst-range 10.0.0.1-10.0.0.5 -m mark ! --mark 7 -j DROP',
      'iptables -t mangle -A PREROUTING -j MARK --set-mark 5',
      'iptables -t mangle -A PREROUTING -j CONNMARK --restore-mark',
      'iptables -t raw -A PREROUTING -j CT --notrack',
      'iptables -t nat -A PREROUTING -j CT --notrack',
      'iptables -A INPUT -j NOTRACK',
    ],
  },
  {
    name: 'whole messages: libxtables option errors end with a blank line, kernel refusals print their errno',
    messages: 'whole',
    needs: { match: ['mark', 'connmark', 'state', 'comment', 'length', 'mac', 'recent', 'limit', 'ttl', 'multiport', 'icmp', 'udp', 'iprange'], target: ['MARK', 'CONNMARK', 'LOG', 'REJECT', 'CT'] },
    lines: [
      'iptables -A INPUT -m mark',
      'iptables -A INPUT -m connmark',
      'iptables -A INPUT -m state',
      'iptables -A INPUT -m comment',
      'iptables -A INPUT -m length',
      'iptables -A INPUT -m mac',
      'iptables -A INPUT -m icmp',
      'iptables -A INPUT -p icmp -m icmp',
      'iptables -A INPUT -m mark --mark 1 --mark 2',
      'iptables -A INPUT -m mark --mark 0x1/zz',
      'iptables -A INPUT -m recent ! --name x --set',
      'iptables -A INPUT -m recent --set --rcheck',
      'iptables -A INPUT -m recent --rcheck --reap',
      'iptables -A INPUT -m recent --rcheck --seconds 0',
      'iptables -A INPUT -m limit --limit-burst 99999',
      'iptables -A INPUT -m ttl --ttl-eq 5 --ttl-gt 3',
      'iptables -A INPUT -m ttl --ttl-lt 300',
      'iptables -A INPUT -m length --length x',
      'iptables -A INPUT -p tcp -m multiport --dports 1 --sports 2',
      'iptables -A INPUT -p udp --dport 5 --dport 6',
      'iptables -A INPUT -m iprange --src-range 1.1.1.1-1.1.1.2 --src-range 1.1.1.1-1.1.1.2',
      'iptables -A INPUT -j MARK --set-mark foo',
      'iptables -A INPUT -j MARK --set-xmark 1 --set-mark 2',
      'iptables -A INPUT -j CONNMARK --set-mark foo',
      'iptables -A INPUT -j LOG --log-level foo',
      'iptables -A INPUT -j REJECT --reject-with tcp-reset --reject-with tcp-reset',
      'iptables -t raw -A PREROUTING -j CT --notrack --notrack',
      'iptables -A INPUT -m limit --limit-burst 0',
      'iptables -A INPUT -m limit --limit 1/day',
      'iptables -A INPUT -m limit --limit 10000/s --limit-burst 10000',
      'iptables -A INPUT -m recent --set --hitcount 3',
      'iptables -A INPUT -m recent --rcheck --hitcount 70000',
      'iptables -A INPUT -m recent --rcheck --hitcount 65536',
      'iptables -A INPUT -m recent --rcheck --hitcount 255',
      'iptables -A INPUT -m recent --set --name a/b',
      'iptables -A INPUT -j REJECT --reject-with tcp-reset',
      'iptables -A INPUT ! -p tcp -j REJECT --reject-with tcp-reset',
      'iptables -A INPUT -j CT',
      'iptables -I INPUT 5 -m limit --limit-burst 0',
      'ip6tables -A INPUT -m limit --limit-burst 0',
      'ip6tables -A INPUT -m mark',
    ],
  },
  {
    name: 'REJECT types by abbreviation and case, echo-reply refused after its note; CONNMARK masks with the set operations',
    messages: 'whole',
    list: true,
    needs: { target: ['REJECT', 'CONNMARK'] },
    lines: [
      'iptables -A INPUT -p icmp -j REJECT --reject-with echo-reply',
      'iptables -A INPUT -j REJECT --reject-with echoreply',
      'iptables -A INPUT -j REJECT --reject-with ECHO-R',
      'iptables -A INPUT -j REJECT --reject-with e',
      'iptables -A INPUT -j REJECT --reject-with echo-replyx',
      'ip6tables -A INPUT -j REJECT --reject-with echo-reply',
      'ip6tables -A INPUT -j REJECT --reject-with icmp-port-unreachable',
      'iptables -A INPUT -p tcp -j REJECT --reject-with TCP',
      'iptables -A INPUT -j REJECT --reject-with ICMP-HOST',
      'iptables -A INPUT -j REJECT --reject-with a',
      'iptables -A INPUT -j REJECT --reject-with ""',
      'ip6tables -A INPUT -j REJECT --reject-with a',
      'ip6tables -A INPUT -j REJECT --reject-with P',
      'ip6tables -A INPUT -j REJECT --reject-with ""',
      'iptables -t mangle -A PREROUTING -j CONNMARK --set-mark 1 --mask 2',
      'iptables -t mangle -A PREROUTING -j CONNMARK --mask 2 --set-mark 1',
      'iptables -t mangle -A PREROUTING -j CONNMARK --set-mark 1/4 --mask 2',
      'iptables -t mangle -A PREROUTING -j CONNMARK --ctmask 2 --set-xmark 1/4',
      'iptables -t mangle -A PREROUTING -j CONNMARK --set-xmark 1/4 --ctmask 2',
      'iptables -t mangle -A PREROUTING -j CONNMARK --set-xmark 1 --nfmask 2',
      'iptables -t mangle -A PREROUTING -j CONNMARK --and-mark 5 --mask 3',
      'iptables -t mangle -A PREROUTING -j CONNMARK --or-mark 5 --ctmask 3',
      'iptables -t mangle -A PREROUTING -j CONNMARK --xor-mark 5 --mask 3',
      'iptables -t mangle -A PREROUTING -j CONNMARK --mask 2 --save-mark',
      'iptables -t mangle -A PREROUTING -j CONNMARK --set-mark 1 --mask 2 --ctmask 3',
      'iptables -t mangle -A PREROUTING -j CONNMARK --set-mark 1 --mask 2 --mask 3',
      'iptables -t mangle -A PREROUTING -j CONNMARK --mask 2',
      'ip6tables -t mangle -A PREROUTING -j CONNMARK --set-mark 0x10 --mask 0x30',
    ],
  },
  {
    name: 'seed 001: the port-knocking script (EXT_IF=eth0)',
    list: true,
    needs: { match: ['recent', 'state', 'limit', 'icmp', 'tcp'], target: ['REJECT'] },
    lines: [
      'iptables -F', 'iptables -t nat -F', 'iptables -X', 'iptables -t nat -X',
      'iptables -P INPUT DROP', 'iptables -P FORWARD DROP', 'iptables -P OUTPUT DROP',
      'iptables -I INPUT 1 -i ! lo -j DROP', 'iptables -I FORWARD 1 -i ! lo -j DROP', 'iptables -I OUTPUT 1 -o ! lo -j DROP',
      'iptables -A INPUT -i lo -j ACCEPT', 'iptables -A OUTPUT -o lo -j ACCEPT',
      'iptables -A INPUT -s 10.0.0.0/8 -i eth0 -j DROP', 'iptables -A INPUT -s 127.0.0.0/8 -i eth0 -j DROP',
      'iptables -A INPUT -s 172.16.0.0/12 -i eth0 -j DROP', 'iptables -A INPUT -s 192.168.0.0/16 -i eth0 -j DROP',
      'iptables -A FORWARD -s 10.0.0.0/8 -i eth0 -j DROP', 'iptables -A FORWARD -s 127.0.0.0/8 -i eth0 -j DROP',
      'iptables -A FORWARD -s 172.16.0.0/12 -i eth0 -j DROP', 'iptables -A FORWARD -s 192.168.0.0/16 -i eth0 -j DROP',
      'iptables -A OUTPUT -p tcp -m state --state ESTABLISHED,RELATED -j ACCEPT', 'iptables -A OUTPUT -o eth0 -j ACCEPT',
      'iptables -N icmp-packets',
      'iptables -A icmp-packets -p icmp --icmp-type redirect -j DROP',
      'iptables -A icmp-packets -p icmp --icmp-type echo-request -j ACCEPT',
      'iptables -A icmp-packets -p icmp --icmp-type echo-reply -j ACCEPT',
      'iptables -A icmp-packets -p icmp --icmp-type destination-unreachable -j ACCEPT',
      'iptables -A icmp-packets -p icmp --icmp-type source-quench -j ACCEPT',
      'iptables -A icmp-packets -p icmp --icmp-type time-exceeded -j ACCEPT',
      'iptables -A icmp-packets -p icmp --icmp-type parameter-problem -j ACCEPT',
      'iptables -N syn-flood',
      'iptables -A syn-flood -m limit --limit 1/s --limit-burst 4 -j RETURN', 'iptables -A syn-flood -j DROP',
      'iptables -N port-knocking', 'iptables -N knocking-okey', 'iptables -N knocking-oops',
      'iptables -A port-knocking -p tcp --dport 1223 -m recent --rcheck --hitcount 1 -j knocking-oops',
      'iptables -A port-knocking -p tcp --dport 1223 -m recent --set -j REJECT --reject-with host-prohib',
      'iptables -A port-knocking -p tcp --dport 569 -m recent --rcheck --hitcount 2 -j knocking-oops',
      'iptables -A port-knocking -p tcp --dport 569 -m recent --update --hitcount 1 -j REJECT --reject-with host-prohib',
      'iptables -A port-knocking -p tcp --dport 715 -m recent --rcheck --hitcount 3 -j knocking-oops',
      'iptables -A port-knocking -p tcp --dport 715 -m recent --update --hitcount 2 -j REJECT --reject-with host-prohib',
      'iptables -A port-knocking -p tcp -m recent --remove',
      'iptables -A knocking-okey -m state --state NEW -p tcp -m recent --remove -j ACCEPT',
      'iptables -A knocking-oops -m state --state NEW -p tcp -m recent --remove',
      'iptables -A INPUT -i eth0 -p icmp -j icmp-packets',
      'iptables -A INPUT -p tcp -m state --state ESTABLISHED,RELATED -j ACCEPT',
      'iptables -A INPUT -i eth0 -p tcp --syn -j syn-flood',
      'iptables -A INPUT -i eth0 -p tcp --dport 22 -m state --state NEW -m recent --rcheck --seconds 20 --hitcount 3 -j knocking-okey',
      'iptables -A INPUT -i eth0 -p tcp -j port-knocking',
      'iptables -D INPUT 1', 'iptables -D FORWARD 1', 'iptables -D OUTPUT 1',
    ],
  },
  {
    name: 'seed 003: the four recent recipes as pasted (including the invalid -j ALLOW)',
    list: true,
    messages: true,
    needs: { match: ['recent', 'tcp', 'udp'], target: ['LOG'] },
    lines: [
      'iptables -A OUTPUT -p tcp --dport 3306 -m recent --name dbout --rdest -j ACCEPT',
      'iptables -A INPUT -p tcp --dport 3306 -m recent --name dbout --rcheck -j ACCEPT',
      'iptables -A INPUT -p udp --dport 138 -m recent --name udp-138 --rcheck --seconds 300 -j DROP',
      'iptables -A INPUT -p udp --dport 138 -m recent --name udp-138 --set',
      'iptables -A INPUT -j LOG --log-prefix “INPUT-drop”',
      'iptables -A INPUT -j DROP',
      'iptables -A INPUT -p udp --dport 138 -m recent --name udp-138 --rcheck --hitcount 100 -j DROP',
      'iptables -A INPUT -d 192.0.2.1 -p tcp --dport 443 -j ALLOW',
      'iptables -A INPUT -d 192.0.2.1 -p tcp --dport 80 -m recent --name authok --rcheck -j ALLOW',
      'iptables -A INPUT -d 192.0.2.1 -p tcp --dport 80 -m recent --name authok --rcheck -j ACCEPT',
      'iptables -A FORWARD -m recent --name noplacelike --rcheck --seconds 60 -j DROP',
      'iptables -A FORWARD -i eth0 -d 127.0.0.0/8 -m recent --name noplacelike --set -j DROP',
      'iptables -A FORWARD -m recent --name noplacelike --update --seconds 60 -j DROP',
    ],
  },
];

function missing(e: TestEngine, s: Sequence): string[] {
  const out: string[] = [];
  for (const m of s.needs?.match ?? []) if (!e.nf.registry.match(m, 4)) out.push(`match ${m}`);
  for (const t of s.needs?.target ?? []) if (!e.nf.registry.target(t, 4)) out.push(`target ${t}`);
  return out;
}

for (const seq of SEQUENCES) {
  const run = unavailable ? test.skip : test.serial;
  run(`kernel vs xtr: ${seq.name}${unavailable ? ` (skipped: ${unavailable})` : ''}`, async (t) => {
    const e = await testEngine();
    const lacking = missing(e, seq);
    if (lacking.length > 0) {
      t.fail(`this tree has no ${lacking.join(', ')} yet`);
      return;
    }
    const k = new Kernel();
    try {
      for (const line of seq.lines) {
        const words = splitLine(line, 0);
        const kr = k.run(words);
        const xr = await e.run(line);
        t.is(xr.status, kr.status, `status of: ${line}\nkernel: ${kr.stderr}\nxtr: ${xr.stderr}`);
        if (seq.messages === 'whole' && kr.status === 2) t.is(norm(xr.stderr), norm(kr.stderr), `stderr of: ${line}`);
        else if (seq.messages === 'whole' && kr.status !== 0) t.is(norm(xr.stderr).slice(0, kr.stderr.length), norm(kr.stderr), `stderr of: ${line}`);
        else if (seq.messages && kr.status !== 0) t.is(firstLine(xr.stderr), firstLine(kr.stderr), `message of: ${line}`);
        if (kr.stdout !== '' || xr.stdout !== '') t.is(norm(xr.stdout), norm(kr.stdout), `output of: ${line}`);
      }
      for (const family of ['iptables', 'ip6tables']) {
        for (const table of ['filter', 'nat', 'mangle', 'raw']) {
          const cmd = `${family} -t ${table} -S`;
          t.is((await e.run(cmd)).stdout, k.run(splitLine(cmd, 0)).stdout, cmd);
          if (seq.list) {
            const l = `${family} -t ${table} -L -n -v --line-numbers`;
            t.is((await e.run(l)).stdout, k.run(splitLine(l, 0)).stdout, l);
          }
        }
        t.is(norm((await e.run(`${family}-save -c`)).stdout), norm(k.run([`${family}-save`, '-c']).stdout), `${family}-save -c`);
      }
    } finally {
      k.close();
    }
  });
}

/** iptables-restore inputs, each applied in turn to both; statuses, first error line and the resulting save agree. */
const RESTORES: readonly [string, string][] = [
  ['-n', '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 1.1.1.1 -j DROP\nCOMMIT\n'],
  ['', '# comment\n\n*filter\n:INPUT DROP [1:2]\n:FOO - [0:0]\n-A INPUT -m comment --comment "a b \\"c\\"" -j FOO\n-A FOO -j RETURN\nCOMMIT\n'],
  ['-c', '*filter\n:INPUT ACCEPT [5:100]\n:FOO - [3:4]\n[3:60] -A INPUT -s 1.2.3.4 -j ACCEPT\n[7:8] -A FOO -j DROP\nCOMMIT\n'],
  ['-n', '*filter\n:FOO - [0:0]\n-A FOO -j ACCEPT\nCOMMIT\n'],
  ['', '*filter\n-N BAR\n-A BAR -j ACCEPT\n-I INPUT -j BAR\nCOMMIT\n'],
  ['', '*filter\nCOMMIT\n*filter\nCOMMIT\n'],
  ['', '*filter\n*nat\nCOMMIT\n'],
  ['', 'COMMIT\n'],
  ['', '*filter\n:INPUT ACCEPT\nCOMMIT\n'],
  ['', '*filter\n:INPUT\nCOMMIT\n'],
  ['', '*filter\n-A INPUT -j ACCEPT\nCOMMIT'],
  ['', '*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT -t nat\nCOMMIT\n'],
  ['', '*filter\n-X FOO\nCOMMIT\n'],
  ['', '*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s 1.2.3.4 -j ACCEPT\n-A INPUT -s 1.2.3.400 -j ACCEPT\nCOMMIT\n'],
  ['--test', '*filter\n-A INPUT -j NOPE\nCOMMIT\n'],
  ['-T nat', '*filter\n-A INPUT -j ACCEPT\nCOMMIT\n*nat\n-A POSTROUTING -j ACCEPT\nCOMMIT\n'],
  ['', '*filter\n:INPUT FOO [0:0]\nCOMMIT\n'],
  ['', '*filter\n:FOO ACCEPT [0:0]\nCOMMIT\n'],
  ['', '*bogus\nCOMMIT\n'],
  ['', '*filter\n-A INPUT -j ACCEPT\n'],
  ['', '*mangle\n:PREROUTING DROP [0:0]\n-A PREROUTING -i eth0 -j ACCEPT\nCOMMIT\n*raw\n-A OUTPUT -j ACCEPT\nCOMMIT\n'],
];

(unavailable ? test.skip : test.serial)(`kernel vs xtr: iptables-restore inputs${unavailable ? ` (skipped: ${unavailable})` : ''}`, async (t) => {
  const e = await testEngine();
  const k = new Kernel();
  try {
    for (const [opts, input] of RESTORES) {
      const args = opts ? opts.split(' ') : [];
      const kr = k.run(['iptables-restore', ...args], input);
      const xr = await e.run(`iptables-restore ${opts}`, input);
      const label = `iptables-restore ${opts} ${JSON.stringify(input)}`;
      t.is(xr.status, kr.status, `${label}\nkernel: ${kr.stderr}\nxtr: ${xr.stderr}`);
      t.is(firstLine(xr.stderr), firstLine(kr.stderr), label);
      t.is(norm((await e.run('iptables-save -c')).stdout), norm(k.run(['iptables-save', '-c']).stdout), label);
    }
  } finally {
    k.close();
  }
});

/** Seeded random command lines over the generic options (valid and not): status, first message line, output and save agree. */
function randomLines(seed: number, count: number): string[] {
  let state = seed;
  const rnd = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state % n;
  };
  const pick = <T,>(a: readonly T[]): T => a[rnd(a.length)];
  const cmds = ['-A', '-A', '-A', '-I', '-D', '-R', '-C', '-N', '-X', '-F', '-Z', '-P', '-E', '-L', '-S'];
  const chains = ['INPUT', 'FORWARD', 'OUTPUT', 'PREROUTING', 'POSTROUTING', 'c1', 'c2', 'nochain'];
  const opts = () => {
    const o: string[] = [];
    for (let i = rnd(4); i > 0; i--) {
      const inv = rnd(5) === 0 ? '! ' : '';
      o.push(
        pick([
          `${inv}-s ${pick(['1.2.3.4', '10.0.0.0/8', '1.2.3.4,5.6.7.8', '300.1.1.1', '1.2.3.4/40', '0/0', '10.0.0.0/255.0.255.0'])}`,
          `${inv}-d ${pick(['9.9.9.9', '10.1', '192.168.0.0/255.255.0.0'])}`,
          `${inv}-p ${pick(['tcp', 'udp', 'icmp', 'all', '47', 'bogus', 'UDP'])}`,
          `${inv}-i ${pick(['eth0', 'eth+', 'lo', '!'])}`,
          `${inv}-o ${pick(['eth1', 'wlan+'])}`,
          `${inv}-f`,
          `--dport ${pick(['22', '1:1024', 'ssh', '99999', '5:3'])}`,
          `-m ${pick(['state --state NEW', 'comment --comment x', 'limit --limit 3/min', 'nosuch', 'tcp --sport 7'])}`,
          `-j ${pick(['ACCEPT', 'DROP', 'RETURN', 'c1', 'c2', 'NOPE', 'QUEUE'])}`,
          `-g ${pick(['c1', 'c2', 'INPUT'])}`,
          pick(['-v', '-n', '-x', '--line-numbers', '-c 1 2', '-w']),
        ]),
      );
    }
    return o.join(' ');
  };
  const out: string[] = [];
  for (let k = 0; k < count; k++) {
    const c = pick(cmds);
    let line = `iptables ${pick(['', '', '', '-t nat', '-t mangle', '-t raw'])} ${c}`;
    if (rnd(6) !== 0) line += ` ${pick(chains)}`;
    if ((c === '-I' || c === '-R' || c === '-D' || c === '-L' || c === '-S') && rnd(2) === 0) line += ` ${pick(['1', '2', '5'])}`;
    if (c === '-P') line += ` ${pick(['ACCEPT', 'DROP', 'RETURN'])}`;
    if (c === '-E') line += ` ${pick(['c1', 'c2', 'c3'])}`;
    if (c === '-L') line += ` ${pick(['', '-n', '-n -v', '-n -v -x --line-numbers', '-Z -n'])}`;
    if (['-A', '-I', '-D', '-R', '-C'].includes(c)) line += ` ${opts()}`;
    out.push(line.replace(/\s+/g, ' ').trim());
  }
  return out;
}

for (const seed of [11, 12]) {
  (unavailable ? test.skip : test.serial)(`kernel vs xtr: 200 random command lines, seed ${seed}${unavailable ? ` (skipped: ${unavailable})` : ''}`, async (t) => {
    const e = await testEngine();
    const k = new Kernel();
    try {
      for (const line of randomLines(seed, 200)) {
        const kr = k.run(splitLine(line, 0));
        const xr = await e.run(line);
        t.is(xr.status, kr.status, `status of: ${line}\nkernel: ${kr.stderr}\nxtr: ${xr.stderr}`);
        t.is(firstLine(xr.stderr), firstLine(kr.stderr), `message of: ${line}`);
        t.is(norm(xr.stdout), norm(kr.stdout), `output of: ${line}`);
      }
      t.is(norm((await e.run('iptables-save -c')).stdout), norm(k.run(['iptables-save', '-c']).stdout));
    } finally {
      k.close();
    }
  });
}

/** The same generator for ip6tables: IPv6 addresses in place of the IPv4 ones, no -f. */
function randomLines6(seed: number, count: number): string[] {
  return randomLines(seed, count).map((l) =>
    l
      .replace(/^iptables/, 'ip6tables')
      .replace(/1\.2\.3\.4/g, '2001:db8::4')
      .replace(/5\.6\.7\.8/g, '::8')
      .replace(/10\.0\.0\.0\/8/g, 'fe80::/10')
      .replace(/9\.9\.9\.9/g, '::9')
      .replace(/ -f/g, ''),
  );
}

for (const seed of [51, 53]) {
  (unavailable ? test.skip : test.serial)(`kernel vs xtr: 200 random ip6tables command lines, seed ${seed}${unavailable ? ` (skipped: ${unavailable})` : ''}`, async (t) => {
    const e = await testEngine();
    const k = new Kernel();
    try {
      for (const line of randomLines6(seed, 200)) {
        const kr = k.run(splitLine(line, 0));
        const xr = await e.run(line);
        t.is(xr.status, kr.status, `status of: ${line}\nkernel: ${kr.stderr}\nxtr: ${xr.stderr}`);
        t.is(firstLine(xr.stderr), firstLine(kr.stderr), `message of: ${line}`);
        t.is(norm(xr.stdout), norm(kr.stdout), `output of: ${line}`);
      }
      t.is(norm((await e.run('ip6tables-save -c')).stdout), norm(k.run(['ip6tables-save', '-c']).stdout));
    } finally {
      k.close();
    }
  });
}

(unavailable ? test.skip : test.serial)(`kernel vs xtr: iptables-restore prints REJECT's echo-reply note ahead of its error${unavailable ? ` (skipped: ${unavailable})` : ''}`, async (t) => {
  const e = await testEngine();
  const k = new Kernel();
  try {
    for (const type of ['echo-reply', 'echo', 'echo-replyx']) {
      const text = `*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p icmp -j REJECT --reject-with ${type}\nCOMMIT\n`;
      const kr = k.run(['iptables-restore'], text);
      const xr = await e.run('iptables-restore', text);
      t.is(xr.status, kr.status, `status for ${type}`);
      t.is(norm(xr.stderr), norm(kr.stderr), `stderr for ${type}`);
    }
  } finally {
    k.close();
  }
});
