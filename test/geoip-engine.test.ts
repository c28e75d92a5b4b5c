/**
 * geoip and asn through the real rule engine: iptables/ip6tables commands
 * with the database directories from the settings, iptables-save text,
 * parameter errors, and verdicts for codec-parsed packets at INPUT.
 */
import test from 'ava';
import { Hook, Verdict } from '../xt/packet.js';
import { Netfilter } from '../router/netfilter/engine.js';
import { netfilterCommands, splitLine } from '../router/netfilter/commands.js';
import { packet, RecordingServices } from '../router/netfilter/testkit.js';
import { loadExtensions } from '../modules/registry.js';
import { buildAsnDb, buildCountryDb, writeDatabase } from '../geoip-db/build.js';
import { tempDir } from './fixtures/geoip/helpers.js';

async function engine() {
  const geo = tempDir('engine-geoip');
  const asn = tempDir('engine-asn');
  writeDatabase(geo, buildCountryDb([{ name: 'c.csv', text: '1.0.0.0,1.0.0.255,AU\n5.0.0.0,5.0.0.255,DE\n2001:200::,2001:200:ffff:ffff:ffff:ffff:ffff:ffff,JP\n' }]).files);
  writeDatabase(asn, buildAsnDb([{ name: 'a.csv', text: '1.0.0.0,1.0.0.255,13335,"Cloudflare, Inc."\n2001:200::,2001:200:1b9:ffff:ffff:ffff:ffff:ffff,2500,WIDE Project\n' }]).files);
  const nf = new Netfilter({ registry: await loadExtensions(), services: new RecordingServices(), settings: { geoip: { dir: geo }, asn: { dir: asn } } });
  const table = netfilterCommands(nf, { now: () => new Date(Date.UTC(2026, 0, 1)) });
  const run = async (line: string) => {
    const words = splitLine(line, 0);
    return table[words[0]!]!(words.slice(1), null);
  };
  return { nf, run, geo };
}

test('iptables -m geoip / -m asn: rules, save text and verdicts (IPv4 and IPv6)', async (t) => {
  const { nf, run } = await engine();
  for (const line of [
    'iptables -A INPUT -m geoip --src-cc au,de -j DROP',
    'iptables -A INPUT -p tcp -m geoip ! --destination-country AU -j ACCEPT',
    'ip6tables -A INPUT -m geoip --source-country jp -j DROP',
    'ip6tables -A INPUT -m asn --source-number 2500 -j ACCEPT',
    'iptables -A INPUT -m asn ! --dst-asn 13335 -j ACCEPT',
  ]) {
    const r = await run(line);
    t.is(r.status, 0, `${line}: ${r.stderr}`);
  }
  const save4 = (await run('iptables-save')).stdout;
  t.regex(save4, /-A INPUT -m geoip --source-country AU,DE {1,2}-j DROP/);
  t.regex(save4, /-A INPUT -p tcp -m geoip ! --destination-country AU {1,2}-j ACCEPT/);
  t.regex(save4, /-A INPUT -m asn ! --dst-asn 13335 -j ACCEPT/);
  const save6 = (await run('ip6tables-save')).stdout;
  t.regex(save6, /-A INPUT -m geoip --source-country JP {1,2}-j DROP/);
  t.regex(save6, /-A INPUT -m asn --src-asn 2500 -j ACCEPT/);

  const verdict = (src: string, dst: string) => nf.hook(Hook.INPUT, packet({ src, dst, proto: 'udp' }));
  t.is(verdict('1.0.0.7', '9.9.9.9'), Verdict.DROP, 'AU source dropped');
  t.is(verdict('5.0.0.255', '9.9.9.9'), Verdict.DROP, 'DE source dropped');
  t.is(verdict('9.9.9.9', '1.0.0.1'), Verdict.ACCEPT, 'UDP: geoip rule 2 needs tcp; asn ! --dst-asn: dst in 13335 -> no match; policy ACCEPT');
  t.is(verdict('2001:200::1', '2001:db8::1'), Verdict.DROP, 'JP source dropped (IPv6)');
  t.is(verdict('2001:db8::1', '2001:db8::2'), Verdict.ACCEPT);
});

test('iptables -m geoip: parameter errors and a missing country file refuse the rule; nothing is added', async (t) => {
  const { run } = await engine();
  const cases: Array<[string, RegExp]> = [
    ['iptables -A INPUT -m geoip --src-cc AUS -j DROP', /geoip: invalid country code 'AUS'/],
    ['iptables -A INPUT -m geoip -j DROP', /geoip: missing arguments/],
    ['iptables -A INPUT -m geoip --src-cc AU --dst-cc DE -j DROP', /Only exactly one of --source-country or --destination-country/],
    ['iptables -A INPUT -m geoip --src-cc XX -j DROP', /Could not open .*XX\.iv4: No such file or directory: Could not read geoip database/],
    ['iptables -A INPUT -m asn --src-asn AS1 -j DROP', /asn: {2}invalid number code 'AS1'/],
  ];
  for (const [line, err] of cases) {
    const r = await run(line);
    t.not(r.status, 0, line);
    t.regex(r.stderr, err, line);
  }
  t.notRegex((await run('iptables-save')).stdout, /geoip|asn/);
});
