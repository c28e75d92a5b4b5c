#!/usr/bin/python3
"""A masscan-style SYN scan for bench:detect: raw IPv4 TCP SYNs with valid
checksums from SOURCES random addresses (in 10.0.0.0/8), each to random
destination ports, sent round-robin over the sources at RATE packets/s for
DURATION seconds. Packets are built once up front; the loop only sends.

  detect-scan.py DST SOURCES RATE DURATION SEED

Prints `sent=N sources=S seconds=T` and each source address, one per line,
after `sources:`.
"""
import random, socket, struct, sys, time

dst, nsrc, rate, duration, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
rng = random.Random(seed)
PORTS_PER_SOURCE = 64


def csum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff


d = socket.inet_aton(dst)
sources = set()
while len(sources) < nsrc:
    sources.add((10 << 24) | rng.randrange(1, 1 << 24))
sources = sorted(sources)
packets = []  # round-robin order: port k of every source, then port k+1 ...
per_source = []
for a in sources:
    s = struct.pack('!I', a)
    ports = rng.sample(range(1, 65536), PORTS_PER_SOURCE)
    sport = rng.randrange(1024, 65536)
    pk = []
    for p in ports:
        seq = rng.randrange(0, 1 << 32)
        tcp = struct.pack('!HHIIBBHHH', sport, p, seq, 0, 5 << 4, 0x02, 1024, 0, 0)
        c = csum(s + d + struct.pack('!BBH', 0, 6, len(tcp)) + tcp)
        tcp = tcp[:16] + struct.pack('!H', c) + tcp[18:]
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 40, rng.randrange(0, 65536), 0, 64, 6, 0, s, d)
        ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
        pk.append(ip + tcp)
    per_source.append(pk)
for k in range(PORTS_PER_SOURCE):
    for pk in per_source:
        packets.append(pk[k])

sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
target = (dst, 0)
start = time.monotonic()
end = start + duration
sent = 0
n = len(packets)
batch = max(1, int(rate / 1000))
while True:
    now = time.monotonic()
    if now >= end:
        break
    due = int((now - start) * rate)
    if sent >= due:
        time.sleep(min(0.001, end - now))
        continue
    for _ in range(min(batch, due - sent)):
        try:
            sock.sendto(packets[sent % n], target)
        except (BlockingIOError, OSError):
            pass
        sent += 1
print('sent=%d sources=%d seconds=%.2f' % (sent, nsrc, time.monotonic() - start))
print('sources:')
for a in sources:
    print(socket.inet_ntoa(struct.pack('!I', a)))
