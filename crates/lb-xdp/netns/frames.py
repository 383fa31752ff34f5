"""Ethernet frames built by hand, right or deliberately wrong, for the
tests that send what no stack would (sent with the agent's
``send_frames``). Standard library only."""

from __future__ import annotations

import ipaddress
import struct

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
TCP, UDP, ICMP, ICMPV6, HOPOPTS = 6, 17, 1, 58, 0
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ethernet(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac(dst) + mac(src) + struct.pack("!H", ethertype) + payload


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        return s.packed + d.packed + struct.pack("!BBH", 0, proto, length)
    return s.packed + d.packed + struct.pack("!IxxxB", length, proto)


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int = 1000, ack: int = 0,
        payload: bytes = b"", offset: int = 5, bad_checksum: bool = False) -> bytes:
    """A TCP segment with no options (``offset`` is the data offset field,
    in words, as written); its checksum right unless ``bad_checksum``."""
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset << 4, flags, 65535, 0, 0)
    seg = head + payload
    csum = checksum(_pseudo(src, dst, TCP, len(seg)) + seg) ^ (0x5555 if bad_checksum else 0)
    return seg[:16] + struct.pack("!H", csum) + seg[18:]


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    head = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)
    dgram = head + payload
    csum = checksum(_pseudo(src, dst, UDP, len(dgram)) + dgram) or 0xFFFF
    return dgram[:6] + struct.pack("!H", csum) + dgram[8:]


def icmp(kind: int, code: int = 0, rest: bytes = b"\0\x01\0\x01", payload: bytes = b"") -> bytes:
    msg = struct.pack("!BBH", kind, code, 0) + rest + payload
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def ipv4(src: str, dst: str, proto: int, payload: bytes, options: bytes = b"",
         frag: int = 0, total: int | None = None, ihl: int | None = None,
         bad_checksum: bool = False, ident: int = 1) -> bytes:
    """An IPv4 header and ``payload``; ``frag`` is the flags and fragment
    offset field, ``total`` and ``ihl`` override the lengths written."""
    hlen = 20 + len(options)
    if ihl is None:
        ihl = hlen // 4
    if total is None:
        total = hlen + len(payload)
    head = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, ident, frag, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    head += options
    csum = checksum(head) ^ (0x5555 if bad_checksum else 0)
    return head[:10] + struct.pack("!H", csum) + head[12:] + payload


def ipv6(src: str, dst: str, next_header: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), next_header, 64,
                       ipaddress.IPv6Address(src).packed,
                       ipaddress.IPv6Address(dst).packed) + payload


def hop_by_hop(next_header: int) -> bytes:
    """An empty IPv6 hop-by-hop options header (8 bytes: PadN)."""
    return struct.pack("!BB", next_header, 0) + b"\x01\x04\0\0\0\0"
