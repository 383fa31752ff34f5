/* An engine configured from C: a TCP handshake and data both ways through
 * one listener (VIP 198.51.100.1:80, one backend 10.0.0.2:8080, one local
 * address 10.0.0.100), the TTM option in the third ACK, the batch form,
 * counters, and idle expiry with its two RSTs. */
#include <string.h>

#include "check.h"
#include "packet.h"
#include "ttm.h"

static const uint8_t CLIENT[4] = {203, 0, 113, 9};
static const uint8_t VIP[4] = {198, 51, 100, 1};
static const uint8_t BACKEND[4] = {10, 0, 0, 2};
static const uint8_t LOCAL[4] = {10, 0, 0, 100};
#define CPORT 51234
#define MS 1000000ull

static struct ttm_addr v4(const uint8_t a[4]) {
  struct ttm_addr out;
  memset(&out, 0, sizeof out);
  out.family = TTM_AF_INET;
  memcpy(out.addr, a, 4);
  return out;
}

static int addr_is(const struct ttm_addr *a, const uint8_t want[4]) {
  return a->family == TTM_AF_INET && memcmp(a->addr, want, 4) == 0;
}

/* The frame in `buf` from `start` to `end`: its IP header and TCP header. */
struct view {
  uint8_t *ip, *tcp;
  size_t len;
};

static struct view view_of(uint8_t *buf, size_t start, size_t end) {
  struct view v;
  v.ip = buf + start + ETH_LEN;
  v.tcp = v.ip + (v.ip[0] & 0x0f) * 4;
  v.len = end - start;
  return v;
}

