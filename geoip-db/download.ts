/**
 * Downloading the GeoIP/ASN source data, as xtables-addons' xt_geoip_dl,
 * xt_geoip_dl_maxmind and xt_asn_dl do with wget, and as MaxMind's geoipupdate
 * does for its loop: conditional requests (ETag / Last-Modified), then a check
 * that what arrived is what it claims to be before anything uses it.
 *
 * Sources and their upstream URLs (overridable with a base URL for mirrors
 * and tests; the path below the base stays upstream's):
 *   dbip-country     <base>/dbip-country-lite-YYYY-MM.csv.gz   base https://download.db-ip.com/free
 *   dbip-asn         <base>/dbip-asn-lite-YYYY-MM.csv.gz       base https://download.db-ip.com/free
 *   maxmind-country  <base>/app/geoip_download?edition_id=GeoLite2-Country-CSV&license_key=K&suffix=zip
 *   maxmind-asn      <base>/app/geoip_download?edition_id=GeoLite2-ASN-CSV&license_key=K&suffix=zip
 *                    base https://download.maxmind.com
 * DB-IP publishes one file per month: the current month (UTC) is tried
 * first, then the previous one (upstream's fallback), so the first days of a
 * month still work.
 *
 * A licence key is part of MaxMind's URL: every message here shows URLs
 * through redactUrl(), never with the key.
 */
import { createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { readZip, looksLikeZip, ZipError, type ZipMember } from './zip.js';

export class DownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DownloadError';
  }
}

export type SourceName = 'dbip-country' | 'dbip-asn' | 'maxmind-country' | 'maxmind-asn';
export const SOURCES: readonly SourceName[] = ['dbip-country', 'dbip-asn', 'maxmind-country', 'maxmind-asn'];

export const DBIP_BASE = 'https://download.db-ip.com/free';
export const MAXMIND_BASE = 'https://download.maxmind.com';

/** What a source delivers: a gzipped CSV (DB-IP) or a zip of CSVs (MaxMind). */
export function sourceFormat(source: SourceName): 'csv.gz' | 'zip' {
  return source.startsWith('dbip-') ? 'csv.gz' : 'zip';
}

/** The file upstream's download tools leave behind for a DB-IP source: `dbip-country-lite.csv`. */
export function dbipOutputName(source: SourceName): string {
  return source === 'dbip-asn' ? 'dbip-asn-lite.csv' : 'dbip-country-lite.csv';
}

/** MaxMind's edition id: also the prefix of the directory its zip unpacks to (`GeoLite2-Country-CSV_20260101/`). */
export function maxmindEdition(source: SourceName): string {
  return source === 'maxmind-asn' ? 'GeoLite2-ASN-CSV' : 'GeoLite2-Country-CSV';
}

function yyyymm(d: Date): string {
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

/**
 * The URLs to try, in order. An explicit `url` is the only candidate; else
 * the source's upstream path under `base` (its upstream base by default).
 */
export function candidateUrls(source: SourceName, opts: { url?: string; base?: string; licenseKey?: string; now?: Date }): string[] {
  if (opts.url) return [opts.url];
  const now = opts.now ?? new Date();
  if (source.startsWith('dbip-')) {
    const base = (opts.base ?? DBIP_BASE).replace(/\/+$/, '');
    const stem = source === 'dbip-asn' ? 'dbip-asn-lite' : 'dbip-country-lite';
    const prev = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 1));
    return [`${base}/${stem}-${yyyymm(now)}.csv.gz`, `${base}/${stem}-${yyyymm(prev)}.csv.gz`];
  }
  if (!opts.licenseKey) throw new DownloadError(`${source} needs a MaxMind licence key`);
  const base = (opts.base ?? MAXMIND_BASE).replace(/\/+$/, '');
  const q = new URLSearchParams({ edition_id: maxmindEdition(source), license_key: opts.licenseKey, suffix: 'zip' });
  return [`${base}/app/geoip_download?${q.toString()}`];
}

/** The URL with any licence key or password hidden: safe for logs, errors and the state file. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const k of ['license_key', 'licence_key', 'key']) if (u.searchParams.has(k)) u.searchParams.set(k, '***');
    return u.toString().replace(/%2A%2A%2A/g, '***');
  } catch {
    return url.replace(/(license_key|licence_key|key)=[^&]*/g, '$1=***');
  }
}

/** What the previous successful download recorded (the update loop's state). */
export interface Validators {
  readonly url?: string;
  readonly etag?: string;
  readonly lastModified?: string;
}

export type FetchOutcome =
  | { readonly status: 'not-modified'; readonly url: string }
  | { readonly status: 'ok'; readonly url: string; readonly body: Buffer; readonly sha256: string; readonly etag?: string; readonly lastModified?: string; readonly contentType?: string };

export interface FetchOptions {
  /** Sent as If-None-Match / If-Modified-Since when the URL is the one they came from. */
  readonly validators?: Validators;
  /** Per request, headers and body; default 5 minutes. */
  readonly timeoutMs?: number;
  /** Refuse bodies larger than this (bytes); default 1 GiB. */
  readonly maxBytes?: number;
}

