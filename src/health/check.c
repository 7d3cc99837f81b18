#include "health/check.h"

#include <string.h>

#include "core/common.h"
#include "health/state.h"

/* RFC 9110 section 5.6.2 tchar. */
static int is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int is_token(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!is_tchar((unsigned char)*s))
            return 0;
    return 1;
}

/* Visible ASCII only: no space, no control byte, nothing that could end a line. */
static int is_visible(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return 0;
    return 1;
}

static int put(char *out, size_t outlen, size_t *n, const char *s)
{
    size_t len = strlen(s);

    if (len > outlen - *n)
        return -1;
    memcpy(out + *n, s, len);
    *n += len;
    return 0;
}

ssize_t gh_health_http_request(char *out, size_t outlen, const char *method, const char *path, const char *host)
{
    const char *parts[] = {method, " ",
                           path,   " HTTP/1.1\r\nHost: ",
                           host,   "\r\nUser-Agent: gatehouse-health\r\nConnection: close\r\n\r\n"};
    size_t n = 0;

    if (!is_token(method) || path[0] != '/' || !is_visible(path) || !is_visible(host))
        return -1;
    for (size_t i = 0; i < GH_ARRAY_LEN(parts); i++)
        if (put(out, outlen, &n, parts[i]) < 0)
            return -1;
    return (ssize_t)n;
}

int gh_health_http_answer(const char *buf, size_t len, size_t *searched, int head_request, gh_h1_response *res,
                          int *status)
{
    size_t end = gh_h1_head_end(buf, len, *searched);

    *searched = len;
    if (end == 0)
        return len < GH_HEALTH_HEAD_MAX ? 0 : -1;
    if (gh_h1_parse_response(buf, end, head_request, res) <= 0)
        return -1;
    *status = res->status;
    return 1;
}

int gh_health_fsm_step(gh_health_fsm *f, int ok, uint32_t rise, uint32_t fall)
{
    int want = ok ? GH_HEALTH_UP : GH_HEALTH_DOWN;
    uint32_t need = ok ? rise : fall;

    if (f->status == GH_HEALTH_UNKNOWN) {
        f->status = (uint8_t)want;
        f->streak = 0;
        return want;
    }
    if (f->status == want) {
        f->streak = 0;
        return 0;
    }
    if (++f->streak < (need ? need : 1))
        return 0;
    f->status = (uint8_t)want;
    f->streak = 0;
    return want;
}

int gh_health_pg_answer(const char *buf, size_t len)
{
    if (len == 0)
        return 0;
    return buf[0] == 'S' || buf[0] == 'N' ? 1 : -1;
}

/* An answer that begins as expected and may still become it: 0; the whole of it: 1; anything else: -1. */
static int prefix_answer(const char *buf, size_t len, const char *want)
{
    size_t n = strlen(want);

    if (memcmp(buf, want, len < n ? len : n) != 0)
        return -1;
    return len >= n ? 1 : 0;
}

int gh_health_redis_answer(const char *buf, size_t len)
{
    int pong = prefix_answer(buf, len, "+PONG\r\n");

    return pong >= 0 ? pong : prefix_answer(buf, len, "-NOAUTH");
}
