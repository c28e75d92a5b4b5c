/**
 * The control socket's wire protocol as a client needs it: the default path,
 * the request line, the chunk size of streamed input. Apart from
 * router/control.ts (the server) so that `xtr` (router/cli.ts), iptaccount
 * and the geoip tools load a few lines instead of the server and what it
 * imports: a CLI call should cost little more than Node's own start
 * (issue 13, bench:cli).
 */

export const DEFAULT_SOCKET = '/run/xtr/xtr.sock';

/** Characters of input per chunk line when a client streams a request's input. */
export const INPUT_CHUNK_CHARS = 32 * 1024;

export interface ControlRequest {
  cmd: string;
  args: string[];
  input: string | null;
  /**
   * The input follows the request line as lines that are each a JSON string
   * (a chunk of it), ended by a line `null`: how the CLI sends a large
   * iptables-restore file without one line of its whole size.
   */
  inputStream?: boolean;
}
