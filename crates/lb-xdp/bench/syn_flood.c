// The SYN flood of `scripts/bench-lbd --synflood` and of the netns test of
// half-open sessions: TCP SYNs to HOST:PORT from spoofed sources, as fast
// as sendmmsg allows (or at RATE per second, 0 for no limit) for SECONDS,
// then prints how many it sent. Each SYN comes from an address in
// PREFIX/LEN and a port that no earlier SYN had together (the addresses
// cycle, the port moves on after each cycle), with a random sequence
// number and right IP and TCP checksums (so that a balancer that verifies
// checksums takes them); nobody ever answers the balancer's SYN-ACKs:
// every one leaves a half-open session of its own.
// PREFIX must be inside the test's own network (10.77.0.0/16 here).
// Usage: syn_flood HOST PORT SECONDS RATE PREFIX LEN
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define LEN (sizeof(struct iphdr) + sizeof(struct tcphdr))

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)(p[i] << 8 | p[i + 1]);
	if (len & 1)
		sum += (uint32_t)(p[len - 1] << 8);
	return sum;
}

// One SYN from `src`:`sport` into `buf`.
static void syn(uint8_t *buf, uint32_t src, uint16_t sport, uint32_t dst, uint16_t dport)
{
	struct iphdr *ip = (struct iphdr *)buf;
	struct tcphdr *tcp = (struct tcphdr *)(buf + sizeof *ip);
	memset(buf, 0, LEN);
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = htons(LEN);
	ip->id = htons((uint16_t)next());
	ip->ttl = 64;
	ip->protocol = IPPROTO_TCP;
	ip->saddr = src;
	ip->daddr = dst;
	ip->check = htons(fold(add(0, ip, sizeof *ip)));
	tcp->source = htons(sport);
	tcp->dest = dport;
	tcp->seq = htonl(next());
	tcp->doff = 5;
	tcp->syn = 1;
	tcp->window = htons(64240);
	uint8_t pseudo[12];
	memcpy(pseudo, &ip->saddr, 4);
	memcpy(pseudo + 4, &ip->daddr, 4);
	pseudo[8] = 0;
	pseudo[9] = IPPROTO_TCP;
	pseudo[10] = 0;
	pseudo[11] = sizeof *tcp;
	tcp->check = htons(fold(add(add(0, pseudo, sizeof pseudo), tcp, sizeof *tcp)));
}

int main(int argc, char **argv)
{
	if (argc != 7) {
		fprintf(stderr, "usage: %s HOST PORT SECONDS RATE PREFIX LEN\n", argv[0]);
		return 2;
	}
	struct sockaddr_in dst = {.sin_family = AF_INET};
	struct in_addr prefix;
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1 ||
	    inet_pton(AF_INET, argv[5], &prefix) != 1) {
		fprintf(stderr, "bad address\n");
		return 2;
	}
	uint16_t dport = htons((uint16_t)atoi(argv[2]));
	double seconds = atof(argv[3]);
	double rate = atof(argv[4]);
	int len = atoi(argv[6]);
	if (len < 8 || len > 30) {
		fprintf(stderr, "LEN 8-30\n");
		return 2;
	}
	uint32_t host_mask = (1u << (32 - len)) - 1;
	uint32_t net = ntohl(prefix.s_addr) & ~host_mask;
	int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
	if (fd < 0) {
		perror("raw socket (root?)");
		return 1;
	}
	static uint8_t bufs[BATCH][LEN];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = LEN;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &dst;
		msgs[i].msg_hdr.msg_namelen = sizeof dst;
	}
	unsigned long long sent = 0;
	double start = now(), end = start + seconds;
	for (double t = start; t < end; t = now()) {
		if (rate > 0 && sent >= rate * (t - start)) {
			usleep(200);
			continue;
		}
		for (int i = 0; i < BATCH; i++) {
			// Host part 1..mask-1: never the network or broadcast address.
			unsigned long long k = sent + (unsigned long long)i;
			uint32_t host = 1 + (uint32_t)(k % (host_mask - 1));
			uint16_t sport = (uint16_t)(1024 + (k / (host_mask - 1)) % 64000);
			syn(bufs[i], htonl(net | host), sport, dst.sin_addr.s_addr, dport);
		}
		int n = sendmmsg(fd, msgs, BATCH, 0);
		if (n > 0)
			sent += (unsigned long long)n;
	}
	printf("%llu\n", sent);
	return 0;
}
