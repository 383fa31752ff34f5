"""Every line of ttm-core's vector file through the Python API."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import NamedTuple, Optional, Type

import pytest

import ttm

VECTORS = Path(__file__).resolve().parents[2] / "ttm-core" / "tests" / "vectors" / "ttm.txt"

#: The vector file's error names and the exception class of each.
ERRORS: dict[str, Type[ttm.TtmError]] = {
    "truncated": ttm.Truncated,
    "bad_length": ttm.BadLength,
    "kind_not_accepted": ttm.KindNotAccepted,
    "trailing_bytes": ttm.TrailingBytes,
    "malformed_option": ttm.MalformedOption,
    "option_overrun": ttm.OptionOverrun,
    "bad_family": ttm.BadFamily,
    "nonzero_padding": ttm.NonZeroPadding,
}


class Vector(NamedTuple):
    """One line: ``TYPE NAME ACCEPT HEX RESULT``."""

    type: str
    name: str
    kinds: tuple[int, ...]
    data: bytes
    result: tuple[str, ...]


def load() -> list[Vector]:
    """Parse the file as its header describes it."""
    vectors = []
    for line in VECTORS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, name, accept, hexdata, *result = line.split()
        kinds = () if accept == "-" else tuple(int(k) for k in accept.split(","))
        data = b"" if hexdata == "-" else bytes.fromhex(hexdata)
        if kind == "record" and sys.byteorder == "big" and len(data) >= 2:
            # The file's records are written for a little-endian host.
            data = data[1::-1] + data[2:]
        vectors.append(Vector(kind, name, kinds, data, tuple(result)))
    return vectors


ALL = load()


def test_the_file_is_all_there() -> None:
    """The parse found every kind of vector (a broken path finds none)."""
    counts = {t: sum(v.type == t for v in ALL) for t in ("option", "find", "record")}
    assert sum(counts.values()) == len(ALL) >= 30
    assert all(n >= 5 for n in counts.values()), counts


def decode(v: Vector) -> Optional[ttm.Peer]:
    """Run the vector through the function its type names."""
    if v.type == "option":
        return ttm.decode_option(v.data, kinds=v.kinds)
    if v.type == "find":
        return ttm.find_option(v.data, kinds=v.kinds)
    if v.type == "record":
        return ttm.decode_peer_record(v.data)
    raise AssertionError(f"unknown vector type {v.type}")


@pytest.mark.parametrize("v", ALL, ids=[f"{v.type}-{v.name}" for v in ALL])
def test_vector(v: Vector) -> None:
    """The line's result: the address, kind or family, none, or the error class."""
    status, *rest = v.result
    if status == "err":
        (name,) = rest
        with pytest.raises(ERRORS[name]) as info:
            decode(v)
        assert type(info.value) is ERRORS[name]
        assert isinstance(info.value, ValueError)
        return
    peer = decode(v)
    if status == "none":
        assert peer is None
        return
    assert status == "ok"
    number, ip, port = rest
    assert peer is not None
    assert peer.ip == ipaddress.ip_address(ip)
    assert peer.port == int(port)
    assert peer.source == "ttm"
    if v.type == "record":
        assert peer.kind is None
        assert {2: 4, 10: 6}[int(number)] == peer.ip.version
    else:
        assert peer.kind == int(number)


@pytest.mark.parametrize(
    "v",
    [v for v in ALL if v.result[0] == "ok" and v.type != "find"],
    ids=lambda v: f"{v.type}-{v.name}",
)
def test_decoded_vector_encodes_to_the_same_bytes(v: Vector) -> None:
    """Where a vector decodes, encoding the result gives back its bytes."""
    peer = decode(v)
    assert peer is not None
    if v.type == "option":
        assert peer.kind is not None
        assert ttm.encode_option(peer.ip, peer.port, kind=peer.kind) == v.data
    else:
        assert ttm.encode_peer_record(peer.ip, peer.port) == v.data
