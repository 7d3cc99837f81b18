/*
 * Health checks: the rise/fall state machine, the probe request and answer, the
 * passive ejection logic, the shared region across processes, and the prober
 * against real loopback sockets.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "health/addrs.h"
#include "health/check.h"
#include "health/probe.h"
#include "health/state.h"
#include "unit.h"

static gh_h1_response res; /* large: not on the stack */

static void test_fsm(void)
{
    gh_health_fsm f = {0};

    unit_case("fsm: the first result decides at once");
    CHECK_INT(gh_health_fsm_step(&f, 1, 3, 2), GH_HEALTH_UP);
    f = (gh_health_fsm){0};
    CHECK_INT(gh_health_fsm_step(&f, 0, 3, 2), GH_HEALTH_DOWN);

    unit_case("fsm: rise passes in a row bring it up; a failure restarts the count");
    CHECK_INT(gh_health_fsm_step(&f, 1, 3, 2), 0);
    CHECK_INT(gh_health_fsm_step(&f, 1, 3, 2), 0);
    CHECK_INT(gh_health_fsm_step(&f, 0, 3, 2), 0);
    CHECK_INT(gh_health_fsm_step(&f, 1, 3, 2), 0);
    CHECK_INT(gh_health_fsm_step(&f, 1, 3, 2), 0);
    CHECK_INT(gh_health_fsm_step(&f, 1, 3, 2), GH_HEALTH_UP);
    CHECK_INT(f.status, GH_HEALTH_UP);

    unit_case("fsm: fall failures in a row bring it down; a pass restarts the count");
    CHECK_INT(gh_health_fsm_step(&f, 0, 3, 2), 0);
    CHECK_INT(gh_health_fsm_step(&f, 1, 3, 2), 0);
    CHECK_INT(gh_health_fsm_step(&f, 0, 3, 2), 0);
    CHECK_INT(gh_health_fsm_step(&f, 0, 3, 2), GH_HEALTH_DOWN);
    CHECK_INT(gh_health_fsm_step(&f, 0, 3, 2), 0);

    unit_case("fsm: rise and fall of 0 count as 1");
    CHECK_INT(gh_health_fsm_step(&f, 1, 0, 0), GH_HEALTH_UP);
    CHECK_INT(gh_health_fsm_step(&f, 0, 0, 0), GH_HEALTH_DOWN);
    unit_case(NULL);
}

static void test_request(void)
{
    char out[256];
    ssize_t n;

    unit_case("request text");
    n = gh_health_http_request(out, sizeof(out), "GET", "/healthz?x=1", "app.internal:8080");
    CHECK(n > 0);
    if (n > 0)
        CHECK_MEM(out, (size_t)n,
                  "GET /healthz?x=1 HTTP/1.1\r\nHost: app.internal:8080\r\nUser-Agent: gatehouse-health\r\n"
                  "Connection: close\r\n\r\n");
    unit_case("request: no header injection from the config, no overflow");
    CHECK_INT(gh_health_http_request(out, sizeof(out), "GET", "/a\r\nX: y", "h"), -1);
    CHECK_INT(gh_health_http_request(out, sizeof(out), "GET", "/", "h\r\nX: y"), -1);
    CHECK_INT(gh_health_http_request(out, sizeof(out), "GE T", "/", "h"), -1);
    CHECK_INT(gh_health_http_request(out, sizeof(out), "GET", "relative", "h"), -1);
    CHECK_INT(gh_health_http_request(out, sizeof(out), "GET", "/", ""), -1);
    CHECK_INT(gh_health_http_request(out, 40, "GET", "/", "h"), -1);
    unit_case(NULL);
}

static int answer(const char *text, int *status)
{
    size_t searched = 0;
    return gh_health_http_answer(text, strlen(text), &searched, 0, &res, status);
}

