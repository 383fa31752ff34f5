// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// ttm-agent's BPF programs: the real-server side of the TTM option without
// a kernel module. Attached to a cgroup v2 by `ttm-agent run`; they act on
// the TCP sockets of the processes in that cgroup (and its descendants).
//
// - `ttm_sockops` (sock_ops) reads the TTM option from the segment that
//   completes the handshake of a passively opened connection
//   (BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB). When that segment has none (the
//   third ACK was lost or could not carry it), the listener's
//   BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG, inherited by the new
//   socket, makes the kernel call it again for later segments with an
//   option it does not know (BPF_SOCK_OPS_PARSE_HDR_OPT_CB). The client
//   address is believed only when the connection comes from the balancer's
//   local addresses (`ttm_lb_ranges`): anyone else could write the option.
//   The peer is kept in socket storage (`ttm_socks`), freed with the socket.
// - `ttm_getsockopt` (cgroup/getsockopt) answers getsockopt(SOL_IP,
//   TTM_SO_GET_PEER = 1345) with the 20-byte peer record of ttm-core: af (2
//   or 10, host order), port (network order), address (16 bytes, IPv4 in
//   the first 4). A socket without a peer keeps the kernel's answer
//   (ENOPROTOOPT), as on a host with no decoder.
// - `ttm_getpeername4` / `ttm_getpeername6` (cgroup/getpeername4/6) make
//   getpeername() and accept() return the client when its family is the
//   socket's (4to4, on IPv4 or v4-mapped IPv6 sockets; 6to6). A 6to4
//   client cannot be an IPv4 socket's peer: there getsockopt is the way,
//   as the product FAQ says.
//
// The option is read from the TCP header directly (skb_data..skb_data_end
// covers it in these callbacks): bpf_load_hdr_opt() will not search for
// kinds 253 and 254 without an RFC 6994 magic, which the TOA family of
// options does not have. The walk is a bounded loop over a copy of the at
// most 40 option bytes, shaped so that the verifier's work stays small
// (see find_option); it needs no bpf_loop (Linux 5.17), so that the 5.10
// and 5.15 kernels of common server distributions load it.
//
// Built by crates/ttm-agent/build.rs with `clang -O2 -g -target bpf`.

#include <linux/bpf.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOL_IP 0
#define TTM_SO_GET_PEER 1345

#define TTM_V4_LEN 8
#define TTM_V6_LEN 20
#define TCP_MAX_OPTIONS 40

// The peer record, exactly as getsockopt returns it (ttm-core's
// PeerRecord): 20 bytes.
struct ttm_peer {
	__u16 af;
	__be16 port;
	__u8 addr[16];
};

// The option kinds believed: a bitmap of 256 bits, set by ttm-agent at
// load time (--kinds; 254 by default).
volatile const __u8 ttm_kinds[32] = {};

// What the agent keeps for a socket, in socket storage (freed with the
// socket). It exists only while the option is being looked for and, after
// that, only for a socket whose client was believed.
struct ttm_sock {
	struct ttm_peer peer;
	// 1 once `peer` holds a believed client.
	__u32 kept;
	// Where the next TCP option starts, during find_option's walk (see
	// there why it lives here).
	__u32 cursor;
};

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct ttm_sock);
} ttm_socks SEC(".maps");

// The balancer's local-address ranges: IPv4 as IPv4-mapped IPv6
// (::ffff:a.b.c.d), prefix lengths over 128 bits.
struct ttm_range {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1024);
	__type(key, struct ttm_range);
	__type(value, __u8);
} ttm_lb_ranges SEC(".maps");

// Counters, per CPU; `ttm-agent status` sums and names them (keep the
// order in step with src/stats.rs).
enum ttm_stat {
	// Passively opened connections whose handshake completed.
	STAT_CONNECTIONS = 0,
	// Options of a believed kind seen on those connections.
	STAT_SEEN = 1,
	// Peers kept: the option came from a balancer's local address.
	STAT_ACCEPTED = 2,
	// Options refused: the connection came from outside the ranges.
	STAT_REFUSED_SOURCE = 3,
	// Options of a believed kind whose length is neither 8 nor 20.
	STAT_MALFORMED = 4,
	// Peers found in a segment after the one that completed the
	// handshake.
	STAT_LATE = 5,
	// getsockopt(SOL_IP, 1345) calls answered.
	STAT_GETSOCKOPT = 6,
	// getpeername()/accept() results rewritten to the client.
	STAT_GETPEERNAME = 7,
	STAT_COUNT = 8,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} ttm_stats SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u64 *n = bpf_map_lookup_elem(&ttm_stats, &which);
	if (n)
		*n += 1;
}

