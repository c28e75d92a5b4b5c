/**
 * Port helpers shared by tcp, udp, multiport and conntrack: numbers, ranges and
 * service names (read once from /etc/services, as getservbyname/getaddrinfo would).
 */
import { parseUint, strtoumax } from './numbers.js';
import { readFileSync } from 'node:fs';
import { type FieldRange, XtError } from '../../xt/extension.js';

let services: Map<string, number> | null = null;
/** "port/proto" -> the first name /etc/services gives (getservbyport). */
let serviceNames: Map<string, string> | null = null;

function loadServices(): Map<string, number> {
  if (services === null) {
    services = new Map();
    serviceNames = new Map();
    try {
      for (const line of readFileSync('/etc/services', 'utf8').split('\n')) {
        const words = line.replace(/#.*/, '').trim().split(/\s+/);
        const m = /^(\d+)\/(\w+)$/.exec(words[1] ?? '');
        if (!m) continue;
        if (!serviceNames!.has(words[1])) serviceNames!.set(words[1], words[0]);
        for (const n of [words[0], ...words.slice(2)]) {
          const key = `${n}/${m[2]}`;
          if (!services.has(key)) services.set(key, Number(m[1]));
        }
      }
    } catch {
      // No services database: only numeric ports work, as with an empty /etc/services.
    }
  }
  return services;
}

/** Port number of a service name for "tcp"/"udp"/..., or -1. */
export function servicePort(name: string, proto: string): number {
  return loadServices().get(`${name}/${proto}`) ?? -1;
}

/** A port as `iptables -L` prints it: the service name unless numeric or unknown. */
export function portText(port: number, proto: string, numeric: boolean): string {
  if (numeric) return `${port}`;
  loadServices();
  return serviceNames!.get(`${port}/${proto}`) ?? `${port}`;
}

/** libxt_tcp/udp print_ports: " spt:X", " spts:X:Y", with "!" after the colon. */
export function printPortRange(name: string, lo: number, hi: number, inv: boolean, proto: string, numeric: boolean): string {
  if (lo === 0 && hi === 65535 && !inv) return '';
  const i = inv ? '!' : '';
  if (lo === hi) return ` ${name}:${i}${portText(lo, proto, numeric)}`;
  return ` ${name}s:${i}${portText(lo, proto, numeric)}:${portText(hi, proto, numeric)}`;
}

/** Classifier hints for a port pair (tcp, udp). */
export function describePorts(spts: [number, number], invSrc: boolean, dpts: [number, number], invDst: boolean): FieldRange[] {
  const r: FieldRange[] = [];
  if (spts[0] !== 0 || spts[1] !== 65535 || invSrc) r.push({ field: 'sport', min: spts[0], max: spts[1], inverted: invSrc });
  if (dpts[0] !== 0 || dpts[1] !== 65535 || invDst) r.push({ field: 'dport', min: dpts[0], max: dpts[1], inverted: invDst });
  return r;
}

/**
 * libxtables' xtables_parse_port without its error: a number as
 * xtables_strtoui reads it (base 0, so `0x10` and octal `010` too), else a
 * service name of `proto` (getservbyname); -1 if neither.
 */
export function parsePortOrService(s: string, proto: string): number {
  const n = parseUint(s, 65535);
  if (n >= 0) return n;
  return s === '' ? -1 : servicePort(s, proto);
}

/** `a`, `a:b`, `:b`, `a:`, `:` as parse_tcp_ports in libxt_tcp (a reversed range is refused; udp differs). */
export function parsePortRange(s: string, proto: string): [number, number] {
  const port = (p: string): number => {
    const n = parsePortOrService(p, proto);
    if (n < 0) throw new XtError(`invalid port/service \`${p}' specified`);
    return n;
  };
  const colon = s.indexOf(':');
  if (colon < 0) {
    const p = port(s);
    return [p, p];
  }
  const lo = colon === 0 ? 0 : port(s.slice(0, colon));
  const hi = colon === s.length - 1 ? 65535 : port(s.slice(colon + 1));
  if (lo > hi) throw new XtError('invalid portrange (min > max)');
  return [lo, hi];
}

/** Save text of a port range option, or '' when it is the full, non-inverted range. */
export function savePortRange(opt: string, lo: number, hi: number, inv: boolean): string {
  if (lo === 0 && hi === 65535 && !inv) return '';
  return `${inv ? ' !' : ''} --${opt} ${lo === hi ? lo : `${lo}:${hi}`}`;
}

/** The protocols getaddrinfo tries for a service name with no hints, in its order. */
const SERVICE_PROTOS = ['tcp', 'udp', 'dccp', 'udplite', 'sctp'];

/**
 * xtables_getportbyname: getaddrinfo(NULL, name) - a string strtoul reads
 * whole in base 10 is a number, kept if its low 32 bits are a non-negative
 * int and then cut to 16 bits (glibc); anything else is a service name.
 * -1 when it resolves to nothing.
 */
export function portByName(name: string): number {
  const r = strtoumax(name, 0, 10);
  if (r.end === name.length && name.length > 0) {
    const asInt = Number(BigInt.asIntN(32, r.value));
    return asInt < 0 ? -1 : asInt & 0xffff;
  }
  for (const proto of SERVICE_PROTOS) {
    const port = servicePort(name, proto);
    if (port >= 0) return port;
  }
  return -1;
}

/** libxtables' XTTYPE_PORTRC (xtopt_parse_mport): `a`, `a:b`, `a:`, `:b`, `:`, even `b:a`, with its messages. */
export function parsePortRangeRC(ext: string, opt: string, s: string): [number, number] {
  const range: [number, number] = [0, 65535];
  let n = 0;
  for (const part of s.split(':')) {
    if (n === 2) throw new XtError(`${ext}: Too many components for option "--${opt}" (max: 2)\n`);
    if (part !== '') {
      const port = portByName(part);
      if (port < 0) throw new XtError(`Port "${part}" does not resolve to anything.\n`);
      range[n] = port;
    }
    n++;
  }
  if (n === 1) range[1] = range[0];
  return range;
}

