/*
 * health/check: the pure logic of an active check, with no I/O, so that it is
 * tested without sockets: the probe request's text, the judgement of the
 * answer's head, and the rise/fall state machine.
 */
#ifndef GH_HEALTH_CHECK_H
#define GH_HEALTH_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/h1.h"

/* A probe reads at most this much of the answer: the status line and head must fit. */
#define GH_HEALTH_HEAD_MAX 4096

/*
 * Writes "METHOD PATH HTTP/1.1\r\nHost: HOST\r\nUser-Agent: gatehouse-health\r\n
 * Connection: close\r\n\r\n" into out. The method must be a token, the path
 * start with '/' and the host be printable without spaces: these come from the
 * config, and a CR or LF in them would let a config line inject headers.
 * Returns the length, or -1 when a part is invalid or out is too small.
 */
ssize_t gh_health_http_request(char *out, size_t outlen, const char *method, const char *path, const char *host);

/*
 * Judges the first len bytes of a probe's answer. `searched` is how many of
 * them were already searched for the end of the head (0 at first; updated).
 * Returns 1 with *status set when a complete, valid head is there; 0 when more
 * bytes are needed and may still fit in GH_HEALTH_HEAD_MAX; -1 when the answer
 * is malformed (gh_h1_parse_response refuses it) or its head does not fit.
 * `res` is scratch space (large: one per prober, not per probe).
 */
int gh_health_http_answer(const char *buf, size_t len, size_t *searched, int head_request, gh_h1_response *res,
                          int *status);

/*
 * Protocol probes that need no credentials (health postgres, health redis).
 * PostgreSQL: an SSLRequest (protocol 3, 53.2.9: length 8, code 80877103); any
 * server answers one byte, 'S' or 'N', before authentication, so the answer
 * shows a live postmaster without a user, a password or a log line of failed
 * logins. Redis: the inline command PING (RESP), answered +PONG; -NOAUTH means
 * alive but protected by a password, which counts as alive: the probe has none.
 */
#define GH_HEALTH_PG_REQUEST     "\x00\x00\x00\x08\x04\xd2\x16\x2f"
#define GH_HEALTH_PG_REQUEST_LEN 8
#define GH_HEALTH_REDIS_REQUEST  "PING\r\n"

/* Judges the first len bytes of a postgres (redis 0) probe's answer: 1 alive, 0 more needed, -1 not alive. */
int gh_health_pg_answer(const char *buf, size_t len);
int gh_health_redis_answer(const char *buf, size_t len);

/*
 * Rise/fall: `rise` passes in a row bring a DOWN server UP, `fall` failures in
 * a row bring an UP one DOWN. Before any result the state is UNKNOWN (which
 * counts as up), and the first result decides at once: at startup nothing is
 * known, and the first probe is the best evidence there is; waiting for `fall`
 * failures would send traffic to a dead server for fall intervals.
 * Zero it to start.
 */
typedef struct gh_health_fsm {
    uint8_t status;  /* enum gh_health_status */
    uint32_t streak; /* results in a row that disagree with status */
} gh_health_fsm;

/*
 * Feeds one result (ok: 1 passed, 0 failed). Returns the new status
 * (GH_HEALTH_UP or GH_HEALTH_DOWN) when this result changes it, else 0.
 * rise and fall of 0 count as 1.
 */
int gh_health_fsm_step(gh_health_fsm *f, int ok, uint32_t rise, uint32_t fall);

#endif