int main(void) {
  struct ttm_engine_config ec;
  CHECK_RC(ttm_engine_config_default(&ec), TTM_RESULT_OK);
  ec.capacity = 1024;
  ec.affinity_capacity = 64;
  ec.quarantine_capacity = 1024;
  ec.sweep_period_ms = 100;
  ec.sweep_tick_ms = 10;
  struct ttm_engine *engine = NULL;
  CHECK_RC(ttm_engine_new(&ec, &engine), TTM_RESULT_OK);
  CHECK(engine != NULL);
  if (!engine) DONE("engine");

  struct ttm_addr local = v4(LOCAL);
  struct ttm_backend_config backend;
  memset(&backend, 0, sizeof backend);
  backend.addr = v4(BACKEND);
  backend.port = 8080;
  backend.weight = 1;
  backend.up = true;
  struct ttm_listener_config lc;
  CHECK_RC(ttm_listener_config_default(&lc), TTM_RESULT_OK);
  lc.vip = v4(VIP);
  lc.port = 80;
  lc.protocol = TTM_PROTOCOL_TCP;
  lc.local_addrs = &local;
  lc.local_addrs_len = 1;
  lc.timeouts.tcp_established_ms = 1000;
  uint16_t listener = 0xffff;
  CHECK_RC(ttm_engine_add_listener(engine, &lc, &listener), TTM_RESULT_OK);
  uint32_t bid = 0xffffffff;
  CHECK_RC(ttm_engine_add_backend(engine, listener, &backend, &bid), TTM_RESULT_OK);
  CHECK_RC(ttm_engine_set_weight(engine, listener, bid, 3), TTM_RESULT_OK);
  CHECK_RC(ttm_engine_set_up(engine, listener, bid, true), TTM_RESULT_OK);

  uint64_t deadline = 42;
  CHECK_RC(ttm_engine_poll_timeout(engine, &deadline), TTM_RESULT_NO_DEADLINE);
  CHECK(deadline == 42);

  /* 1. SYN from the client to the VIP. */
  uint8_t buf[256];
  size_t start = 64, end;
  struct ttm_verdict verdict;
  end = start + tcp4_frame(buf + start, CLIENT, CPORT, VIP, 80, TCP_SYN, 1000, 0, "", 0);
  CHECK_RC(ttm_engine_handle_packet(engine, 1 * MS, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_TO_SERVER);
  CHECK(addr_is(&verdict.next_hop, BACKEND));
  struct view v = view_of(buf, start, end);
  CHECK(memcmp(v.ip + 12, LOCAL, 4) == 0);
  CHECK(memcmp(v.ip + 16, BACKEND, 4) == 0);
  CHECK(get16(v.tcp + 2) == 8080);
  CHECK(v.tcp[13] == TCP_SYN);
  CHECK(checksums_ok4(v.ip));
  uint16_t lport = get16(v.tcp);
  CHECK(lport >= 1024);

  /* 2. SYN-ACK from the backend to the local address. */
  start = 64;
  end = start + tcp4_frame(buf + start, BACKEND, 8080, LOCAL, lport, TCP_SYN | TCP_ACK, 5000,
                           1001, "", 0);
  CHECK_RC(ttm_engine_handle_packet(engine, 2 * MS, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_TO_CLIENT);
  CHECK(addr_is(&verdict.next_hop, CLIENT));
  v = view_of(buf, start, end);
  CHECK(memcmp(v.ip + 12, VIP, 4) == 0);
  CHECK(memcmp(v.ip + 16, CLIENT, 4) == 0);
  CHECK(get16(v.tcp) == 80);
  CHECK(get16(v.tcp + 2) == CPORT);
  CHECK(checksums_ok4(v.ip));

  /* 3. The third ACK: forwarded with the TTM option carrying the client,
   *    in a buffer with just the room the header asks for: the frame grows
   *    into the headroom and still ends where the buffer does. */
  uint8_t exact[TTM_FRAME_HEADROOM + ETH_LEN + 40 + TTM_FRAME_TAILROOM];
  start = TTM_FRAME_HEADROOM;
  end = start + tcp4_frame(exact + start, CLIENT, CPORT, VIP, 80, TCP_ACK, 1001, 5001, "", 0);
  CHECK(end + TTM_FRAME_TAILROOM == sizeof exact);
  size_t before = end - start;
  CHECK_RC(ttm_engine_handle_packet(engine, 3 * MS, exact, sizeof exact, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_TO_SERVER);
  CHECK(start == TTM_FRAME_HEADROOM - TTM_OPTION_V4_LEN);
  CHECK(end + TTM_FRAME_TAILROOM == sizeof exact);
  v = view_of(exact, start, end);
  CHECK(v.len == before + TTM_OPTION_V4_LEN);
  CHECK(checksums_ok4(v.ip));
  size_t tcp_hlen = (size_t)(v.tcp[12] >> 4) * 4;
  CHECK(tcp_hlen == 20 + TTM_OPTION_V4_LEN);
  const uint8_t accept[] = {TTM_DEFAULT_KIND};
  struct ttm_peer client;
  uint8_t kind = 0;
  CHECK_RC(ttm_options_find(v.tcp + 20, tcp_hlen - 20, accept, 1, &kind, &client),
           TTM_RESULT_OK);
  CHECK(kind == TTM_DEFAULT_KIND);
  CHECK(client.family == TTM_AF_INET && client.port == CPORT &&
        memcmp(client.addr, CLIENT, 4) == 0);

  /*    The same segment with less headroom than the option needs: still
   *    forwarded, without the option (the header's headroom is what makes
   *    the insertion possible). */
  uint8_t tight[TTM_OPTION_V4_LEN - 1 + ETH_LEN + 40];
  start = TTM_OPTION_V4_LEN - 1;
  end = start + tcp4_frame(tight + start, CLIENT, CPORT, VIP, 80, TCP_ACK, 1001, 5001, "", 0);
  CHECK_RC(ttm_engine_handle_packet(engine, 3 * MS, tight, sizeof tight, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_TO_SERVER);
  CHECK(start == TTM_OPTION_V4_LEN - 1 && end == sizeof tight);
  v = view_of(tight, start, end);
  CHECK(v.tcp[12] >> 4 == 5 && checksums_ok4(v.ip));

  /* 4. Data both ways, through the batch form. */
  uint8_t b1[256], b2[256];
  struct ttm_frame frames[2];
  frames[0].buf = b1;
  frames[0].buf_len = sizeof b1;
  frames[0].start = 32;
  frames[0].end = 32 + tcp4_frame(b1 + 32, CLIENT, CPORT, VIP, 80, TCP_ACK | TCP_PSH, 1001,
                                  5001, "hello", 5);
  frames[1].buf = b2;
  frames[1].buf_len = sizeof b2;
  frames[1].start = 32;
  frames[1].end = 32 + tcp4_frame(b2 + 32, BACKEND, 8080, LOCAL, lport, TCP_ACK | TCP_PSH, 5001,
                                  1006, "world", 5);
  struct ttm_verdict verdicts[2];
  CHECK_RC(ttm_engine_handle_batch(engine, 4 * MS, frames, verdicts, 2), TTM_RESULT_OK);
  CHECK(verdicts[0].kind == TTM_VERDICT_KIND_TO_SERVER && addr_is(&verdicts[0].next_hop, BACKEND));
  CHECK(verdicts[1].kind == TTM_VERDICT_KIND_TO_CLIENT && addr_is(&verdicts[1].next_hop, CLIENT));
  v = view_of(b1, frames[0].start, frames[0].end);
  CHECK(memcmp(v.ip + 16, BACKEND, 4) == 0 && get16(v.tcp) == lport && checksums_ok4(v.ip));
  CHECK(memcmp(v.tcp + (v.tcp[12] >> 4) * 4, "hello", 5) == 0);
  v = view_of(b2, frames[1].start, frames[1].end);
  CHECK(memcmp(v.ip + 16, CLIENT, 4) == 0 && get16(v.tcp + 2) == CPORT && checksums_ok4(v.ip));
  CHECK(memcmp(v.tcp + (v.tcp[12] >> 4) * 4, "world", 5) == 0);

  /* Counters and traffic. */
  struct ttm_counters counters;
  CHECK_RC(ttm_engine_counters(engine, &counters), TTM_RESULT_OK);
  CHECK(counters.sessions_created == 1);
  CHECK(counters.sessions == 1);
  CHECK(counters.ttm_inserted >= 1); /* until the server sends, each client ACK carries it */
  CHECK(counters.ttm_missed == 1);   /* the segment without the headroom */
  CHECK(counters.drop_reason_count == ttm_drop_reason_count());
  struct ttm_traffic traffic;
  CHECK_RC(ttm_engine_listener_traffic(engine, listener, &traffic), TTM_RESULT_OK);
  CHECK(traffic.packets_in == 4 && traffic.packets_out == 2 && traffic.new_sessions == 1);
  CHECK_RC(ttm_engine_backend_traffic(engine, listener, bid, &traffic), TTM_RESULT_OK);
  CHECK(traffic.active_sessions == 1);

  /* 5. Idle expiry: past the 1 s established timeout, the session ends and
   *    an RST goes to each side. */
  CHECK_RC(ttm_engine_poll_timeout(engine, &deadline), TTM_RESULT_OK);
  uint64_t now = 4 * MS;
  while (now < 3000 * MS) {
    if (ttm_engine_poll_timeout(engine, &deadline) != TTM_RESULT_OK) break;
    now = deadline > now ? deadline : now + MS;
    if (ttm_engine_handle_timeout(engine, now) != TTM_RESULT_OK) {
      CHECK(0);
      break;
    }
  }
  CHECK(now > 1000 * MS && now < 3000 * MS);
  int to_server = 0, to_client = 0, rsts = 0;
  for (;;) {
    uint8_t out[TTM_ENGINE_TRANSMIT_LEN];
    size_t written = 0;
    ttm_result rc = ttm_engine_poll_transmit(engine, out, sizeof out, &written, &verdict);
    if (rc == TTM_RESULT_EMPTY) break;
    CHECK_RC(rc, TTM_RESULT_OK);
    if (rc != TTM_RESULT_OK || rsts > 4) break;
    rsts++;
    v = view_of(out, 0, written);
    CHECK(v.tcp[13] & TCP_RST);
    CHECK(checksums_ok4(v.ip));
    if (verdict.kind == TTM_VERDICT_KIND_TO_SERVER) {
      to_server++;
      CHECK(addr_is(&verdict.next_hop, BACKEND) && memcmp(v.ip + 12, LOCAL, 4) == 0 &&
            get16(v.tcp) == lport);
    } else if (verdict.kind == TTM_VERDICT_KIND_TO_CLIENT) {
      to_client++;
      CHECK(addr_is(&verdict.next_hop, CLIENT) && memcmp(v.ip + 12, VIP, 4) == 0 &&
            get16(v.tcp + 2) == CPORT);
    }
  }
  CHECK(rsts == 2 && to_server == 1 && to_client == 1);
  CHECK_RC(ttm_engine_counters(engine, &counters), TTM_RESULT_OK);
  CHECK(counters.sessions == 0);
  CHECK(counters.sessions_expired == 1);
  CHECK_RC(ttm_engine_poll_timeout(engine, &deadline), TTM_RESULT_NO_DEADLINE);

  /* A frame the engine cannot parse is dropped with a named reason. */
  uint8_t junk[8] = {0};
  start = 0;
  end = sizeof junk;
  CHECK_RC(ttm_engine_handle_packet(engine, now, junk, sizeof junk, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_DROP);
  const char *reason = ttm_drop_reason_name(verdict.drop_reason);
  CHECK(reason != NULL && strcmp(reason, "truncated") == 0);
  CHECK_RC(ttm_engine_counters(engine, &counters), TTM_RESULT_OK);
  CHECK(counters.drops[verdict.drop_reason] == 1);

  /* A SYN whose TCP checksum is wrong starts no session (the listener
   * verifies new sessions' checksums by default). */
  CHECK(lc.verify_checksums == TTM_VERIFY_CHECKSUMS_NEW);
  start = 64;
  end = start + tcp4_frame(buf + start, CLIENT, CPORT + 1, VIP, 80, TCP_SYN, 1000, 0, "", 0);
  buf[start + ETH_LEN + 20 + 15] ^= 1; /* the window, after the checksum was computed */
  CHECK_RC(ttm_engine_handle_packet(engine, now, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_DROP);
  reason = ttm_drop_reason_name(verdict.drop_reason);
  CHECK(reason != NULL && strcmp(reason, "bad_l4_checksum") == 0);
  CHECK_RC(ttm_engine_counters(engine, &counters), TTM_RESULT_OK);
  CHECK(counters.sessions == 0 && counters.drops[verdict.drop_reason] == 1);
  CHECK(counters.sessions_created - counters.sessions_expired - counters.sessions_reset -
            counters.sessions_replaced - counters.sessions_rescheduled -
            counters.sessions_evicted ==
        counters.sessions);

  /* A UDP listener on the same VIP: a datagram each way. */
  struct ttm_listener_config uc = lc;
  uc.port = 53;
  uc.protocol = TTM_PROTOCOL_UDP;
  uc.backends = &backend;
  uc.backends_len = 1;
  backend.port = 5353;
  uint16_t udp_listener = 0xffff;
  CHECK_RC(ttm_engine_add_listener(engine, &uc, &udp_listener), TTM_RESULT_OK);
  CHECK(udp_listener != listener);
  start = 64;
  end = start + udp4_frame(buf + start, CLIENT, 40000, VIP, 53, "query", 5);
  CHECK_RC(ttm_engine_handle_packet(engine, now, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_TO_SERVER && addr_is(&verdict.next_hop, BACKEND));
  uint8_t *ip = buf + start + ETH_LEN;
  CHECK(ip[9] == 17 && memcmp(ip + 12, LOCAL, 4) == 0 && memcmp(ip + 16, BACKEND, 4) == 0);
  CHECK(get16(ip + 22) == 5353 && udp_checksum4(ip) == 0);
  uint16_t udp_lport = get16(ip + 20);
  start = 64;
  end = start + udp4_frame(buf + start, BACKEND, 5353, LOCAL, udp_lport, "answer", 6);
  CHECK_RC(ttm_engine_handle_packet(engine, now, buf, sizeof buf, &start, &end, &verdict),
           TTM_RESULT_OK);
  CHECK(verdict.kind == TTM_VERDICT_KIND_TO_CLIENT && addr_is(&verdict.next_hop, CLIENT));
  ip = buf + start + ETH_LEN;
  CHECK(memcmp(ip + 12, VIP, 4) == 0 && memcmp(ip + 16, CLIENT, 4) == 0);
  CHECK(get16(ip + 20) == 53 && get16(ip + 22) == 40000 && udp_checksum4(ip) == 0);
  CHECK(memcmp(ip + 28, "answer", 6) == 0);
  CHECK_RC(ttm_engine_remove_listener(engine, udp_listener), TTM_RESULT_OK);

  /* Remove the backend and the listener. */
  CHECK_RC(ttm_engine_remove_backend(engine, listener, bid, true), TTM_RESULT_OK);
  CHECK_RC(ttm_engine_remove_listener(engine, listener), TTM_RESULT_OK);
  ttm_engine_free(engine);
  DONE("engine");
}