static void test_answer(void)
{
    char big[GH_HEALTH_HEAD_MAX];
    size_t searched = 0;
    int status = 0;

    unit_case("answer: a valid head gives its status");
    CHECK_INT(answer("HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n", &status), 1);
    CHECK_INT(status, 204);
    CHECK_INT(answer("HTTP/1.0 503 Service Unavailable\r\nContent-Length: 3\r\n\r\nbye", &status), 1);
    CHECK_INT(status, 503);
    unit_case("answer: incomplete asks for more; garbage fails");
    CHECK_INT(answer("HTTP/1.1 200 OK\r\nServer: x\r\n", &status), 0);
    CHECK_INT(answer("SSH-2.0-OpenSSH_9.2\r\n\r\n", &status), -1);
    CHECK_INT(answer("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &status), -1);
    unit_case("answer: a head that does not fit fails");
    memset(big, 'a', sizeof(big));
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    CHECK_INT(gh_health_http_answer(big, sizeof(big), &searched, 0, &res, &status), -1);
    unit_case(NULL);
}

static const gh_health_passive passive = {.max_fails = 3, .window_ms = 1000, .eject_ms = 5000};

static void test_passive(void)
{
    gh_health_shm *shm = gh_health_shm_new(4);
    gh_health_stats st;
    int saved = gh_log_level;

    CHECK(shm != NULL);
    if (shm == NULL)
        return;
    gh_log_level = GH_LOG_ERROR; /* the ejection lines are expected */

    unit_case("passive: max_fails in a row within the window eject for eject_ms");
    CHECK(gh_health_usable(shm, 1, 10000));
    CHECK_INT(gh_health_passive_failure(shm, 1, 10000, &passive, "s", "p"), 0);
    CHECK_INT(gh_health_passive_failure(shm, 1, 10500, &passive, "s", "p"), 0);
    CHECK(gh_health_usable(shm, 1, 10500));
    CHECK_INT(gh_health_passive_failure(shm, 1, 11000, &passive, "s", "p"), 1);
    CHECK(!gh_health_usable(shm, 1, 11000));
    CHECK(!gh_health_usable(shm, 1, 15999));
    CHECK(gh_health_usable(shm, 1, 16000));
    CHECK(gh_health_usable(shm, 0, 11000)); /* its neighbour is unaffected */

    unit_case("passive: failures while ejected start no new streak");
    CHECK_INT(gh_health_passive_failure(shm, 1, 12000, &passive, "s", "p"), 0);
    gh_health_stats_get(shm, 1, &st);
    CHECK_INT(st.streak, 0);
    CHECK_INT(st.ejections, 1);
    CHECK_INT(st.passive_failures, 4);

    unit_case("passive: a success resets the streak");
    CHECK_INT(gh_health_passive_failure(shm, 2, 20000, &passive, "s", NULL), 0);
    CHECK_INT(gh_health_passive_failure(shm, 2, 20001, &passive, "s", NULL), 0);
    gh_health_passive_success(shm, 2);
    CHECK_INT(gh_health_passive_failure(shm, 2, 20002, &passive, "s", NULL), 0);
    CHECK_INT(gh_health_passive_failure(shm, 2, 20003, &passive, "s", NULL), 0);
    CHECK(gh_health_usable(shm, 2, 20003));
    CHECK_INT(gh_health_passive_failure(shm, 2, 20004, &passive, "s", NULL), 1);

    unit_case("passive: failures further apart than the window never eject");
    for (uint64_t t = 30000; t < 40000; t += 600)
        CHECK_INT(gh_health_passive_failure(shm, 3, t, &passive, NULL, NULL), 0);
    gh_health_stats_get(shm, 3, &st);
    CHECK_INT(st.ejections, 0);
    CHECK_INT(st.streak, 1); /* 600 ms apart: every other failure begins a new streak, as the last (39600) did */

    unit_case("passive: max_fails 0 turns it off; out-of-range slots are usable");
    gh_health_passive off = {0, 1000, 5000};
    for (int i = 0; i < 10; i++)
        CHECK_INT(gh_health_passive_failure(shm, 0, 50000, &off, NULL, NULL), 0);
    CHECK(gh_health_usable(shm, 0, 50000));
    CHECK(gh_health_usable(shm, 99, 50000));
    CHECK(gh_health_usable(NULL, 0, 50000));

    unit_case("active: DOWN is unusable; UNKNOWN is usable; UP lifts an ejection");
    CHECK_INT(gh_health_status_get(shm, 0), GH_HEALTH_UNKNOWN);
    CHECK_INT(gh_health_status_set(shm, 0, GH_HEALTH_DOWN), GH_HEALTH_UNKNOWN);
    CHECK(!gh_health_usable(shm, 0, 60000));
    for (int i = 0; i < 3; i++)
        gh_health_passive_failure(shm, 0, 60000, &passive, NULL, NULL);
    CHECK_INT(gh_health_status_set(shm, 0, GH_HEALTH_UP), GH_HEALTH_DOWN);
    CHECK(gh_health_usable(shm, 0, 60001));
    gh_health_stats_get(shm, 0, &st);
    CHECK_INT(st.downs, 1);

    unit_case("shm: sizes out of range are refused");
    CHECK(gh_health_shm_new(0) == NULL);
    CHECK(gh_health_shm_new(GH_HEALTH_MAX_SLOTS + 1) == NULL);
    gh_log_level = saved;
    gh_health_shm_free(shm);
    unit_case(NULL);
}

/* Children write, the parent reads: the region is shared, and concurrent streaks count exactly. */
static void test_fork(void)
{
    enum { CHILDREN = 4, FAILS = 20000 };
    gh_health_passive every10 = {.max_fails = 10, .window_ms = 1000000, .eject_ms = 0};
    gh_health_shm *shm = gh_health_shm_new(GH_HEALTH_MAX_SLOTS);
    gh_health_stats st;
    pid_t pids[CHILDREN];
    int status, saved = gh_log_level;

    unit_case("shared across fork");
    CHECK(shm != NULL);
    if (shm == NULL)
        return;
    gh_log_level = GH_LOG_ERROR;
    fflush(NULL);
    for (int c = 0; c < CHILDREN; c++) {
        pids[c] = fork();
        if (pids[c] == 0) {
            gh_health_status_set(shm, GH_HEALTH_MAX_SLOTS - 1, GH_HEALTH_DOWN);
            /* eject_ms 0: no failure is ignored, so every 10th ejects */
            for (int i = 0; i < FAILS; i++)
                gh_health_passive_failure(shm, 7, 1000, &every10, NULL, NULL);
            _exit(0);
        }
        CHECK(pids[c] > 0);
    }
    for (int c = 0; c < CHILDREN; c++)
        if (pids[c] > 0)
            CHECK(waitpid(pids[c], &status, 0) == pids[c] && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_INT(gh_health_status_get(shm, GH_HEALTH_MAX_SLOTS - 1), GH_HEALTH_DOWN);
    gh_health_stats_get(shm, 7, &st);
    CHECK_INT(st.passive_failures, CHILDREN * FAILS);
    CHECK_INT(st.ejections, CHILDREN * FAILS / 10); /* once per ejection, never twice */
    CHECK_INT(st.streak, 0);
    gh_log_level = saved;
    gh_health_shm_free(shm);
    unit_case(NULL);
}

/* ---- the prober against loopback sockets ---------------------------------------------------- */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int listen_any(gh_addr *a)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, len) < 0 || listen(fd, 64) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    memset(a, 0, sizeof(*a));
    memcpy(&a->ss, &sin, sizeof(sin));
    a->len = sizeof(sin);
    snprintf(a->text, sizeof(a->text), "127.0.0.1:%u", (unsigned)ntohs(sin.sin_port));
    return fd;
}

/*
 * Serves the HTTP probes on lfd with `answer_text` until slot reaches `want`
 * (or ms pass). Returns 1 when it did; req gets the last request seen.
 */
static int serve_until(int lfd, const char *answer_text, gh_health_shm *shm, size_t slot, int want, int ms, char *req,
                       size_t reqlen)
{
    uint64_t end = mono_ms() + (uint64_t)ms;

    while (mono_ms() < end) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        if (gh_health_status_get(shm, slot) == want)
            return 1;
        if (lfd < 0) {
            usleep(5000);
            continue;
        }
        if (poll(&pfd, 1, 10) <= 0)
            continue;
        int c = accept(lfd, NULL, NULL);
        if (c < 0)
            continue;
        struct timeval tv = {.tv_sec = 1};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char got[512];
        ssize_t n = recv(c, got, sizeof(got) - 1, 0);
        if (n > 0)
            snprintf(req, reqlen, "%.*s", (int)n, got);
        /* a TCP probe closes at once and reads nothing: answer only requests */
        if (n > 0 && send(c, answer_text, strlen(answer_text), MSG_NOSIGNAL) < 0) {
            /* the probe gave up already: the loop checks the state again */
        }
        close(c);
    }
    return gh_health_status_get(shm, slot) == want;
}

