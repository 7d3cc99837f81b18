/* Runs every unit-test suite, or those named on the command line. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "unit.h"

struct suite {
    const char *name;
    void (*run)(void);
};

/* One line per suite. */
static const struct suite suites[] = {
    {"h1", suite_h1},
    {"h1_path", suite_h1_path},
    {"balance", suite_balance},
    {"headers", suite_headers},
    {"loop", suite_loop},
    {"conf", suite_conf},
    {"conf_setters", suite_conf_setters},
    {"router", suite_router},
    {"health", suite_health},
    {"conn", suite_conn},
    {"limit", suite_limit},
    {"tickets", suite_tickets},
    {"ws", suite_ws},
    {"tunnel", suite_tunnel},
    {"cidr", suite_cidr},
    {"dns", suite_dns},
    {"forward", suite_forward},
    {"ratelimit", suite_ratelimit},
    {"peerlimit", suite_peerlimit},
    {"stream", suite_stream},
    {"h2_head", suite_h2_head},
    {"h2_mem", suite_h2_mem},
    {"proxyproto", suite_proxyproto},
    {"metrics", suite_metrics},
    {"sandbox", suite_sandbox},
    {"logesc", suite_logesc},
    {"memconn", suite_memconn},
};

static unsigned long passed, failed;
static const char *cur_suite = "";
static char cur_case[256];

void unit_case(const char *fmt, ...)
{
    va_list ap;

    cur_case[0] = '\0';
    if (fmt == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(cur_case, sizeof(cur_case), fmt, ap);
    va_end(ap);
}

void unit_check(int ok, const char *file, int line, const char *fmt, ...)
{
    va_list ap;

    if (ok) {
        passed++;
        return;
    }
    failed++;
    fprintf(stderr, "%s:%d: [%s]%s%s: ", file, line, cur_suite, cur_case[0] ? " " : "", cur_case);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Prints bytes with C escapes so that CR, LF and NUL show up in failure messages. */
static void put_escaped(const char *p, unsigned long len)
{
    for (unsigned long i = 0; i < len && i < 200; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r')
            fputs("\\r", stderr);
        else if (c == '\n')
            fputs("\\n", stderr);
        else if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
}

void unit_check_mem(const char *p, unsigned long len, const char *want, unsigned long wlen, const char *file, int line,
                    const char *what)
{
    int ok = len == wlen && (len == 0 || (p != NULL && memcmp(p, want, len) == 0));

    unit_check(ok, file, line, "%s differs", what);
    if (ok)
        return;
    fputs("    got  \"", stderr);
    if (p != NULL)
        put_escaped(p, len);
    fputs("\"\n    want \"", stderr);
    put_escaped(want, wlen);
    fputs("\"\n", stderr);
}

int main(int argc, char **argv)
{
    size_t nsuites = sizeof(suites) / sizeof(suites[0]), ran = 0;

    for (size_t i = 0; i < nsuites; i++) {
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++)
            wanted |= strcmp(argv[a], suites[i].name) == 0;
        if (!wanted)
            continue;
        cur_suite = suites[i].name;
        unit_case(NULL);
        suites[i].run();
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no suite matches; suites:");
        for (size_t i = 0; i < nsuites; i++)
            fprintf(stderr, " %s", suites[i].name);
        fputc('\n', stderr);
        failed++;
    }
    printf("%lu passed, %lu failed\n", passed, failed);
    return failed ? 1 : 0;
}
