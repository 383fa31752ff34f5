/* Every error path of the C API: NULL pointers, out-of-range arguments,
 * short buffers, bad configurations, double operations, freeing NULL; and
 * that outputs are left alone when a call fails. */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "ttm.h"

static struct ttm_addr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  struct ttm_addr out;
  memset(&out, 0, sizeof out);
  out.family = TTM_AF_INET;
  out.addr[0] = a;
  out.addr[1] = b;
  out.addr[2] = c;
  out.addr[3] = d;
  return out;
}

static void codec(void) {
  static const uint8_t option[8] = {0xfe, 0x08, 0x1f, 0x90, 0xc0, 0x00, 0x02, 0x01};
  const uint8_t accept[] = {254};
  struct ttm_peer peer, sentinel;
  memset(&sentinel, 0xa5, sizeof sentinel);
  uint8_t kind = 7;
  uint8_t buf[32];
  size_t written = 99;

  /* NULL where a pointer is needed. */
  CHECK_RC(ttm_option_decode(NULL, 8, accept, 1, &kind, &peer), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_option_decode(option, 8, NULL, 1, &kind, &peer), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_option_decode(option, 8, accept, 1, &kind, NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_options_find(NULL, 3, accept, 1, &kind, &peer), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_options_find(option, 8, accept, 1, &kind, NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_peer_record_decode(NULL, 20, &peer), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_peer_record_decode(buf, 20, NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_option_encode(254, NULL, buf, sizeof buf, &written), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_getpeer(0, NULL), TTM_RESULT_NULL_PARAMETER);

  /* The kind is optional; a decoded option round-trips. */
  CHECK_RC(ttm_option_decode(option, 8, accept, 1, NULL, &peer), TTM_RESULT_OK);
  CHECK(peer.family == TTM_AF_INET && peer.port == 8080);
  CHECK_RC(ttm_option_encode(254, &peer, NULL, 8, &written), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_option_encode(254, &peer, buf, 8, NULL), TTM_RESULT_NULL_PARAMETER);

  /* Short buffers: nothing written. */
  memset(buf, 0x5a, sizeof buf);
  CHECK_RC(ttm_option_encode(254, &peer, buf, 7, &written), TTM_RESULT_BUFFER_TOO_SMALL);
  CHECK(written == 99 && buf[0] == 0x5a);
  CHECK_RC(ttm_option_encode(254, &peer, NULL, 0, &written), TTM_RESULT_BUFFER_TOO_SMALL);
  CHECK_RC(ttm_peer_record_encode(&peer, buf, TTM_PEER_RECORD_LEN - 1),
           TTM_RESULT_BUFFER_TOO_SMALL);
  CHECK(buf[0] == 0x5a);
  CHECK_RC(ttm_peer_record_encode(NULL, buf, sizeof buf), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_peer_record_encode(&peer, NULL, 20), TTM_RESULT_NULL_PARAMETER);

  /* Out-of-range arguments. */
  struct ttm_peer bad = peer;
  bad.family = 3;
  CHECK_RC(ttm_option_encode(254, &bad, buf, sizeof buf, &written), TTM_RESULT_INVALID_ARGUMENT);
  CHECK_RC(ttm_peer_record_encode(&bad, buf, sizeof buf), TTM_RESULT_INVALID_ARGUMENT);
  CHECK_RC(ttm_option_encode(2, &peer, buf, sizeof buf, &written), TTM_RESULT_RESERVED_KIND);
  const uint8_t reserved[] = {254, 8};
  CHECK_RC(ttm_option_decode(option, 8, reserved, 2, &kind, &peer), TTM_RESULT_RESERVED_KIND);
  CHECK_RC(ttm_options_find(option, 8, reserved, 2, &kind, &peer), TTM_RESULT_RESERVED_KIND);

  /* Failed decodes leave the outputs alone. */
  memcpy(&peer, &sentinel, sizeof peer);
  kind = 7;
  CHECK_RC(ttm_option_decode(option, 7, accept, 1, &kind, &peer), TTM_RESULT_TRUNCATED);
  CHECK(kind == 7 && memcmp(&peer, &sentinel, sizeof peer) == 0);
  CHECK_RC(ttm_options_find(NULL, 0, accept, 1, &kind, &peer), TTM_RESULT_NOT_FOUND);
  CHECK(kind == 7 && memcmp(&peer, &sentinel, sizeof peer) == 0);

  /* Messages: static text for every code, a fallback for unknown ones. */
  CHECK(strcmp(ttm_result_message(TTM_RESULT_OK), "success") == 0);
  CHECK(strstr(ttm_result_message(TTM_RESULT_NOT_AVAILABLE), "getpeername") != NULL);
  CHECK(strcmp(ttm_result_message(12345), "unknown result code") == 0);
  CHECK(ttm_drop_reason_count() > 0);
  CHECK(ttm_drop_reason_name(ttm_drop_reason_count()) == NULL);
  CHECK(ttm_drop_reason_name(0) != NULL);
}

static void getpeer(void) {
  struct ttm_peer peer;
  memset(&peer, 0, sizeof peer);
  /* Not a socket: getsockopt's own error, errno kept. */
  int pipefd[2];
  CHECK(pipe(pipefd) == 0);
  errno = 0;
  CHECK_RC(ttm_getpeer(pipefd[0], &peer), TTM_RESULT_OS_ERROR);
  CHECK(errno == ENOTSOCK);
  close(pipefd[0]);
  close(pipefd[1]);
  CHECK_RC(ttm_getpeer(-1, &peer), TTM_RESULT_OS_ERROR);
  /* A TCP socket on a host without a TTM decoder: NOT_AVAILABLE, the cue
   * to fall back to getpeername. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  CHECK_RC(ttm_getpeer(fd, &peer), TTM_RESULT_NOT_AVAILABLE);
  CHECK(peer.family == 0);
  close(fd);
}

static void engine(void) {
  struct ttm_engine_config ec;
  struct ttm_engine *engine = (struct ttm_engine *)&ec; /* a sentinel */
  CHECK_RC(ttm_engine_config_default(NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_listener_config_default(NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_config_default(&ec), TTM_RESULT_OK);
  CHECK_RC(ttm_engine_new(NULL, &engine), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_new(&ec, NULL), TTM_RESULT_NULL_PARAMETER);

  /* Bad engine configurations: no handle written. */
  ec.capacity = 0;
  CHECK_RC(ttm_engine_new(&ec, &engine), TTM_RESULT_ZERO_CAPACITY);
  CHECK(engine == (struct ttm_engine *)&ec);
  ec.capacity = 256;
  ec.affinity_capacity = 16;
  ec.quarantine_capacity = 256;
  ec.sweep_tick_ms = 0;
  CHECK_RC(ttm_engine_new(&ec, &engine), TTM_RESULT_BAD_SWEEP);
  ec.sweep_tick_ms = ec.sweep_period_ms + 1;
  CHECK_RC(ttm_engine_new(&ec, &engine), TTM_RESULT_BAD_SWEEP);
  ec.sweep_tick_ms = 100;
  ec.quarantine_ms = 2 * 3600 * 1000;
  CHECK_RC(ttm_engine_new(&ec, &engine), TTM_RESULT_QUARANTINE_TOO_LONG);
  ec.quarantine_ms = 1000;
  CHECK(engine == (struct ttm_engine *)&ec);
  CHECK_RC(ttm_engine_new(&ec, &engine), TTM_RESULT_OK);
  CHECK(engine != (struct ttm_engine *)&ec);

  /* Listener configurations. */
  struct ttm_addr local = v4(10, 0, 0, 100);
  struct ttm_listener_config lc;
  CHECK_RC(ttm_listener_config_default(&lc), TTM_RESULT_OK);
  uint16_t lid = 777;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_INVALID_ARGUMENT); /* no VIP */
  lc.vip = v4(198, 51, 100, 1);
  lc.port = 80;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_LOCAL_POOL); /* no local */
  lc.local_addrs_len = 1; /* with a NULL pointer */
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_NULL_PARAMETER);
  lc.local_addrs = &local;
  lc.protocol = 99;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_INVALID_ARGUMENT);
  lc.protocol = TTM_PROTOCOL_TCP;
  lc.verify_checksums = 3;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_INVALID_ARGUMENT);
  lc.verify_checksums = TTM_VERIFY_CHECKSUMS_OFF;
  lc.scheduler = 9;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_INVALID_ARGUMENT);
  lc.scheduler = TTM_SCHEDULER_MAGLEV;
  lc.maglev_table_size = 100; /* not a prime */
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_SCHEDULER);
  lc.scheduler = TTM_SCHEDULER_LEAST_CONNECTIONS;
  lc.timeouts.syn_recv_ms = 0;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_BAD_TIMEOUT);
  lc.timeouts.syn_recv_ms = 30000;
  lc.ttm_kind = 8;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_BAD_TTM_KIND);
  lc.ttm_kind = 254;
  const uint8_t strip[] = {1};
  lc.ttm_strip_kinds = strip;
  lc.ttm_strip_kinds_len = 1;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_RESERVED_KIND);
  lc.ttm_strip_kinds = NULL;
  lc.ttm_strip_kinds_len = 0;
  lc.local_port_min = 0;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_LOCAL_POOL);
  lc.local_port_min = 1024;
  struct ttm_addr vip_as_local = lc.vip;
  lc.local_addrs = &vip_as_local;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_LOCAL_IS_VIP);
  lc.local_addrs = &local;
  struct ttm_backend_config backends[2];
  memset(backends, 0, sizeof backends);
  backends[0].addr = v4(10, 0, 0, 2);
  backends[0].port = 8080;
  backends[0].weight = 1;
  backends[0].up = true;
  backends[1] = backends[0];
  lc.backends = backends;
  lc.backends_len = 2;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_DUPLICATE_BACKEND);
  lc.backends_len = 1;
  CHECK_RC(ttm_engine_add_listener(NULL, &lc, &lid), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_add_listener(engine, NULL, &lid), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_add_listener(engine, &lc, NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK(lid == 777);
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &lid), TTM_RESULT_OK);
  uint16_t again = 555;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &again), TTM_RESULT_DUPLICATE_LISTENER);
  CHECK(again == 555);

  /* Backends. */
  uint32_t bid = 999;
  CHECK_RC(ttm_engine_add_backend(engine, lid, &backends[0], &bid), TTM_RESULT_DUPLICATE_BACKEND);
  backends[1].port = 8081;
  CHECK_RC(ttm_engine_add_backend(engine, (uint16_t)(lid + 1), &backends[1], &bid),
           TTM_RESULT_NO_SUCH_LISTENER);
  CHECK_RC(ttm_engine_add_backend(engine, lid, NULL, &bid), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_add_backend(engine, lid, &backends[1], NULL), TTM_RESULT_NULL_PARAMETER);
  struct ttm_backend_config v6 = backends[1];
  v6.addr.family = TTM_AF_INET6;
  v6.addr.addr[0] = 0x20;
  CHECK_RC(ttm_engine_add_backend(engine, lid, &v6, &bid), TTM_RESULT_NO_LOCAL_ADDRESS_FOR);
  v6.addr.family = 77;
  CHECK_RC(ttm_engine_add_backend(engine, lid, &v6, &bid), TTM_RESULT_INVALID_ARGUMENT);
  CHECK(bid == 999);
  CHECK_RC(ttm_engine_add_backend(engine, lid, &backends[1], &bid), TTM_RESULT_OK);
  CHECK(bid == 1);
  CHECK_RC(ttm_engine_set_weight(engine, lid, 42, 1), TTM_RESULT_NO_SUCH_BACKEND);
  CHECK_RC(ttm_engine_set_up(engine, lid, 42, false), TTM_RESULT_NO_SUCH_BACKEND);
  CHECK_RC(ttm_engine_set_weight(NULL, lid, bid, 1), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_set_up(NULL, lid, bid, true), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_reset_backend(engine, lid, bid), TTM_RESULT_OK);
  CHECK_RC(ttm_engine_remove_backend(engine, lid, bid, false), TTM_RESULT_OK);
  CHECK_RC(ttm_engine_remove_backend(engine, lid, bid, false), TTM_RESULT_NO_SUCH_BACKEND);
  CHECK_RC(ttm_engine_reset_backend(engine, lid, bid), TTM_RESULT_NO_SUCH_BACKEND);
  CHECK_RC(ttm_engine_remove_backend(NULL, lid, 0, false), TTM_RESULT_NULL_PARAMETER);

  /* The packet path. */
  uint8_t buf[128] = {0};
  size_t start = 10, end = 5;
  struct ttm_verdict verdict;
  memset(&verdict, 0x77, sizeof verdict);
  CHECK_RC(ttm_engine_handle_packet(engine, 0, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_INVALID_ARGUMENT);
  start = 0;
  end = sizeof buf + 1;
  CHECK_RC(ttm_engine_handle_packet(engine, 0, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_INVALID_ARGUMENT);
  CHECK(start == 0 && end == sizeof buf + 1 && verdict.drop_reason == 0x77777777);
  end = 60;
  CHECK_RC(ttm_engine_handle_packet(NULL, 0, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_packet(engine, 0, NULL, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_packet(engine, 0, buf, sizeof buf, NULL, &end, &verdict),
           TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_packet(engine, 0, buf, sizeof buf, &start, NULL, &verdict),
           TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_packet(engine, 0, buf, sizeof buf, &start, &end, NULL),
           TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_packet(engine, 0, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_PASS || verdict.kind == TTM_VERDICT_KIND_DROP);

  struct ttm_frame frames[2];
  struct ttm_verdict verdicts[2];
  frames[0].buf = buf;
  frames[0].buf_len = sizeof buf;
  frames[0].start = 0;
  frames[0].end = 60;
  frames[1] = frames[0];
  frames[1].end = 200; /* out of its buffer */
  CHECK_RC(ttm_engine_handle_batch(engine, 0, frames, verdicts, 2), TTM_RESULT_INVALID_ARGUMENT);
  frames[1].buf = NULL;
  CHECK_RC(ttm_engine_handle_batch(engine, 0, frames, verdicts, 2), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_batch(engine, 0, NULL, verdicts, 2), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_batch(engine, 0, frames, NULL, 2), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_batch(engine, 0, NULL, NULL, 0), TTM_RESULT_OK);
  CHECK_RC(ttm_engine_handle_batch(NULL, 0, frames, verdicts, 1), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_batch(engine, 0, frames, verdicts, 1), TTM_RESULT_OK);

  uint64_t deadline = 5;
  CHECK_RC(ttm_engine_poll_timeout(engine, &deadline), TTM_RESULT_NO_DEADLINE);
  CHECK(deadline == 5);
  CHECK_RC(ttm_engine_poll_timeout(engine, NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_poll_timeout(NULL, &deadline), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_timeout(NULL, 0), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_handle_timeout(engine, 1000), TTM_RESULT_OK);
  uint8_t out[TTM_ENGINE_TRANSMIT_LEN];
  size_t written = 3;
  CHECK_RC(ttm_engine_poll_transmit(engine, out, sizeof out - 1, &written, &verdict),
           TTM_RESULT_BUFFER_TOO_SMALL);
  CHECK_RC(ttm_engine_poll_transmit(engine, out, sizeof out, &written, &verdict),
           TTM_RESULT_EMPTY);
  CHECK(written == 3);
  CHECK_RC(ttm_engine_poll_transmit(engine, NULL, sizeof out, &written, &verdict),
           TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_poll_transmit(engine, out, sizeof out, NULL, &verdict),
           TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_poll_transmit(engine, out, sizeof out, &written, NULL),
           TTM_RESULT_NULL_PARAMETER);

  struct ttm_counters counters;
  struct ttm_traffic traffic;
  CHECK_RC(ttm_engine_counters(NULL, &counters), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_counters(engine, NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_listener_traffic(engine, (uint16_t)(lid + 1), &traffic),
           TTM_RESULT_NO_SUCH_LISTENER);
  CHECK_RC(ttm_engine_listener_traffic(engine, lid, NULL), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_backend_traffic(engine, lid, 42, &traffic), TTM_RESULT_NO_SUCH_BACKEND);
  CHECK_RC(ttm_engine_backend_traffic(engine, lid, 0, NULL), TTM_RESULT_NULL_PARAMETER);

  /* Double removal. */
  CHECK_RC(ttm_engine_remove_listener(engine, lid), TTM_RESULT_OK);
  CHECK_RC(ttm_engine_remove_listener(engine, lid), TTM_RESULT_NO_SUCH_LISTENER);
  CHECK_RC(ttm_engine_remove_listener(NULL, lid), TTM_RESULT_NULL_PARAMETER);
  CHECK_RC(ttm_engine_set_weight(engine, lid, 0, 1), TTM_RESULT_NO_SUCH_LISTENER);

  ttm_engine_free(engine);
  ttm_engine_free(NULL); /* does nothing */
}

int main(void) {
  codec();
  getpeer();
  engine();
  DONE("errors");
}
