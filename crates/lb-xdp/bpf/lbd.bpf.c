// SPDX-License-Identifier: (MIT OR GPL-2.0)
//
// lbd's XDP program: hands every IPv4 and IPv6 packet addressed to the
// balancer's VIPs and local addresses (LIPs) to the AF_XDP socket of the
// receive queue it arrived on, whatever its protocol (lbd forwards TCP,
// UDP and ICMP, and drops and counts the rest): no packet for a VIP ever
// reaches the host's stack, which would answer it (an RST, a protocol
// unreachable) for a balancer that may be down. Neighbour discovery
// addressed to those addresses, ARP and everything else go to the kernel.
//
// The address set is the hash map `lbd_addrs`, which lbd rewrites on
// reload; IPv4 addresses are keyed as IPv4-mapped IPv6 (::ffff:a.b.c.d).
//
// One exception: TCP to the VIP and port of an HTTP or HTTPS listener
// (the hash map `lbd_l7`) goes to the kernel, whose TCP stack accepts it
// for the L7 proxy, even when a TCP or UDP listener has the same VIP (an
// L7 VIP that no TCP or UDP listener has is not in `lbd_addrs`: it goes to
// the kernel anyway). IPv4 headers may carry options; an IPv4 fragment
// other than the first, and IPv6 with extension headers before TCP, are
// not looked into and go to lbd as before (the engine drops what is not
// its own): a TCP stack sends neither on a connection that works.
// Built by crates/lb-xdp/build.rs with `clang -O2 -g -target bpf`.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_QUEUES 64
#define MAX_ADDRS 4096
#define MAX_L7 1024

// The VIPs and LIPs: the value is unused (1).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_ADDRS);
	__type(key, struct in6_addr);
	__type(value, __u8);
} lbd_addrs SEC(".maps");

// The VIP and port of each HTTP and HTTPS listener: the value is unused
// (1). The port is in network order; `pad` is zero.
struct l7_key {
	struct in6_addr addr;
	__be16 port;
	__u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_L7);
	__type(key, struct l7_key);
	__type(value, __u8);
} lbd_l7 SEC(".maps");

// One AF_XDP socket per receive queue.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} lbd_xsks SEC(".maps");

// Counters, per CPU and per receive queue: the counter `stat` of queue
// `q` is at key q * STAT_COUNT + stat; queues from MAX_QUEUES on share the
// last row, q = MAX_QUEUES. For each queue, redirected + passed +
// no_socket = every packet the program saw.
enum stat {
	STAT_REDIRECTED = 0,
	STAT_PASSED = 1,
	// For the balancer, but no socket on its queue: dropped, so that the
	// host's own stack never answers for a VIP.
	STAT_NO_SOCKET = 2,
	STAT_COUNT = 3,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, (MAX_QUEUES + 1) * STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} lbd_stats SEC(".maps");

static __always_inline void count(struct xdp_md *ctx, __u32 which)
{
	__u32 queue = ctx->rx_queue_index;
	if (queue > MAX_QUEUES)
		queue = MAX_QUEUES;
	__u32 key = queue * STAT_COUNT + which;
	__u64 *n = bpf_map_lookup_elem(&lbd_stats, &key);
	if (n)
		*n += 1;
}

static __always_inline int pass(struct xdp_md *ctx)
{
	count(ctx, STAT_PASSED);
	return XDP_PASS;
}

static __always_inline int to_lbd(struct xdp_md *ctx)
{
	__u32 queue = ctx->rx_queue_index;
	if (bpf_map_lookup_elem(&lbd_xsks, &queue)) {
		count(ctx, STAT_REDIRECTED);
		return bpf_redirect_map(&lbd_xsks, queue, XDP_DROP);
	}
	count(ctx, STAT_NO_SOCKET);
	return XDP_DROP;
}

static __always_inline int ours(const struct in6_addr *addr)
{
	return bpf_map_lookup_elem(&lbd_addrs, addr) != 0;
}

// Whether the TCP segment whose header starts at `l4` is for an HTTP or
// HTTPS listener's VIP `addr`: the kernel's then.
static __always_inline int for_l7(const struct in6_addr *addr, void *l4, void *end)
{
	struct tcphdr *tcp = l4;
	if ((void *)(tcp + 1) > end)
		return 0;
	struct l7_key key = {};
	key.addr = *addr;
	key.port = tcp->dest;
	return bpf_map_lookup_elem(&lbd_l7, &key) != 0;
}

SEC("xdp")
int lbd_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return pass(ctx);

	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end)
			return pass(ctx);
		struct in6_addr key = {};
		key.in6_u.u6_addr16[5] = 0xffff;
		key.in6_u.u6_addr32[3] = ip->daddr;
		if (!ours(&key))
			return pass(ctx);
		// Options included; only a first fragment (offset 0) has the
		// TCP header.
		__u32 ihl = ip->ihl * 4;
		if (ip->protocol == IPPROTO_TCP && ihl >= sizeof(*ip) &&
		    (ip->frag_off & bpf_htons(0x1fff)) == 0 &&
		    for_l7(&key, (void *)ip + ihl, end))
			return pass(ctx);
		return to_lbd(ctx);
	}

	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end)
			return pass(ctx);
		__u8 next = ip6->nexthdr;
		if (next == IPPROTO_ICMPV6) {
			// Neighbour discovery (router and neighbour solicitations and
			// advertisements, redirects) is the kernel's.
			struct icmp6hdr *icmp = (void *)(ip6 + 1);
			if ((void *)(icmp + 1) > end)
				return pass(ctx);
			if (icmp->icmp6_type >= 133 && icmp->icmp6_type <= 137)
				return pass(ctx);
		}
		struct in6_addr key = ip6->daddr;
		if (!ours(&key))
			return pass(ctx);
		// No extension headers: TCP right after the fixed header.
		if (next == IPPROTO_TCP && for_l7(&key, ip6 + 1, end))
			return pass(ctx);
		return to_lbd(ctx);
	}

	return pass(ctx);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