static void test_prober(void)
{
    gh_health_shm *shm = gh_health_shm_new(2);
    gh_health_target t[2];
    gh_addr a;
    char req[512] = "";
    int lfd, status, saved = gh_log_level;
    pid_t pid;

    unit_case("prober: TCP and HTTP verdicts follow a loopback server");
    lfd = listen_any(&a);
    CHECK(shm != NULL && lfd >= 0);
    if (shm == NULL || lfd < 0)
        return;
    memset(t, 0, sizeof(t));
    t[0] = (gh_health_target){
        .slot = 0, .addr = a, .type = GH_PROBE_TCP, .interval_ms = 50, .timeout_ms = 200, .rise = 2, .fall = 2};
    t[1] = (gh_health_target){.slot = 1,
                              .addr = a,
                              .pool = "app",
                              .type = GH_PROBE_HTTP,
                              .path = "/healthz",
                              .status_min = 200,
                              .status_max = 299,
                              .interval_ms = 50,
                              .timeout_ms = 200,
                              .rise = 2,
                              .fall = 2};
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        gh_log_level = GH_LOG_ERROR; /* the transitions are expected */
        close(lfd);
        _exit(gh_health_run(t, 2, shm, NULL, NULL));
    }
    CHECK(pid > 0);
    if (pid < 0)
        goto out;
    CHECK(serve_until(lfd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", shm, 1, GH_HEALTH_UP, 2000, req,
                      sizeof(req)));
    CHECK(strncmp(req, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:", 39) == 0);
    CHECK(serve_until(lfd, "HTTP/1.1 200 OK\r\n\r\n", shm, 0, GH_HEALTH_UP, 2000, req, sizeof(req)));
    unit_case("prober: a status out of range brings HTTP down, not TCP");
    CHECK(serve_until(lfd, "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", shm, 1, GH_HEALTH_DOWN, 2000, req,
                      sizeof(req)));
    CHECK_INT(gh_health_status_get(shm, 0), GH_HEALTH_UP);
    unit_case("prober: rise passes bring it back up");
    CHECK(serve_until(lfd, "HTTP/1.1 200 OK\r\n\r\n", shm, 1, GH_HEALTH_UP, 2000, req, sizeof(req)));
    unit_case("prober: a closed port brings both down");
    close(lfd);
    lfd = -1;
    CHECK(serve_until(-1, "", shm, 0, GH_HEALTH_DOWN, 2000, req, sizeof(req)));
    CHECK(serve_until(-1, "", shm, 1, GH_HEALTH_DOWN, 2000, req, sizeof(req)));
    unit_case("prober: SIGTERM stops it cleanly");
    kill(pid, SIGTERM);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
out:
    if (lfd >= 0)
        close(lfd);
    gh_log_level = saved;
    gh_health_shm_free(shm);
    unit_case(NULL);
}

enum { OWNER_B = 0xb0b, OWNER_C = 0xc0c };

static gh_addr addr_of(const char *text)
{
    gh_addr a;

    memset(&a, 0, sizeof(a));
    gh_addr_parse(&a, text);
    return a;
}

/* A slot given to another server at a reload: what B's verdicts were must not follow C. */
static void test_moved_slot(void)
{
    const gh_health_passive eject_1h = {.max_fails = 1, .window_ms = 1000, .eject_ms = 3600000};
    gh_health_shm *shm = gh_health_shm_new(8);
    gh_addr_shm *addrs = gh_addr_shm_new(8);
    gh_health_ref rb, rc;
    gh_health_stats st;
    gh_addr a = addr_of("127.0.0.1:1"), got;
    int saved = gh_log_level;

    CHECK(shm != NULL && addrs != NULL);
    if (shm == NULL || addrs == NULL)
        return;
    gh_log_level = GH_LOG_ERROR;
    unit_case("health_moved_slot_starts_clean: the same server keeps its slot's state across a claim");
    rb = gh_health_claim(shm, 5, OWNER_B);
    gh_addr_shm_claim(addrs, rb);
    CHECK_INT(gh_health_status_set(shm, rb, GH_HEALTH_DOWN), GH_HEALTH_UNKNOWN);
    CHECK_INT(gh_health_status_set(shm, rb, GH_HEALTH_UP), GH_HEALTH_DOWN);
    CHECK_INT(gh_health_passive_failure(shm, rb, 1000, &eject_1h, "B", "p"), 1);
    CHECK(!gh_health_usable(shm, rb, 2000));
    gh_addr_shm_set(addrs, rb, &a);
    CHECK(gh_addr_shm_get(addrs, rb, &got) == 1 && strcmp(got.text, "127.0.0.1:1") == 0);
    CHECK(gh_health_claim(shm, 5, OWNER_B) == rb);
    CHECK(!gh_health_usable(shm, rb, 2000));
    CHECK(gh_health_ref_of(shm, 5, OWNER_B) == rb);

    unit_case("health_moved_slot_starts_clean: another server at the slot is usable at once, with no streak");
    CHECK_INT(gh_health_status_set(shm, rb, GH_HEALTH_DOWN), GH_HEALTH_UP);
    rc = gh_health_claim(shm, 5, OWNER_C);
    gh_addr_shm_claim(addrs, rc);
    CHECK(rc != rb && gh_health_ref_index(rc) == 5);
    CHECK(gh_health_usable(shm, rc, 2000));
    CHECK_INT(gh_health_status_get(shm, rc), GH_HEALTH_UNKNOWN);
    gh_health_stats_get(shm, 5, &st);
    CHECK_INT(st.ejected_until, 0);
    CHECK_INT(st.streak, 0);
    CHECK_INT(gh_addr_shm_get(addrs, rc, &got), 0); /* B's published address is not C's */
    CHECK(gh_health_ref_of(shm, 5, OWNER_C) == rc);
    CHECK(gh_health_ref_index(gh_health_ref_of(shm, 5, OWNER_B)) == 5 &&
          gh_health_ref_of(shm, 5, OWNER_B) >> 32 == GH_HEALTH_NO_EPOCH);

    unit_case("health_old_writer_cannot_write_a_moved_slot: B's prober and B's old generations write nothing on C");
    CHECK_INT(gh_health_status_set(shm, rb, GH_HEALTH_DOWN), GH_HEALTH_UNKNOWN);
    CHECK_INT(gh_health_passive_failure(shm, rb, 3000, &eject_1h, "B", "p"), 0);
    gh_addr_shm_set(addrs, rb, &a);
    CHECK(gh_health_usable(shm, rc, 3000));
    CHECK_INT(gh_health_status_get(shm, rc), GH_HEALTH_UNKNOWN);
    CHECK_INT(gh_addr_shm_get(addrs, rc, &got), 0);
    CHECK(gh_health_usable(shm, rb, 3000)); /* and B's old readers see no verdict of C's */
    /* C's own streak is C's: B's success does not clear it, C's does. */
    {
        const gh_health_passive three = {.max_fails = 3, .window_ms = 100000, .eject_ms = 1000};

        gh_health_passive_failure(shm, rc, 4000, &three, "C", "p");
        gh_health_passive_success(shm, rb);
        gh_health_stats_get(shm, 5, &st);
        CHECK_INT(st.streak, 1);
        gh_health_passive_success(shm, rc);
        gh_health_stats_get(shm, 5, &st);
        CHECK_INT(st.streak, 0);
    }
    gh_addr_shm_set(addrs, rc, &a);
    CHECK_INT(gh_addr_shm_get(addrs, rc, &got), 1);
    CHECK(gh_health_claim(shm, 99, OWNER_C) >> 32 == GH_HEALTH_NO_EPOCH); /* out of range */
    gh_log_level = saved;
    gh_addr_shm_free(addrs);
    gh_health_shm_free(shm);
    unit_case(NULL);
}

/* The old prober keeps writing while the master gives its slot away: nothing of it may land after the claim. */
static void test_moved_slot_race(void)
{
    const gh_health_passive eject_1h = {.max_fails = 1, .window_ms = 1000, .eject_ms = 3600000};
    gh_health_shm *shm = gh_health_shm_new(4);
    gh_addr_shm *addrs = gh_addr_shm_new(4);
    gh_addr a = addr_of("127.0.0.1:1"), got;
    gh_health_ref rb, rc;
    gh_health_stats st;
    int pfd[2], status, saved = gh_log_level;
    char c;
    pid_t pid;

    unit_case("health_old_writer_cannot_write_a_moved_slot: racing writers of the previous occupant");
    CHECK(shm != NULL && addrs != NULL && pipe(pfd) == 0);
    if (shm == NULL || addrs == NULL)
        return;
    gh_log_level = GH_LOG_ERROR; /* the child ejects thousands of times */
    rb = gh_health_claim(shm, 2, OWNER_B);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        for (int i = 0; i < 200000; i++) {
            gh_health_status_set(shm, rb, i & 1 ? GH_HEALTH_DOWN : GH_HEALTH_UP);
            gh_health_passive_failure(shm, rb, 1000 + (uint64_t)i, &eject_1h, NULL, NULL);
            gh_addr_shm_set(addrs, rb, &a);
            if (i == 1000 && write(pfd[1], "x", 1) != 1)
                _exit(2);
        }
        _exit(0);
    }
    CHECK(read(pfd[0], &c, 1) == 1); /* the writer is under way */
    rc = gh_health_claim(shm, 2, OWNER_C);
    gh_addr_shm_claim(addrs, rc);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(gh_health_usable(shm, rc, 5000));
    CHECK_INT(gh_health_status_get(shm, rc), GH_HEALTH_UNKNOWN);
    gh_health_stats_get(shm, 2, &st);
    CHECK_INT(st.status, GH_HEALTH_UNKNOWN);
    CHECK_INT(st.ejected_until, 0);
    CHECK_INT(st.streak, 0);
    CHECK_INT(gh_addr_shm_get(addrs, rc, &got), 0);
    close(pfd[0]);
    close(pfd[1]);
    gh_log_level = saved;
    gh_addr_shm_free(addrs);
    gh_health_shm_free(shm);
    unit_case(NULL);
}

