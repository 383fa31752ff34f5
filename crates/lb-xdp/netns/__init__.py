"""Real-kernel tests and the demo of ``lbd``: a one-armed balancer on one
L2 segment built from network namespaces (:mod:`.topology`), agents that
run HTTP clients, servers and captures inside them (:mod:`.agent`), a
pcap reader (:mod:`.pcap`), ``lbd`` itself (:mod:`.lbd`), and a SYN flood
with a legitimate client beside it (:mod:`.flood`).

Needs root and iproute2, ethtool, tcpdump, iputils-ping and curl (Debian
packages of those names; scripts/setup installs them)."""

from .lbd import Lbd, LbdError, Metrics, config
from .pcap import Segment, tcp_segments
from .ttm_agent import AgentRunError, TtmAgent
from .topology import (
    CLIENT,
    CLIENT6,
    LB,
    LIPS,
    RS,
    VIP,
    VIP6,
    Agent,
    AgentError,
    Topology,
    TopologyError,
    preflight,
)

__all__ = [
    "CLIENT", "CLIENT6", "LB", "LIPS", "RS", "VIP", "VIP6",
    "Agent", "AgentError", "AgentRunError", "Lbd", "LbdError", "Metrics", "Segment", "Topology",
    "TtmAgent",
    "TopologyError", "config", "preflight", "tcp_segments",
]
