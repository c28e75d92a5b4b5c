/**
 * Generates the man pages in docs/man/ from each tool's own `--help` text, so
 * the two never disagree: `node --import tsx scripts/gen-man.ts` rewrites
 * them; test/cli-conventions.test.ts fails when one is stale.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

export const MAN_TOOLS: Readonly<Record<string, string>> = {
  xtr: 'control the xtr userspace router',
  'xtr-nflog': 'write the packets NFLOG rules log as pcap or pcapng (xtr nflog)',
  xt_geoip_build: 'build xt_geoip range files from DB-IP CSV or .mmdb',
  xt_geoip_build_maxmind: 'build xt_geoip range files from MaxMind GeoLite2 CSV',
  xt_asn_build: 'build xt_asn range files',
  xt_geoip_query: 'print the ranges of a country from an xt_geoip database',
  xt_asn_query: 'print the ranges of an AS from an xt_asn database',
  xt_geoip_dl: 'download the DB-IP country lite CSV for xt_geoip_build',
  xt_geoip_dl_maxmind: 'download and unpack MaxMind GeoLite2 Country CSV',
  xt_asn_dl: 'download the DB-IP ASN lite CSV or MaxMind GeoLite2 ASN CSV',
  xt_geoip_update: 'keep an xt_geoip or xt_asn database current and reload xtr',
  iptaccount: "read the ACCOUNT target's tables from xtr",
  'xtr-knock': 'port-knocking and single-packet-authorization client',
  'xtr-sysrq': 'send a SYSRQ target request',
};

function helpOf(tool: string): string {
  const argv =
    tool === 'xtr' ? [process.execPath, join(ROOT, 'bin', 'xtr.js'), '--help']
    : tool === 'xtr-nflog' ? [process.execPath, join(ROOT, 'bin', 'xtr.js'), 'nflog', '--help']
    : [join(ROOT, 'scripts', tool), '--help'];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${tool} --help: exit ${r.status} ${r.stderr}`);
  return r.stdout;
}

const esc = (line: string) => line.replace(/\\/g, '\\e').replace(/^([.'])/, '\\&$1').replace(/-/g, '\\-');

/** The page: NAME, then the help text verbatim (no fill) as SYNOPSIS/DESCRIPTION. */
export function manPage(tool: string, version: string, help: string): string {
  return [
    `.TH ${tool.toUpperCase().replace(/-/g, '\\-')} 1 "" "xtr ${version}" "xtr"`,
    '.SH NAME',
    `${esc(tool)} \\- ${esc(MAN_TOOLS[tool]!)}`,
    '.SH SYNOPSIS AND OPTIONS',
    '.nf',
    ...help.replace(/\n$/, '').split('\n').map(esc),
    '.fi',
    '.SH SEE ALSO',
    'docs/config.md, docs/compat.md, docs/geoip.md in the xtr source tree',
    '',
  ].join('\n');
}

export function generate(version: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const tool of Object.keys(MAN_TOOLS)) out[`${tool}.1`] = manPage(tool, version, helpOf(tool));
  return out;
}

if (process.argv[1] && /gen-man\.[jt]s$/.test(process.argv[1])) {
  const { version } = (await import(join(ROOT, 'package.json'), { with: { type: 'json' } })).default as { version: string };
  const dir = join(ROOT, 'docs', 'man');
  mkdirSync(dir, { recursive: true });
  for (const [name, text] of Object.entries(generate(version))) writeFileSync(join(dir, name), text);
  process.stdout.write(`wrote ${Object.keys(MAN_TOOLS).length} pages to ${dir}\n`);
}