static __always_inline int kind_believed(__u8 kind)
{
	return (ttm_kinds[kind >> 3] >> (kind & 7)) & 1;
}

enum found {
	// No option of a believed kind in this segment.
	FOUND_NONE = 0,
	// One, decoded into the peer.
	FOUND_PEER = 1,
	// One with a wrong length (counted).
	FOUND_MALFORMED = 2,
};

// The first option of a believed kind in the TCP header at
// skb_data..skb_data_end, decoded into `peer`.
//
// Written for the verifier: the walk goes over the positions 0..39 of the
// options area, each a constant to the verifier, and reads every byte at
// a constant offset. The one thing carried from position to position,
// where the next option starts, lives in the socket's storage (`cursor`),
// where the verifier does not follow its value: so the paths of the walk
// meet again at each position and verification stays linear in the 40
// positions. (A walk that carries its cursor in a register or on the
// stack makes the verifier follow every combination of option lengths
// separately, and it gives up at a million instructions.) The storage is
// the socket's own, which no other invocation touches meanwhile.
static __always_inline int find_option(struct bpf_sock_ops *skops, struct ttm_peer *peer,
				       volatile __u32 *cursor)
{
	void *data = (void *)(long)skops->skb_data;
	void *end = (void *)(long)skops->skb_data_end;
	struct tcphdr *th = data;
	__u8 opts[TCP_MAX_OPTIONS + 2] = {};
	__u32 n;

	if ((void *)(th + 1) > end)
		return FOUND_NONE;
	n = th->doff * 4;
	if (n <= sizeof(*th))
		return FOUND_NONE;
	n -= sizeof(*th);

	// Copy the options area to the stack, bounded by 40 bytes and by
	// the end of the header the kernel gave; what is not copied reads
	// as end-of-list.
	__u8 *src = (__u8 *)(th + 1);
	for (int i = 0; i < TCP_MAX_OPTIONS; i++) {
		if (i >= n || (void *)(src + i + 1) > end)
			break;
		opts[i] = src[i];
	}

	// Walk it (RFC 9293 3.1): end of list, no-op, or kind-length-value.
	*cursor = 0;
	for (int p = 0; p < TCP_MAX_OPTIONS; p++) {
		if (p >= n)
			break;
		if (p != *cursor)
			continue;
		__u8 kind = opts[p];
		if (kind == 0)
			break;
		if (kind == 1) {
			*cursor = p + 1;
			continue;
		}
		__u8 len = opts[p + 1];
		if (len < 2 || p + len > n)
			break;
		if (kind_believed(kind)) {
			if (len != TTM_V4_LEN && len != TTM_V6_LEN)
				return FOUND_MALFORMED;
			__u8 *port = (__u8 *)&peer->port;
			// The option lies within the 40 bytes: p + len <= n <= 40.
			if (p + TTM_V4_LEN > TCP_MAX_OPTIONS)
				break;
			port[0] = opts[p + 2];
			port[1] = opts[p + 3];
			if (len == TTM_V4_LEN) {
				peer->af = AF_INET;
				for (int b = 0; b < 4; b++)
					peer->addr[b] = opts[p + 4 + b];
				return FOUND_PEER;
			}
			if (p + TTM_V6_LEN > TCP_MAX_OPTIONS)
				break;
			peer->af = AF_INET6;
			for (int b = 0; b < 16; b++)
				peer->addr[b] = opts[p + 4 + b];
			return FOUND_PEER;
		}
		*cursor = p + len;
	}
	return FOUND_NONE;
}

// Whether the connection's remote end (the balancer's local address, for
// a connection through it) lies in the configured ranges.
static __always_inline int from_balancer(struct bpf_sock_ops *skops)
{
	struct ttm_range key = {.prefixlen = 128};

	if (skops->family == AF_INET) {
		key.addr[10] = 0xff;
		key.addr[11] = 0xff;
		__u32 a = skops->remote_ip4;
		__builtin_memcpy(&key.addr[12], &a, 4);
	} else if (skops->family == AF_INET6) {
		__u32 a[4] = {skops->remote_ip6[0], skops->remote_ip6[1], skops->remote_ip6[2],
			      skops->remote_ip6[3]};
		__builtin_memcpy(key.addr, a, 16);
	} else {
		return 0;
	}
	return bpf_map_lookup_elem(&ttm_lb_ranges, &key) != 0;
}

