/**
 * xtr's version, as package.json states it, for every command's `--version`.
 * Read at first use from the package.json next to the source tree (xt/ in a
 * checkout, dist/xt/ in a build), so the number is written in one place.
 */
import { readFileSync } from 'node:fs';

let cached: string | null = null;

export function xtrVersion(): string {
  if (cached !== null) return cached;
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'xtr' && typeof pkg.version === 'string') return (cached = pkg.version);
    } catch {
      // not this one
    }
  }
  return (cached = 'unknown');
}

/** The line every tool prints for `--version`: `TOOL (xtr) VERSION`. */
export function versionLine(tool: string): string {
  return `${tool} (xtr) ${xtrVersion()}\n`;
}

/**
 * Makes a closed reader (`tool | head -1`) end the process quietly, as a C
 * tool killed by SIGPIPE would, instead of an EPIPE stack trace.
 */
export function quietEpipe(): void {
  for (const s of [process.stdout, process.stderr]) {
    s.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(0);
      throw e;
    });
  }
}

/**
 * Every tool's `-h`/`--help` and `-V`/`--version` (checked before its own
 * option parser, which may know only upstream's short options): prints the
 * help or the version line and returns exit status 0, or null when `args`
 * asks for neither.
 */
export function helpOrVersion(tool: string, args: readonly string[], help: string): 0 | null {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(help);
    return 0;
  }
  if (args.includes('--version') || args.includes('-V')) {
    process.stdout.write(versionLine(tool));
    return 0;
  }
  return null;
}
