/* The ttm-core vector file (crates/ttm-core/tests/vectors/ttm.txt, path in
 * argv[1]) decoded through the C API: every line must give its result,
 * and every decoded option and record must encode back to its bytes. */
#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "ttm.h"

static size_t parse_hex(const char *hex, uint8_t *out, size_t cap) {
  size_t n = 0;
  if (strcmp(hex, "-") == 0) return 0;
  while (hex[0] && hex[1] && n < cap) {
    unsigned v;
    if (sscanf(hex, "%2x", &v) != 1) break;
    out[n++] = (uint8_t)v;
    hex += 2;
  }
  return n;
}

static size_t parse_kinds(const char *s, uint8_t *out) {
  size_t n = 0;
  if (strcmp(s, "-") == 0) return 0;
  for (char *end; *s && n < 16; s = (*end == ',') ? end + 1 : end) {
    out[n++] = (uint8_t)strtoul(s, &end, 10);
    if (end == s) break;
  }
  return n;
}

static const char *error_name(ttm_result rc) {
  switch (rc) {
    case TTM_RESULT_TRUNCATED: return "truncated";
    case TTM_RESULT_BAD_LENGTH: return "bad_length";
    case TTM_RESULT_KIND_NOT_ACCEPTED: return "kind_not_accepted";
    case TTM_RESULT_TRAILING_BYTES: return "trailing_bytes";
    case TTM_RESULT_MALFORMED_OPTION: return "malformed_option";
    case TTM_RESULT_OPTION_OVERRUN: return "option_overrun";
    case TTM_RESULT_BAD_FAMILY: return "bad_family";
    case TTM_RESULT_NON_ZERO_PADDING: return "nonzero_padding";
    default: return "?";
  }
}

/* Does `peer` hold the address `ip` (text) and `port`? */
static int peer_is(const struct ttm_peer *peer, const char *ip, unsigned port) {
  uint8_t want[16] = {0};
  if (peer->port != port) return 0;
  if (inet_pton(AF_INET, ip, want) == 1)
    return peer->family == TTM_AF_INET && memcmp(peer->addr, want, 16) == 0;
  if (inet_pton(AF_INET6, ip, want) == 1)
    return peer->family == TTM_AF_INET6 && memcmp(peer->addr, want, 16) == 0;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s ttm.txt\n", argv[0]);
    return 2;
  }
  FILE *f = fopen(argv[1], "r");
  if (!f) {
    perror(argv[1]);
    return 2;
  }
  char line[1024];
  int vectors = 0;
  while (fgets(line, sizeof line, f)) {
    char *hash = strchr(line, '#');
    if (hash) *hash = 0;
    char type[16], name[128], accept[64], hex[512], result[16], a[64], b[64], c[16];
    int n = sscanf(line, "%15s %127s %63s %511s %15s %63s %63s %15s", type, name, accept, hex,
                   result, a, b, c);
    if (n <= 0) continue;
    vectors++;
    uint8_t bytes[256], kinds[16];
    size_t len = parse_hex(hex, bytes, sizeof bytes);
    size_t kinds_len = parse_kinds(accept, kinds);
    /* An empty input is passed as NULL, which a zero length allows. */
    const uint8_t *input = len ? bytes : NULL;
    struct ttm_peer peer;
    uint8_t kind = 0;
    ttm_result rc;
    if (strcmp(type, "option") == 0) {
      rc = ttm_option_decode(input, len, kinds, kinds_len, &kind, &peer);
    } else if (strcmp(type, "find") == 0) {
      rc = ttm_options_find(input, len, kinds, kinds_len, &kind, &peer);
    } else if (strcmp(type, "record") == 0) {
      rc = ttm_peer_record_decode(input, len, &peer);
      kind = (uint8_t)peer.family;
    } else {
      fprintf(stderr, "%s: unknown type %s\n", name, type);
      CHECK(0);
      continue;
    }
    int ok;
    if (strcmp(result, "ok") == 0 && n == 8) {
      ok = rc == TTM_RESULT_OK && kind == atoi(a) && peer_is(&peer, b, (unsigned)atoi(c));
      if (ok && strcmp(type, "option") == 0) {
        uint8_t out[32];
        size_t written = 0;
        ok = ttm_option_encode(kind, &peer, out, sizeof out, &written) == TTM_RESULT_OK &&
             written == len && memcmp(out, bytes, len) == 0;
      } else if (ok && strcmp(type, "record") == 0) {
        uint8_t out[TTM_PEER_RECORD_LEN];
        ok = ttm_peer_record_encode(&peer, out, sizeof out) == TTM_RESULT_OK &&
             memcmp(out, bytes, sizeof out) == 0;
      }
    } else if (strcmp(result, "none") == 0) {
      ok = rc == TTM_RESULT_NOT_FOUND;
    } else if (strcmp(result, "err") == 0 && n >= 6) {
      ok = strcmp(error_name(rc), a) == 0;
    } else {
      ok = 0;
    }
    if (!ok)
      fprintf(stderr, "vector %s %s: got result %u (%s)\n", type, name, (unsigned)rc,
              ttm_result_message(rc));
    CHECK(ok);
  }
  fclose(f);
  CHECK(vectors > 50);
  DONE("vectors");
}