// Look for the option in this segment; keep the peer if it is believed.
// Returns whether the question is settled for this socket (a peer kept,
// or an option refused), so that later segments need no parsing.
static __always_inline int settle(struct bpf_sock_ops *skops, int late)
{
	struct ttm_peer peer = {};
	struct bpf_sock *sk = skops->sk;

	if (!sk)
		return 0;
	struct ttm_sock *st = bpf_sk_storage_get(&ttm_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return 0;
	if (st->kept)
		return 1;
	int found = find_option(skops, &peer, &st->cursor);
	if (found == FOUND_PEER && from_balancer(skops)) {
		st->peer = peer;
		st->kept = 1;
		count(STAT_SEEN);
		count(STAT_ACCEPTED);
		if (late)
			count(STAT_LATE);
		return 1;
	}
	// Nothing to keep: no storage for this socket.
	bpf_sk_storage_delete(&ttm_socks, sk);
	switch (found) {
	case FOUND_NONE:
		return 0;
	case FOUND_MALFORMED:
		count(STAT_SEEN);
		count(STAT_MALFORMED);
		return 1;
	default:
		count(STAT_SEEN);
		count(STAT_REFUSED_SOURCE);
		return 1;
	}
}

static __always_inline void stop_parsing(struct bpf_sock_ops *skops)
{
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags &
						 ~BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG);
}

SEC("sockops")
int ttm_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		// Inherited by the listener's connections: later segments
		// with an unknown option are parsed until the question is
		// settled.
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
							 BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		count(STAT_CONNECTIONS);
		if (settle(skops, 0))
			stop_parsing(skops);
		break;
	case BPF_SOCK_OPS_PARSE_HDR_OPT_CB:
		if (settle(skops, 1))
			stop_parsing(skops);
		break;
	}
	return 1;
}

// The believed client of a socket, if it has one.
static __always_inline struct ttm_peer *kept_peer(struct bpf_sock *sk)
{
	if (!sk)
		return 0;
	struct ttm_sock *st = bpf_sk_storage_get(&ttm_socks, sk, 0, 0);
	if (!st || !st->kept)
		return 0;
	return &st->peer;
}

SEC("cgroup/getsockopt")
int ttm_getsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->level != SOL_IP || ctx->optname != TTM_SO_GET_PEER)
		return 1;
	struct ttm_peer *peer = kept_peer(ctx->sk);
	if (!peer)
		return 1;
	__u8 *out = ctx->optval;
	// A buffer shorter than the record keeps the kernel's answer.
	if ((void *)(out + sizeof(*peer)) > ctx->optval_end)
		return 1;
	__builtin_memcpy(out, peer, sizeof(*peer));
	// Two 4-byte stores: the verifier refuses the 8-byte one that clang
	// would merge them into.
	*(volatile __s32 *)&ctx->optlen = sizeof(*peer);
	*(volatile __s32 *)&ctx->retval = 0;
	count(STAT_GETSOCKOPT);
	return 1;
}

SEC("cgroup/getpeername4")
int ttm_getpeername4(struct bpf_sock_addr *ctx)
{
	struct ttm_peer *peer = kept_peer(ctx->sk);
	if (!peer || peer->af != AF_INET)
		return 1;
	__u32 a;
	__builtin_memcpy(&a, peer->addr, 4);
	ctx->user_ip4 = a;
	ctx->user_port = peer->port;
	count(STAT_GETPEERNAME);
	return 1;
}

SEC("cgroup/getpeername6")
int ttm_getpeername6(struct bpf_sock_addr *ctx)
{
	struct ttm_peer *peer = kept_peer(ctx->sk);
	if (!peer)
		return 1;
	// The peer the kernel is about to return: an IPv4-mapped address
	// (::ffff:a.b.c.d) takes an IPv4 client, a native one an IPv6 client.
	int mapped = ctx->user_ip6[0] == 0 && ctx->user_ip6[1] == 0 &&
		     ctx->user_ip6[2] == bpf_htonl(0xffff);
	__u32 a[4];
	if (peer->af == AF_INET && mapped) {
		__builtin_memcpy(&a[3], peer->addr, 4);
		ctx->user_ip6[3] = a[3];
	} else if (peer->af == AF_INET6 && !mapped) {
		__builtin_memcpy(a, peer->addr, 16);
		ctx->user_ip6[0] = a[0];
		ctx->user_ip6[1] = a[1];
		ctx->user_ip6[2] = a[2];
		ctx->user_ip6[3] = a[3];
	} else {
		return 1;
	}
	ctx->user_port = peer->port;
	count(STAT_GETPEERNAME);
	return 1;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
