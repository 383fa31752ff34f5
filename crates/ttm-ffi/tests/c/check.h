/* A minimal test harness for the C tests of ttm-ffi: CHECK counts each
 * check, and DONE() prints the closing line that scripts/test-c sums:
 * "<program>: N passed, M failed", exiting non-zero on any failure. */
#ifndef TTM_CHECK_H
#define TTM_CHECK_H

#include <stdio.h>
#include <stdlib.h>

static int check_passed;
static int check_failed;

#define CHECK(cond)                                                           \
  do {                                                                        \
    if (cond) {                                                               \
      check_passed++;                                                         \
    } else {                                                                  \
      check_failed++;                                                         \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                         \
  } while (0)

/* A call that must give `want` (a ttm_result). */
#define CHECK_RC(call, want)                                                  \
  do {                                                                        \
    ttm_result rc_ = (call);                                                  \
    if (rc_ == (ttm_result)(want)) {                                          \
      check_passed++;                                                         \
    } else {                                                                  \
      check_failed++;                                                         \
      fprintf(stderr, "%s:%d: %s gave %u (%s), want %s\n", __FILE__,          \
              __LINE__, #call, (unsigned)rc_, ttm_result_message(rc_), #want); \
    }                                                                         \
  } while (0)

#define DONE(name)                                                            \
  do {                                                                        \
    printf("%s: %d passed, %d failed\n", (name), check_passed, check_failed); \
    return check_failed == 0 ? 0 : 1;                                         \
  } while (0)

#endif
