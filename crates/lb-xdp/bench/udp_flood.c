// The benchmark's UDP load: sends small datagrams to HOST:PORT as fast as
// sendmmsg allows for SECONDS, from FLOWS sockets (one source port each,
// so the balancer sees FLOWS sessions), then prints how many it sent.
// Usage: udp_flood HOST PORT SECONDS FLOWS PAYLOAD
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: %s HOST PORT SECONDS FLOWS PAYLOAD\n", argv[0]);
		return 2;
	}
	struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", argv[1]);
		return 2;
	}
	double seconds = atof(argv[3]);
	int flows = atoi(argv[4]);
	size_t payload = (size_t)atoi(argv[5]);
	if (flows < 1 || flows > 1024 || payload < 1 || payload > 1400) {
		fprintf(stderr, "flows 1-1024, payload 1-1400\n");
		return 2;
	}
	int *fds = calloc((size_t)flows, sizeof(int));
	for (int i = 0; i < flows; i++) {
		fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&dst, sizeof dst) < 0) {
			perror("socket");
			return 1;
		}
	}
	static char buf[1400];
	memset(buf, 'x', sizeof buf);
	struct iovec iov = {.iov_base = buf, .iov_len = payload};
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	unsigned long long sent = 0;
	double end = now() + seconds;
	for (int f = 0; now() < end; f = (f + 1) % flows) {
		int n = sendmmsg(fds[f], msgs, BATCH, 0);
		if (n > 0)
			sent += (unsigned long long)n;
	}
	printf("%llu\n", sent);
	return 0;
}
