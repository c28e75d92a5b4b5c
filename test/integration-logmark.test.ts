/**
 * LOGMARK through xtr's logger in a running router: a ping from the client
 * through a `-j LOGMARK` rule in mangle FORWARD (conntrack on, through a
 * conntrack match in the same table) writes one line per packet into the
 * router's log, in xt_LOGMARK's format with the flow's state.
 */
import test from 'ava';
import { startLab, uniquePrefix, waitFor } from './helpers/netns.js';

test('LOGMARK lines in the router log: marks, hook, flow state and lifetime per packet', async (t) => {
  t.timeout(120_000);
  const lab = await startLab({ prefix: uniquePrefix('xw2a') });
  try {
    const rules = [
      '*mangle',
      ':PREROUTING ACCEPT [0:0]',
      ':INPUT ACCEPT [0:0]',
      ':FORWARD ACCEPT [0:0]',
      ':OUTPUT ACCEPT [0:0]',
      ':POSTROUTING ACCEPT [0:0]',
      '-A PREROUTING -p icmp -j MARK --set-mark 0x2a',
      '-A FORWARD -p icmp -m conntrack --ctstate NEW,ESTABLISHED -j LOGMARK --log-prefix "lm: " --log-level 6',
      'COMMIT',
      '',
    ].join('\n');
    const r = await lab.router.cli(['iptables-restore'], rules);
    t.is(r.code, 0, r.stderr);
    await lab.run('c', ['ping', '-c', '2', '-i', '0.2', '-W', '2', '203.0.113.2'], { timeoutMs: 20_000 });
    const lines = () => lab.router.log().split('\n').filter((l) => l.includes('lm: iif='));
    t.true(await waitFor(() => lines().length >= 4, 5000), lab.router.log().slice(-2000));
    const msgs = lines().map((l) => {
      try {
        return String((JSON.parse(l) as { msg?: string }).msg ?? l);
      } catch {
        return l;
      }
    });
    t.log(msgs.join('\n'));
    // request (ORIGINAL, NEW then ESTABLISHED) and reply (REPLY) in xt_LOGMARK's words
    t.regex(msgs[0], /^<6>lm: iif=\d+ hook=FORWARD nfmark=0x2a secmark=0x0 classify=0x0 ctdir=ORIGINAL ct=0x0{8}[0-9a-f]{8} ctmark=0x0 ctstate=NEW ctstatus= lifetime=\d+s$/);
    t.regex(msgs[1], /^<6>lm: iif=\d+ hook=FORWARD nfmark=0x2a .* ctdir=REPLY ct=0x0{8}[0-9a-f]{8} ctmark=0x0 ctstate=ESTABLISHED ctstatus=SEEN_REPLY,CONFIRMED lifetime=\d+s$/);
    t.is(/ct=(\S+)/.exec(msgs[0])![1], /ct=(\S+)/.exec(msgs[1])![1], 'one flow, one id');
  } finally {
    await lab.stop();
  }
});