static gh_addr v4(const char *ip, int port)
{
    gh_addr a;
    char text[64];

    snprintf(text, sizeof(text), "%s:%d", ip, port);
    CHECK(gh_addr_parse(&a, text) == 0);
    return a;
}

/* Slots of a name across re-resolutions (health_check_probes_stale_address_after_reresolution, A7). */
static void test_addrs(void)
{
    gh_addr cur[4] = {0}, next[4], found[6];
    gh_addr a = v4("10.0.0.1", 80), b = v4("10.0.0.2", 80), c = v4("10.0.0.3", 80), d = v4("10.0.0.4", 80);
    gh_addr e = v4("10.0.0.5", 80), none = {0}, got;
    gh_addr_shm *shm;

    unit_case("addr: the same endpoint, whatever the text; another port is another one");
    got = a;
    snprintf(got.text, sizeof(got.text), "other text");
    CHECK(gh_addr_same(&a, &got) && !gh_addr_same(&a, &b));
    got = v4("10.0.0.1", 81);
    CHECK(!gh_addr_same(&a, &got) && !gh_addr_same(&a, &none) && gh_addr_same(&none, &none));

    unit_case("assign: empty slots fill in order; duplicates count once");
    found[0] = a, found[1] = b, found[2] = a;
    CHECK_INT(gh_addr_assign(cur, next, 4, found, 3), 0);
    CHECK(gh_addr_same(&next[0], &a) && gh_addr_same(&next[1], &b) && next[2].len == 0 && next[3].len == 0);

    unit_case("assign: an address still there keeps its slot; a gone one leaves it empty; a new one fills a hole");
    memcpy(cur, next, sizeof(cur));
    found[0] = c, found[1] = b; /* a left, c came: c takes a's slot, b stays in slot 1 */
    CHECK_INT(gh_addr_assign(cur, next, 4, found, 2), 0);
    CHECK(gh_addr_same(&next[0], &c) && gh_addr_same(&next[1], &b) && next[2].len == 0);
    memcpy(cur, next, sizeof(cur));
    found[0] = b; /* only b: slot 0 empties, b does not move */
    CHECK_INT(gh_addr_assign(cur, next, 4, found, 1), 0);
    CHECK(next[0].len == 0 && gh_addr_same(&next[1], &b) && next[2].len == 0 && next[3].len == 0);

    unit_case("assign: more addresses than slots: the extra ones are counted, not placed");
    memcpy(cur, next, sizeof(cur));
    found[0] = a, found[1] = b, found[2] = c, found[3] = d, found[4] = e, found[5] = e;
    CHECK_INT(gh_addr_assign(cur, next, 4, found, 6), 1);
    CHECK(gh_addr_same(&next[1], &b)); /* kept */
    CHECK(gh_addr_same(&next[0], &a) && gh_addr_same(&next[2], &c) && gh_addr_same(&next[3], &d));

    unit_case("addr shm: current is the published address, else the loaded one; none is published too");
    shm = gh_addr_shm_new(4);
    CHECK(shm != NULL);
    if (shm == NULL)
        return;
    CHECK(gh_addr_shm_current(shm, 0, &a, &got) == 1 && gh_addr_same(&got, &a));
    CHECK(gh_addr_shm_current(shm, 1, NULL, &got) == 0 && got.len == 0);
    uint64_t v0 = gh_addr_shm_version(shm, 0);
    gh_addr_shm_set(shm, 0, &b);
    CHECK(gh_addr_shm_version(shm, 0) != v0);
    CHECK(gh_addr_shm_current(shm, 0, &a, &got) == 1 && gh_addr_same(&got, &b));
    uint64_t v1 = gh_addr_shm_version(shm, 0);
    gh_addr_shm_set(shm, 0, &none);
    CHECK(gh_addr_shm_version(shm, 0) != v1);
    CHECK(gh_addr_shm_current(shm, 0, &a, &got) == 0 && got.len == 0); /* the loaded a is gone too */
    CHECK(gh_addr_shm_version(shm, 9) == 0 && gh_addr_shm_current(shm, 9, &a, &got) == 1);
    gh_addr_shm_claim(shm, 0); /* a load forgets what was published */
    CHECK(gh_addr_shm_current(shm, 0, &a, &got) == 1 && gh_addr_same(&got, &a));
    gh_addr_shm_free(shm);
    unit_case(NULL);
}

