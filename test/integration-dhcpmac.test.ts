/**
 * A real DHCP exchange rewritten by DHCPMAC, the man page's VMware example
 * through xtr: busybox udhcpc on a client LAN whose NIC has a VMware MAC
 * (00:50:56:...), dnsmasq as the relay agent on that LAN (in the lab's client
 * namespace, giaddr 10.77.0.1) and dnsmasq as the DHCP server behind xtr (the
 * lab's server namespace). In xtr's mangle FORWARD:
 *
 *   -i eth0 -p udp --dport 67 -m dhcpmac --mac 00:50:56:00:00:00/24 -j DHCPMAC --set-mac 02:aa:bb:00:00:00/24
 *   -i eth1 -p udp --dport 67 -m dhcpmac --mac 02:aa:bb:00:00:00/24 -j DHCPMAC --set-mac 00:50:56:00:00:00/24
 *
 * The server must see (and lease to) 02:aa:bb:12:34:56 - the vendor prefix
 * replaced, the NIC part kept, as the man page's /24 promises - with UDP
 * checksums that verify, and the client must accept the OFFER/ACK (udhcpc
 * checks that chaddr is its own MAC). A first exchange without the rules
 * shows the server would otherwise see the VMware MAC.
 *
 * Needs root, busybox, dnsmasq, tcpdump, scapy and a built dist/.
 */
import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exec, run, sleep, startLab, uniquePrefix, waitFor, background, vethPair, createNamespace, deleteNamespace, type Background } from './helpers/netns.js';

const CLIENT_MAC = '00:50:56:12:34:56';
const REWRITTEN = '02:aa:bb:12:34:56';
const RULES = [
  '*mangle',
  ':PREROUTING ACCEPT [0:0]',
  ':INPUT ACCEPT [0:0]',
  ':FORWARD ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':POSTROUTING ACCEPT [0:0]',
  '-A FORWARD -i eth0 -p udp --dport 67 -m dhcpmac --mac 00:50:56:00:00:00/24 -j DHCPMAC --set-mac 02:aa:bb:00:00:00/24',
  '-A FORWARD -i eth1 -p udp --dport 67 -m dhcpmac --mac 02:aa:bb:00:00:00/24 -j DHCPMAC --set-mac 00:50:56:00:00:00/24',
  'COMMIT',
  '',
].join('\n');

/** chaddr and whether the UDP checksum verifies, per DHCP packet of a pcap (scapy). */
async function dhcpPackets(file: string): Promise<string[]> {
  if (!existsSync(file)) return [];
  const script = `import sys
from scapy.all import rdpcap, IP, UDP, BOOTP, raw
for p in rdpcap(sys.argv[1]):
    if BOOTP not in p: continue
    ip = p[IP]; u = ip[UDP]
    c = IP(raw(ip)); want = c[UDP].chksum; del c[UDP].chksum
    ok = IP(raw(c))[UDP].chksum == want
    mac = ':'.join('%02x' % b for b in bytes(p[BOOTP].chaddr)[:6])
    print(f'{ip.src}>{ip.dst} op={p[BOOTP].op} chaddr={mac} csum={"ok" if ok else "bad"}')`;
  const out = await run(['/usr/bin/python3', '-c', script, file], { timeoutMs: 60_000 });
  return out.split('\n').filter((l) => l !== '');
}

async function capture(ns: string, dev: string, file: string): Promise<Background> {
  const b = background(['tcpdump', '--immediate-mode', '-i', dev, '-n', '-U', '-w', file, 'udp port 67 or udp port 68'], { netns: ns });
  if (!(await waitFor(() => /listening on/.test(b.stderr()), 10_000))) throw new Error(`tcpdump did not start: ${b.stderr()}`);
  return b;
}