async function fetchOne(url: string, opts: FetchOptions): Promise<FetchOutcome | { status: 'missing'; code: number }> {
  const headers: Record<string, string> = { 'user-agent': 'xtr-geoip (xt_geoip_dl compatible)' };
  const v = opts.validators;
  if (v && v.url === redactUrl(url)) {
    if (v.etag) headers['if-none-match'] = v.etag;
    if (v.lastModified) headers['if-modified-since'] = v.lastModified;
  }
  let res: Response;
  try {
    res = await fetch(url, { headers, redirect: 'follow', signal: AbortSignal.timeout(opts.timeoutMs ?? 300_000) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (e as Error).message;
    throw new DownloadError(`${redactUrl(url)}: download failed: ${why}`);
  }
  if (res.status === 304) return { status: 'not-modified', url };
  if (res.status === 404 || res.status === 410) {
    await res.body?.cancel();
    return { status: 'missing', code: res.status };
  }
  if (res.status !== 200) {
    await res.body?.cancel();
    const hint = res.status === 401 || res.status === 403 ? ' (licence key refused?)' : '';
    throw new DownloadError(`${redactUrl(url)}: HTTP ${res.status} ${res.statusText}`.trimEnd() + hint);
  }
  const max = opts.maxBytes ?? 1 << 30;
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > max) throw new DownloadError(`${redactUrl(url)}: ${declared} bytes is more than the ${max} allowed`);
  let body: Buffer;
  try {
    body = Buffer.from(await res.arrayBuffer());
  } catch (e) {
    throw new DownloadError(`${redactUrl(url)}: download interrupted: ${(e as Error).message}`);
  }
  if (body.length > max) throw new DownloadError(`${redactUrl(url)}: ${body.length} bytes is more than the ${max} allowed`);
  if (Number.isFinite(declared) && body.length !== declared) throw new DownloadError(`${redactUrl(url)}: truncated download (${body.length} of ${declared} bytes)`);
  return {
    status: 'ok',
    url,
    body,
    sha256: createHash('sha256').update(body).digest('hex'),
    etag: res.headers.get('etag') ?? undefined,
    lastModified: res.headers.get('last-modified') ?? undefined,
    contentType: res.headers.get('content-type') ?? undefined,
  };
}

/** Tries the candidates in order; a 404/410 moves on to the next (DB-IP's previous month). */
export async function fetchSource(urls: readonly string[], opts: FetchOptions = {}): Promise<FetchOutcome> {
  const missing: string[] = [];
  for (const url of urls) {
    const r = await fetchOne(url, opts);
    if (r.status !== 'missing') return r;
    missing.push(`${redactUrl(url)} (HTTP ${r.code})`);
  }
  throw new DownloadError(`not found: ${missing.join(', ')}`);
}

function describeNonArchive(body: Buffer, contentType: string | undefined): string {
  const head = body.subarray(0, 512).toString('latin1').trimStart().toLowerCase();
  if (head.startsWith('<!doctype html') || head.startsWith('<html') || /text\/html/i.test(contentType ?? '')) return 'an HTML page';
  if (body.length === 0) return 'empty';
  return `${body.length} bytes starting ${JSON.stringify(body.subarray(0, 16).toString('latin1'))}`;
}

/** The CSV text of a gzipped CSV download; a truncated or non-gzip body is a DownloadError. */
export function gunzipCsv(body: Buffer, what: string, contentType?: string): string {
  if (body.length < 2 || body[0] !== 0x1f || body[1] !== 0x8b) throw new DownloadError(`${what}: not gzip data (${describeNonArchive(body, contentType)})`);
  let text: string;
  try {
    text = gunzipSync(body).toString('utf8');
  } catch (e) {
    throw new DownloadError(`${what}: corrupt gzip data (${(e as Error).message})`);
  }
  checkCsvText(text, what);
  return text;
}

/** The members of a zip download; a truncated or non-zip body is a DownloadError. */
export function unzipDownload(body: Buffer, what: string, contentType?: string): ZipMember[] {
  if (!looksLikeZip(body)) throw new DownloadError(`${what}: not a zip archive (${describeNonArchive(body, contentType)})`);
  try {
    return readZip(body);
  } catch (e) {
    if (e instanceof ZipError) throw new DownloadError(`${what}: ${e.message}`);
    throw e;
  }
}

/**
 * A first look at decompressed CSV before the builder parses it: text with at
 * least one row, not an HTML page that was gzipped. The builder then refuses
 * any row it cannot parse, naming the line.
 */
export function checkCsvText(text: string, what: string): void {
  const start = text.trimStart();
  if (start === '') throw new DownloadError(`${what}: empty CSV (no rows)`);
  if (/^<(!doctype|html)/i.test(start)) throw new DownloadError(`${what}: an HTML page, not CSV`);
  if (text.includes('\0')) throw new DownloadError(`${what}: binary data, not CSV`);
}