/* A new address is another server: pending until probed, no ejection carried over. */
static void test_slot_reset(void)
{
    gh_health_shm *shm = gh_health_shm_new(2);
    gh_health_passive p = {.max_fails = 1, .window_ms = 1000, .eject_ms = 100000};
    int saved = gh_log_level;

    CHECK(shm != NULL);
    if (shm == NULL)
        return;
    gh_log_level = GH_LOG_ERROR; /* the ejection's warn line */
    unit_case("slot reset: PENDING is unusable and clears an ejection; UNKNOWN is usable");
    CHECK_INT(gh_health_passive_failure(shm, 0, 1000, &p, NULL, NULL), 1);
    CHECK(!gh_health_usable(shm, 0, 2000));
    gh_health_slot_reset(shm, 0, GH_HEALTH_PENDING);
    CHECK(!gh_health_usable(shm, 0, 2000));
    CHECK_INT(gh_health_status_set(shm, 0, GH_HEALTH_UP), GH_HEALTH_PENDING);
    CHECK(gh_health_usable(shm, 0, 2000));
    CHECK_INT(gh_health_passive_failure(shm, 0, 3000, &p, NULL, NULL), 1);
    gh_health_slot_reset(shm, 0, GH_HEALTH_UNKNOWN);
    CHECK(gh_health_usable(shm, 0, 3001));
    gh_log_level = saved;
    gh_health_shm_free(shm);
    unit_case(NULL);
}

