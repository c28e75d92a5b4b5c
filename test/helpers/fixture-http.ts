/**
 * A small HTTP server over a directory of fixture files, standing in for
 * download.db-ip.com and download.maxmind.com in the GeoIP download tests:
 * GET /path serves DIR/path with an ETag (the content's SHA-256) and
 * Last-Modified (its mtime), answers If-None-Match / If-Modified-Since with
 * 304, `*.html` as text/html, and MaxMind's
 * /app/geoip_download?edition_id=E&license_key=K&suffix=zip as DIR/app/E.zip
 * when K equals DIR/license.key (else 401). Files are read at each request,
 * so a test changes what is served by rewriting them. One line per request
 * (`GET /path 200`) goes to the log callback.
 *
 * In-process: `await serveFixtures(dir)`; in a namespace:
 * `node --import tsx test/helpers/fixture-http.ts DIR HOST PORT` (prints `listening PORT`).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize } from 'node:path';

export interface FixtureServer {
  readonly server: Server;
  readonly port: number;
  readonly base: string;
  /** Requests so far, as `GET /path STATUS`. */
  readonly requests: string[];
  /** When false, validators are ignored (always 200): a server without conditional GET. */
  conditional: boolean;
  close(): Promise<void>;
}

export function fixtureServer(dir: string, log: (line: string) => void = () => undefined): { server: Server; requests: string[]; opts: { conditional: boolean } } {
  const requests: string[] = [];
  const opts = { conditional: true };
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fixture');
    const answer = (status: number, body?: Buffer | string, headers: Record<string, string> = {}) => {
      const line = `${req.method} ${url.pathname} ${status}`;
      requests.push(line);
      log(line);
      res.writeHead(status, headers);
      res.end(body);
    };
    let rel = url.pathname;
    if (rel === '/app/geoip_download') {
      const keyFile = join(dir, 'license.key');
      const key = existsSync(keyFile) ? readFileSync(keyFile, 'utf8').trim() : null;
      if (key === null || url.searchParams.get('license_key') !== key) return answer(401, 'Invalid license key\n', { 'content-type': 'text/plain' });
      rel = `/app/${url.searchParams.get('edition_id') ?? ''}.zip`;
    }
    const path = join(dir, normalize(rel).replace(/^(\.\.[/\\])+/, ''));
    if (!existsSync(path) || !statSync(path).isFile()) return answer(404, '<html><body>404 Not Found</body></html>\n', { 'content-type': 'text/html' });
    const body = readFileSync(path);
    const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
    const lastModified = statSync(path).mtime.toUTCString();
    if (opts.conditional) {
      const inm = req.headers['if-none-match'];
      const ims = req.headers['if-modified-since'];
      if ((inm !== undefined && inm === etag) || (inm === undefined && ims !== undefined && Date.parse(ims) >= Date.parse(lastModified))) {
        return answer(304, undefined, { etag, 'last-modified': lastModified });
      }
    }
    const type = path.endsWith('.html') ? 'text/html' : path.endsWith('.zip') ? 'application/zip' : 'application/gzip';
    answer(200, body, { etag, 'last-modified': lastModified, 'content-type': type, 'content-length': String(body.length) });
  });
  return { server, requests, opts };
}

/** Starts the server on 127.0.0.1 (an ephemeral port). */
export async function serveFixtures(dir: string): Promise<FixtureServer> {
  const { server, requests, opts } = fixtureServer(dir);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    base: `http://127.0.0.1:${port}`,
    requests,
    get conditional() {
      return opts.conditional;
    },
    set conditional(v: boolean) {
      opts.conditional = v;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

if (process.argv[1] && /fixture-http\.[jt]s$/.test(process.argv[1])) {
  const [dir, host, port] = process.argv.slice(2);
  const { server } = fixtureServer(dir!, (line) => process.stdout.write(`${line}\n`));
  server.listen(Number(port), host, () => process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`));
}
