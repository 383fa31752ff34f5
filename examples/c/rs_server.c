/* A real server behind the TTM load balancer: the product FAQ's C example
 * ("代码示例二"), written against <ttm.h>.
 *
 * After accept(), ttm_getpeer() asks the kernel for the client's real
 * address (getsockopt(SOL_IP, TTM_SO_GET_PEER) decoded as the 20-byte peer
 * record). On a host without a TTM decoder it returns
 * TTM_RESULT_NOT_AVAILABLE, and the server falls back to getpeername(),
 * which in FULLNAT gives the balancer's local address, not the client's.
 *
 *   cc rs_server.c $(pkg-config --cflags --libs ttm) -o rs_server
 *   ./rs_server [ADDR [PORT [COUNT]]]     (default 0.0.0.0 8080, forever)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ttm.h>

/* Print who is on the other end of `fd`, the way a server would log it. */
static void log_client(int fd) {
  char text[INET6_ADDRSTRLEN];
  struct ttm_peer peer;
  ttm_result rc = ttm_getpeer(fd, &peer);
  if (rc == TTM_RESULT_OK) {
    int af = peer.family == TTM_AF_INET ? AF_INET : AF_INET6;
    inet_ntop(af, peer.addr, text, sizeof text);
    printf("client %s port %u (ttm)\n", text, peer.port);
    return;
  }
  if (rc != TTM_RESULT_NOT_AVAILABLE)
    fprintf(stderr, "ttm_getpeer: %s\n", ttm_result_message(rc));
  /* No decoder on this host (or no record): the socket's own peer. */
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
    perror("getpeername");
    return;
  }
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    printf("client %s port %u (peername)\n", text, ntohs(sin->sin_port));
  } else {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
    printf("client %s port %u (peername)\n", text, ntohs(sin6->sin6_port));
  }
}

int main(int argc, char **argv) {
  const char *host = argc > 1 ? argv[1] : "0.0.0.0";
  int port = argc > 2 ? atoi(argv[2]) : 8080;
  long count = argc > 3 ? atol(argv[3]) : -1;

  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    fprintf(stderr, "bad address %s\n", host);
    return 2;
  }
  int sockfd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(sockfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (sockfd < 0 || bind(sockfd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      listen(sockfd, 16) < 0) {
    perror("listen");
    return 1;
  }
  socklen_t addr_len = sizeof addr;
  getsockname(sockfd, (struct sockaddr *)&addr, &addr_len);
  printf("listening on %s port %u\n", host, ntohs(addr.sin_port));
  fflush(stdout);

  for (long served = 0; count < 0 || served < count; served++) {
    int new_fd = accept(sockfd, NULL, NULL);
    if (new_fd < 0) {
      perror("accept");
      continue;
    }
    log_client(new_fd);
    fflush(stdout);
    /* ... the server's own work ... */
    close(new_fd);
  }
  close(sockfd);
  return 0;
}
