"""A tiny reader of classic pcap files (Ethernet, IPv4/IPv6, TCP): each TCP
segment's time, addresses, ports, flags and raw option bytes."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Union

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
LINKTYPE_ETHERNET = 1
# IPv6 extension headers walked over to reach TCP.
_IPV6_EXT = {0, 43, 60}


class PcapError(ValueError):
    pass


@dataclass(frozen=True)
class Segment:
    time: float
    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    options: bytes
    payload_len: int

    def has(self, flags: int) -> bool:
        return self.flags & flags == flags

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def is_ack(self) -> bool:
        return bool(self.flags & ACK)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    def flag_str(self) -> str:
        return "".join(c for c, f in zip("FSRPA", (FIN, SYN, RST, PSH, ACK)) if self.flags & f) or "."

    def __str__(self) -> str:
        return (f"{self.time:.6f} {self.src}:{self.sport} > {self.dst}:{self.dport} "
                f"[{self.flag_str()}] opts={self.options.hex()} len={self.payload_len}")


def frames(path: Union[str, Path]) -> Iterator[tuple[float, bytes]]:
    """Every frame of a classic pcap file, with its time."""
    data = Path(path).read_bytes()
    if len(data) < 24:
        raise PcapError(f"{path}: {len(data)} bytes, no pcap header")
    try:
        endian, unit = _MAGICS[data[:4]]
    except KeyError:
        raise PcapError(f"{path}: not a classic pcap file (magic {data[:4].hex()})") from None
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0x0FFFFFFF
    if linktype != LINKTYPE_ETHERNET:
        raise PcapError(f"{path}: link type {linktype}, only Ethernet (1) is read")
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + incl > len(data):
            break  # a frame cut by a stopped writer
        yield sec + frac * unit, data[off:off + incl]
        off += incl


def tcp_segments(path: Union[str, Path]) -> list[Segment]:
    """Every IPv4/IPv6 TCP segment of the capture, in order."""
    out = []
    for t, frame in frames(path):
        seg = parse_frame(t, frame)
        if seg is not None:
            out.append(seg)
    return out


def parse_frame(t: float, frame: bytes) -> Union[Segment, None]:
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    off = 14
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        ethertype = struct.unpack("!H", frame[off + 2:off + 4])[0]
        off += 4
    if ethertype == 0x0800:
        ip = frame[off:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            return None
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        frag = struct.unpack("!H", ip[6:8])[0]
        if ip[9] != 6 or frag & 0x1FFF:
            return None
        src = str(ipaddress.IPv4Address(ip[12:16]))
        dst = str(ipaddress.IPv4Address(ip[16:20]))
        l4 = ip[ihl:total]
    elif ethertype == 0x86DD:
        ip = frame[off:]
        if len(ip) < 40 or ip[0] >> 4 != 6:
            return None
        nxt = ip[6]
        plen = struct.unpack("!H", ip[4:6])[0]
        src = str(ipaddress.IPv6Address(ip[8:24]))
        dst = str(ipaddress.IPv6Address(ip[24:40]))
        l4 = ip[40:40 + plen]
        while nxt in _IPV6_EXT and len(l4) >= 2:
            nxt, hlen = l4[0], (l4[1] + 1) * 8
            l4 = l4[hlen:]
        if nxt != 6:
            return None
    else:
        return None
    if len(l4) < 20:
        return None
    sport, dport, seq, ack, off_flags = struct.unpack("!HHIIH", l4[:14])
    doff = (off_flags >> 12) * 4
    if doff < 20 or doff > len(l4):
        return None
    return Segment(t, src, dst, sport, dport, seq, ack, off_flags & 0x1FF, bytes(l4[20:doff]),
                   len(l4) - doff)
