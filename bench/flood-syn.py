#!/usr/bin/env python3
"""bench:flood's generator: TCP SYNs from random sources, as fast as one core sends.

flood-syn.py DST DPORT SECONDS [SEED]
A raw socket (IP_HDRINCL); every packet has a random source address (never
0/8, 127/8, 198.51.100/24, 224/3: those are martians or the client's own
link) and a random source port, so each one is a flow no conntrack has seen.
The TCP checksum is kept right incrementally (the base sum of the fixed
fields plus the varying words), so conntrack's checksum check passes. The
kernel fills the IP checksum. Prints "sent=N seconds=S".
"""
import random
import socket
import struct
import sys
import time


def main():
    dst = sys.argv[1]
    dport = int(sys.argv[2])
    seconds = float(sys.argv[3])
    rnd = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else None)
    d = socket.inet_aton(dst)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    # IPv4 (20) + TCP (20), SYN, window 64240
    pkt = bytearray(40)
    struct.pack_into("!BBHHHBBH4s4s", pkt, 0, 0x45, 0, 40, 0, 0, 64, 6, 0, b"\0\0\0\0", d)
    struct.pack_into("!HHIIBBHHH", pkt, 20, 0, dport, 0, 0, 0x50, 0x02, 64240, 0, 0)
    # one's-complement sum of what never changes: pseudo-header dst, proto, length; dport, offset/flags, window
    dw = struct.unpack("!HH", d)
    base = dw[0] + dw[1] + 6 + 20 + dport + 0x5002 + 64240
    addr = (dst, 0)
    pack = struct.pack_into
    getrandbits = rnd.getrandbits
    sent = 0
    deadline = time.monotonic() + seconds
    while True:
        if (sent & 1023) == 0 and time.monotonic() >= deadline:
            break
        src = getrandbits(32)
        top = src >> 24
        if top == 0 or top == 127 or top >= 224 or (src >> 8) == 0xC63364:
            continue
        sport = 1024 + (src & 0xFBFF)
        seq = getrandbits(32)
        c = base + (src >> 16) + (src & 0xFFFF) + sport + (seq >> 16) + (seq & 0xFFFF)
        c = (c & 0xFFFF) + (c >> 16)
        c = (c & 0xFFFF) + (c >> 16)
        pack("!I", pkt, 12, src)
        pack("!HHI", pkt, 20, sport, dport, seq)
        pack("!H", pkt, 36, ~c & 0xFFFF)
        try:
            s.sendto(pkt, addr)
        except OSError:
            pass
        sent += 1
    print(f"sent={sent} seconds={seconds}")


main()
