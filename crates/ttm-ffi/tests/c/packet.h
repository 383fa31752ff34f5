/* Hand-built Ethernet + IPv4 + TCP frames for the C engine tests, with a
 * tiny Internet checksum helper (RFC 1071). */
#ifndef TTM_PACKET_H
#define TTM_PACKET_H

#include <stdint.h>
#include <string.h>

#define ETH_LEN 14
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

static inline uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum) {
  for (size_t i = 0; i + 1 < len; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (len & 1) sum += (uint32_t)(p[len - 1] << 8);
  return sum;
}

static inline uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

static inline void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static inline void put32(uint8_t *p, uint32_t v) {
  put16(p, (uint16_t)(v >> 16));
  put16(p + 2, (uint16_t)v);
}

static inline uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }


/* The TCP checksum over the pseudo-header of the IPv4 packet at `ip`. */
static inline uint16_t tcp_checksum4(const uint8_t *ip) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  size_t total = get16(ip + 2);
  size_t tcp_len = total - ihl;
  uint32_t sum = sum16(ip + 12, 8, 0);
  sum += 6 + (uint32_t)tcp_len;
  return fold(sum16(ip + ihl, tcp_len, sum));
}

/* Do the IPv4 header and TCP checksums of the packet at `ip` verify? */
static inline int checksums_ok4(const uint8_t *ip) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  return fold(sum16(ip, ihl, 0)) == 0 && tcp_checksum4(ip) == 0;
}

/* Write an Ethernet + IPv4 + TCP frame at `p`, with `payload_len` bytes of
 * `payload`; returns its length. Addresses in network order (4 bytes). */
static inline size_t tcp4_frame(uint8_t *p, const uint8_t src[4], uint16_t sport,
                         const uint8_t dst[4], uint16_t dport, uint8_t flags,
                         uint32_t seq, uint32_t ack, const char *payload,
                         size_t payload_len) {
  static const uint8_t macs[12] = {2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2};
  memcpy(p, macs, 12);
  put16(p + 12, 0x0800);
  uint8_t *ip = p + ETH_LEN;
  memset(ip, 0, 40);
  ip[0] = 0x45;
  put16(ip + 2, (uint16_t)(40 + payload_len));
  put16(ip + 4, 0x1234);
  put16(ip + 6, 0x4000); /* DF */
  ip[8] = 64;
  ip[9] = 6;
  memcpy(ip + 12, src, 4);
  memcpy(ip + 16, dst, 4);
  put16(ip + 10, fold(sum16(ip, 20, 0)));
  uint8_t *tcp = ip + 20;
  put16(tcp, sport);
  put16(tcp + 2, dport);
  put32(tcp + 4, seq);
  put32(tcp + 8, ack);
  tcp[12] = 5 << 4;
  tcp[13] = flags;
  put16(tcp + 14, 65535);
  memcpy(tcp + 20, payload, payload_len);
  put16(tcp + 16, tcp_checksum4(ip));
  return ETH_LEN + 40 + payload_len;
}

/* The UDP checksum of the IPv4 packet at `ip` (0 when it verifies). */
static inline uint16_t udp_checksum4(const uint8_t *ip) {
  size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
  size_t udp_len = get16(ip + ihl + 4);
  uint32_t sum = sum16(ip + 12, 8, 0);
  sum += 17 + (uint32_t)udp_len;
  return fold(sum16(ip + ihl, udp_len, sum));
}

/* Write an Ethernet + IPv4 + UDP frame at `p`; returns its length. */
static inline size_t udp4_frame(uint8_t *p, const uint8_t src[4], uint16_t sport,
                                const uint8_t dst[4], uint16_t dport, const char *payload,
                                size_t payload_len) {
  /* Ethernet, IP and the two ports as for TCP, then the rest for UDP. */
  (void)tcp4_frame(p, src, sport, dst, dport, 0, 0, 0, "", 0);
  uint8_t *ip = p + ETH_LEN;
  put16(ip + 2, (uint16_t)(28 + payload_len));
  ip[9] = 17;
  put16(ip + 10, 0);
  put16(ip + 10, fold(sum16(ip, 20, 0)));
  uint8_t *udp = ip + 20;
  put16(udp + 4, (uint16_t)(8 + payload_len));
  put16(udp + 6, 0);
  memcpy(udp + 8, payload, payload_len);
  uint16_t sum = udp_checksum4(ip);
  put16(udp + 6, sum == 0 ? 0xffff : sum);
  return ETH_LEN + 28 + payload_len;
}

#endif
