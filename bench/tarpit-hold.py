#!/usr/bin/python3
"""Opens as many TCP connections as asked to DST on a range of ports, from the
given source addresses, and holds them until told to let go (a line on
stdin): the load tool of bench/tarpit.ts.

Connections are non-blocking connects watched with epoll, at most
--outstanding in flight; a connect counts as established when the socket
turns writable with SO_ERROR 0 (the handshake completed). Prints one
`key=value` line when done opening (seconds = until the last connection
completed), then holds; on stdin EOF or a line it
closes every socket with SO_LINGER 0 (a RST, so nothing lingers in
FIN_WAIT) and exits.

  tarpit-hold.py --dst 203.0.113.2 --ports 7000-7999 --count 10000 --src 198.51.100.2,198.51.100.3
"""
import argparse
import errno
import resource
import select
import socket
import struct
import sys
import time

ap = argparse.ArgumentParser()
ap.add_argument('--dst', required=True)
ap.add_argument('--ports', required=True)
ap.add_argument('--count', type=int, required=True)
ap.add_argument('--src', default='')
ap.add_argument('--port-offset', type=int, default=0, help='start the port rotation here (several processes spread over the range)')
ap.add_argument('--outstanding', type=int, default=2000)
ap.add_argument('--timeout', type=float, default=120.0)
a = ap.parse_args()

lo, hi = (int(x) for x in a.ports.split('-'))
srcs = [s for s in a.src.split(',') if s] or [None]
fam = socket.AF_INET6 if ':' in a.dst else socket.AF_INET
need = a.count + 100
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < need:
    if hard < need:
        sys.exit(f'tarpit-hold.py: {a.count} sockets need {need} descriptors, the hard limit is {hard}: run more processes')
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))

ep = select.epoll()
last_ok = 0.0
pending = {}
held = []
failed = 0
started = 0
t0 = time.monotonic()
deadline = t0 + a.timeout
k = 0
while (started < a.count or pending) and time.monotonic() < deadline:
    while started < a.count and len(pending) < a.outstanding:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setblocking(False)
        src = srcs[k % len(srcs)]
        if src is not None:
            s.setsockopt(socket.SOL_IP, 24, 1)  # IP_BIND_ADDRESS_NO_PORT: the port is chosen per 4-tuple at connect
            s.bind((src, 0))
        port = lo + (a.port_offset + k // len(srcs)) % (hi - lo + 1)
        k += 1
        r = s.connect_ex((a.dst, port))
        if r not in (0, errno.EINPROGRESS):
            failed += 1
            s.close()
            started += 1
            continue
        ep.register(s.fileno(), select.EPOLLOUT)
        pending[s.fileno()] = s
        started += 1
    for fd, ev in ep.poll(0.2):
        s = pending.pop(fd)
        ep.unregister(fd)
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            held.append(s)
            last_ok = time.monotonic() - t0
        else:
            failed += 1
            s.close()
secs = last_ok  # when the last connection completed (stragglers run to --timeout)
for s in pending.values():
    failed += 1
    s.close()
print(f'established={len(held)} failed={failed} seconds={secs:.2f}', flush=True)
sys.stdin.readline()
linger = struct.pack('ii', 1, 0)
for s in held:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    s.close()
print('closed', flush=True)
