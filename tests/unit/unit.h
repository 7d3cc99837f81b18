/*
 * unit: a tiny test harness. A suite is a plain function that runs CHECKs; each CHECK
 * counts as one test. Failures print "file:line: [suite] case: what failed" and the run
 * ends with "N passed, N failed".
 *
 * Adding a suite: write `void suite_foo(void)` in tests/unit/test_foo.c, declare it below
 * and add one line to the table in main.c. Test files keep their helpers `static` and
 * prefix nothing with gh_, so they never clash with the sources they are linked with.
 */
#ifndef GH_TESTS_UNIT_H
#define GH_TESTS_UNIT_H

/* Records one check; prints the printf-style message when ok is 0. */
void unit_check(int ok, const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Names the case that the following checks belong to (printed with failures); NULL clears. */
void unit_case(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define CHECK(cond) unit_check(!!(cond), __FILE__, __LINE__, "CHECK(%s)", #cond)

/* Integer equality that prints both sides on failure. */
#define CHECK_INT(got, want)                                                                                           \
    do {                                                                                                               \
        long long got_ = (long long)(got), want_ = (long long)(want);                                                  \
        unit_check(got_ == want_, __FILE__, __LINE__, "%s is %lld, want %lld", #got, got_, want_);                     \
    } while (0)

/* A (pointer, length) pair equal to a string literal. */
#define CHECK_MEM(p, len, lit) unit_check_mem((p), (len), (lit), sizeof(lit) - 1, __FILE__, __LINE__, #p)

void unit_check_mem(const char *p, unsigned long len, const char *want, unsigned long wlen, const char *file, int line,
                    const char *what);

/* The suites. */
void suite_h1(void);
void suite_h1_path(void);
void suite_balance(void);
void suite_headers(void);
void suite_loop(void);
void suite_conf(void);
void suite_conf_setters(void);
void suite_router(void);
void suite_health(void);
void suite_conn(void);
void suite_limit(void);
void suite_tickets(void);
void suite_ws(void);
void suite_tunnel(void);
void suite_ratelimit(void);
void suite_peerlimit(void);
void suite_cidr(void);
void suite_dns(void);
void suite_stream(void);
void suite_h2_head(void);
void suite_proxyproto(void);
void suite_metrics(void);
void suite_forward(void);
void suite_sandbox(void);
void suite_logesc(void);
void suite_h2_mem(void);
void suite_memconn(void);

#endif
