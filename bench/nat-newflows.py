#!/usr/bin/env python3
"""bench:nat's new-flow generator: one UDP datagram per new flow.

nat-newflows.py SRC1[,SRC2...] DST DPORT SECONDS [COUNT]
Sends from a raw socket (IP_HDRINCL) with the source port advancing by one per
packet over 1024..65535 and the source address cycling through SRC list, so
each packet is a flow conntrack has not seen (until the ports wrap). The UDP
checksum is 0 (none, IPv4). Prints "sent=N".
"""
import socket
import struct
import sys
import time


def main():
    srcs = [socket.inet_aton(s) for s in sys.argv[1].split(',')]
    dst = socket.inet_aton(sys.argv[2])
    dport = int(sys.argv[3])
    seconds = float(sys.argv[4])
    count = int(sys.argv[5]) if len(sys.argv) > 5 else 1 << 62
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    payload = b"x" * 18
    ulen = 8 + len(payload)
    tot = 20 + ulen
    pkts = []
    for src in srcs:
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, tot, 0, 0, 64, 17, 0, src, dst))
        pkts.append(ip)
    buf = bytearray(tot)
    addr = (sys.argv[2], 0)
    sent = 0
    port = 1024
    si = 0
    deadline = time.monotonic() + seconds
    while True:
        if sent >= count or ((sent & 255) == 0 and time.monotonic() >= deadline):
            break
        buf[0:20] = pkts[si]
        struct.pack_into("!HHHH", buf, 20, port, dport, ulen, 0)
        buf[28:] = payload
        try:
            s.sendto(buf, addr)
        except OSError:
            pass
        sent += 1
        si += 1
        if si == len(pkts):
            si = 0
            port = port + 1 if port < 65535 else 1024
    print(f"sent={sent}")


main()