test('udhcpc through a dnsmasq relay and xtr to a dnsmasq server: DHCPMAC rewrites chaddr both ways, the server leases to the rewritten MAC', async (t) => {
  t.timeout(240_000);
  for (const tool of ['busybox', 'dnsmasq', 'tcpdump']) {
    if ((await exec(['which', tool])).code !== 0) {
      t.fail(`${tool} missing: run bash scripts/ensure-setup`);
      return;
    }
  }
  const prefix = uniquePrefix('xw2a');
  const dir = mkdtempSync(join(tmpdir(), 'xw2a-dhcp-'));
  const lab = await startLab({
    prefix,
    patch: (doc) => {
      (doc as Record<string, unknown>).routes = [{ to: '10.77.0.0/24', via: '198.51.100.2' }];
    },
  });
  const dns: Background[] = [];
  const dhcpNs = `${prefix}d`;
  try {
    await createNamespace(dhcpNs);
    await vethPair({ ns: dhcpNs, ifname: 'd0' }, { ns: lab.ns.c, ifname: 'lan0', addresses: ['10.77.0.1/24'] });
    await run(['ip', '-n', dhcpNs, 'link', 'set', 'd0', 'address', CLIENT_MAC]);
    const leases = join(dir, 'leases');
    const server = background(
      ['dnsmasq', '--no-daemon', '--port=0', '--conf-file=/dev/null', '--interface=s0', '--bind-interfaces', '--dhcp-authoritative', `--dhcp-leasefile=${leases}`, '--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h', '--log-dhcp', '--log-facility=-', `--pid-file=${join(dir, 's.pid')}`],
      { netns: lab.ns.s },
    );
    dns.push(server);
    const relay = background(['dnsmasq', '--no-daemon', '--port=0', '--conf-file=/dev/null', '--dhcp-relay=10.77.0.1,203.0.113.2', '--log-dhcp', '--log-facility=-', `--pid-file=${join(dir, 'r.pid')}`], { netns: lab.ns.c });
    dns.push(relay);
    await sleep(800);
    const udhcpc = () => exec(['busybox', 'udhcpc', '-i', 'd0', '-f', '-q', '-n', '-t', '4', '-T', '2', '-s', '/bin/true'], { netns: dhcpNs, timeoutMs: 30_000 });

    // Without the rules the server sees the VMware MAC.
    const plain = await udhcpc();
    t.is(plain.code, 0, `udhcpc without rules: ${plain.stdout}${plain.stderr}\nserver: ${server.stdout()}\nrelay: ${relay.stdout()}`);
    t.regex(readFileSync(leases, 'utf8'), new RegExp(` ${CLIENT_MAC} 10\\.77\\.0\\.1\\d\\d `));

    const r = await lab.router.cli(['iptables-restore'], RULES);
    t.is(r.code, 0, r.stderr);
    const sFile = join(dir, 's.pcap');
    const cFile = join(dir, 'c.pcap');
    const sCap = await capture(lab.ns.s, 's0', sFile);
    const cCap = await capture(lab.ns.c, 'c0', cFile);
    const rewritten = await udhcpc();
    await sleep(300);
    await sCap.kill('SIGINT');
    await cCap.kill('SIGINT');
    t.is(rewritten.code, 0, `udhcpc with DHCPMAC: ${rewritten.stdout}${rewritten.stderr}`);
    t.regex(`${rewritten.stdout}${rewritten.stderr}`, /lease of 10\.77\.0\.1\d\d obtained/);
    const lease = readFileSync(leases, 'utf8');
    t.log(`lease file: ${lease.trim()}`);
    t.regex(lease, new RegExp(` ${REWRITTEN} 10\\.77\\.0\\.1\\d\\d `), 'the server leased to the rewritten MAC');

    const atServer = await dhcpPackets(sFile);
    const atRelay = await dhcpPackets(cFile);
    t.log(['server link:', ...atServer, 'relay link (c0):', ...atRelay].join('\n'));
    // relay -> server (requests) and server -> relay (replies) both seen at the server with the rewritten address
    t.true(atServer.some((l) => l.includes('op=1')) && atServer.some((l) => l.includes('op=2')));
    t.true(atServer.every((l) => l.includes(`chaddr=${REWRITTEN}`)), 'the server side only ever sees the rewritten MAC');
    // and the relay side only the client's own
    t.true(atRelay.length >= 4);
    t.true(atRelay.every((l) => l.includes(`chaddr=${CLIENT_MAC}`)), 'the relay side only ever sees the client\'s MAC');
    // Checksums of what xtr wrote (requests towards the server, replies towards the relay). What a
    // namespace sends itself is captured before its checksum is filled in when xtr's TUN offers
    // checksum offload (issue 14, the default): tcpdump on a sending NIC shows the same.
    t.true(atServer.filter((l) => l.includes('op=1')).every((l) => l.endsWith('csum=ok')), 'requests xtr rewrote: checksums right');
    t.true(atRelay.filter((l) => l.includes('op=2')).every((l) => l.endsWith('csum=ok')), 'replies xtr rewrote: checksums right');
    const counters = (await lab.router.cli(['iptables-save', '-c', '-t', 'mangle'])).stdout;
    t.log(counters);
    t.regex(counters, /\[[1-9]\d*:\d+\] -A FORWARD -i eth0 .*DHCPMAC/);
    t.regex(counters, /\[[1-9]\d*:\d+\] -A FORWARD -i eth1 .*DHCPMAC/);
  } finally {
    for (const b of dns) await b.kill('SIGKILL');
    await deleteNamespace(dhcpNs);
    await lab.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
