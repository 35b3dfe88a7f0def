#!/usr/bin/env python3
"""Userspace IP-in-IP decapsulator for a TUN-mode real server (RFC 2003), for the lab.

This machine's kernel has no ipip module, so a real server cannot decapsulate in the kernel. This
program does it instead: it reads the IPIP packets addressed to this host from a raw socket of
protocol 4, strips the outer header and writes the inner packet (client -> VIP) to a TUN device,
from which the kernel receives it as if it had arrived on a network device. The real server's reply
leaves through its ordinary route, straight to the client.

A raw socket bound to protocol 4 also stops the kernel from answering each IPIP packet with ICMP
"protocol unreachable" (raw_local_deliver claims the packet).

Usage: ipip-decap.py [--tun ipip0] [--ready FILE]
  --tun    an existing TUN device (ip tuntap add dev ipip0 mode tun), or one to create
  --ready  a file written once the sockets are open (the lab waits for it)
Counters go to stderr on SIGTERM/SIGINT. Python 3 standard library only.
"""

import argparse
import fcntl
import os
import signal
import socket
import struct
import sys

TUNSETIFF = 0x400454CA  # _IOW('T', 202, int), linux/if_tun.h
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000  # no 4-byte packet-information prefix: the device carries bare IP packets
IPPROTO_IPIP = 4


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    return fd


def inner_packet(outer):
    """The inner IPv4 packet of an IPIP packet, or None if it is not a well-formed one."""
    if len(outer) < 20 or outer[0] >> 4 != 4 or outer[9] != IPPROTO_IPIP:
        return None
    ihl = (outer[0] & 0x0F) * 4
    total = struct.unpack("!H", outer[2:4])[0]
    if ihl < 20 or total > len(outer) or total < ihl + 20:
        return None
    inner = outer[ihl:total]
    if inner[0] >> 4 != 4:
        return None
    inner_total = struct.unpack("!H", inner[2:4])[0]
    if inner_total != len(inner):
        return None
    return inner


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tun", default="ipip0")
    ap.add_argument("--ready")
    args = ap.parse_args()

    tun = open_tun(args.tun)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    counts = {"decapsulated": 0, "malformed": 0}

    def stop(_sig, _frame):
        print(f"ipip-decap: {counts}", file=sys.stderr, flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write(f"{os.getpid()}\n")
    while True:
        # A raw IPv4 socket hands over the whole packet, outer header included.
        outer = raw.recv(65535)
        inner = inner_packet(outer)
        if inner is None:
            counts["malformed"] += 1
            continue
        os.write(tun, inner)
        counts["decapsulated"] += 1


if __name__ == "__main__":
    main()
