#include <stdio.h>
#include <ttm.h>

int main(void) {
  const uint8_t option[] = {0xfe, 0x08, 0x1f, 0x90, 0xc0, 0x00, 0x02, 0x01};
  const uint8_t kinds[] = {TTM_DEFAULT_KIND};
  struct ttm_peer peer;
  ttm_result rc = ttm_option_decode(option, sizeof option, kinds, 1, NULL, &peer);
  if (rc != TTM_RESULT_OK) return fprintf(stderr, "%s\n", ttm_result_message(rc)), 1;
  printf("%u.%u.%u.%u:%u\n", peer.addr[0], peer.addr[1], peer.addr[2], peer.addr[3], peer.port);
}