static void no_tick(void *arg, gh_loop *loop, void (*done)(void *), void *done_arg)
{
    (void)arg;
    done(done_arg); /* nothing to resolve here: the test changes the published address itself */
}

/* health_check_probes_stale_address_after_reresolution (A7), at the prober itself. */
static void test_prober_follows_address(void)
{
    gh_health_shm *shm = gh_health_shm_new(1);
    gh_addr_shm *addrs = gh_addr_shm_new(1);
    gh_health_target t;
    gh_health_tick tick = {no_tick, NULL, NULL, 20};
    gh_addr live, dead;
    char req[512] = "";
    int lfd, dfd, status, saved = gh_log_level;
    pid_t pid;

    unit_case("prober: a name's target probes the slot's published address, not the one from the load");
    lfd = listen_any(&live);
    dfd = listen_any(&dead);
    CHECK(shm != NULL && addrs != NULL && lfd >= 0 && dfd >= 0);
    if (shm == NULL || addrs == NULL || lfd < 0 || dfd < 0)
        return;
    close(dfd); /* nothing listens there any more: probing it fails */
    memset(&t, 0, sizeof(t));
    t = (gh_health_target){.slot = 0,
                           .addr = dead,
                           .name = "app.test:80",
                           .type = GH_PROBE_TCP,
                           .interval_ms = 50,
                           .timeout_ms = 200,
                           .rise = 1,
                           .fall = 1000}; /* 50 s of failures: only a reset verdict goes down within 2 s */
    gh_addr_shm_set(addrs, 0, &live);     /* re-resolved before the prober started */
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        gh_log_level = GH_LOG_ERROR;
        close(lfd);
        _exit(gh_health_run(&t, 1, shm, addrs, &tick));
    }
    CHECK(pid > 0);
    if (pid < 0)
        goto out;
    CHECK(serve_until(lfd, "", shm, 0, GH_HEALTH_UP, 2000, req, sizeof(req)));
    unit_case("prober: a new address is judged by its first probe (fall does not apply to another server)");
    gh_addr_shm_set(addrs, 0, &dead);
    CHECK(serve_until(-1, "", shm, 0, GH_HEALTH_DOWN, 2000, req, sizeof(req)));
    unit_case("prober: a slot with no address is not probed and keeps its verdict");
    gh_addr_shm_set(addrs, 0, &(gh_addr){0});
    gh_health_status_set(shm, 0, GH_HEALTH_UNKNOWN);
    usleep(300000);
    CHECK_INT(gh_health_status_get(shm, 0), GH_HEALTH_UNKNOWN);
    kill(pid, SIGTERM);
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
out:
    close(lfd);
    gh_log_level = saved;
    gh_addr_shm_free(addrs);
    gh_health_shm_free(shm);
    unit_case(NULL);
}

void suite_health(void)
{
    test_fsm();
    test_request();
    test_answer();
    test_passive();
    test_fork();
    test_moved_slot();
    test_moved_slot_race();
    test_prober();
    test_addrs();
    test_slot_reset();
    test_prober_follows_address();
}
