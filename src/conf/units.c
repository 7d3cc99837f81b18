#include "conf/units.h"

#include <string.h>

/*
 * Reads the leading digits of s[0..len) into *v; returns 1, 0 when there
 * are none, or -1 when the value would exceed max. Checking before
 * each multiply means the accumulator can never wrap.
 */
static int leading_digits(const char *s, size_t len, uint64_t max, uint64_t *v)
{
    size_t i;

    *v = 0;
    for (i = 0; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        uint64_t d = (uint64_t)(s[i] - '0');

        if (*v > (max - d) / 10)
            return -1;
        *v = *v * 10 + d;
    }
    return i > 0;
}

static size_t count_digits(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    return i;
}

int gh_conf_parse_uint(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v;

    if (len == 0 || count_digits(s, len) != len || leading_digits(s, len, UINT64_MAX, &v) < 0)
        return -1;
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int suffix_is(const char *s, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(s, want, len) == 0;
}

/* Bytes per size suffix, or 0 when the suffix is unknown. */
static uint64_t size_unit(const char *s, size_t len)
{
    if (len == 0)
        return 1;
    if (len == 1 && (s[0] == 'k' || s[0] == 'K'))
        return 1024;
    if (len == 1 && (s[0] == 'm' || s[0] == 'M'))
        return 1024 * 1024;
    if (len == 1 && (s[0] == 'g' || s[0] == 'G'))
        return 1024 * 1024 * 1024;
    return 0;
}

int gh_conf_parse_size(const char *s, size_t len, uint64_t *bytes, const char **why)
{
    size_t nd = count_digits(s, len);
    uint64_t v, unit;

    *why = "expected a size such as 512, 16k, 1m or 1g";
    if (nd == 0)
        return -1;
    unit = size_unit(s + nd, len - nd);
    if (unit == 0)
        return -1;
    if (leading_digits(s, nd, UINT64_MAX, &v) < 0 || v > UINT64_MAX / unit) {
        *why = "too large";
        return -1;
    }
    *bytes = v * unit;
    return 0;
}

/* Milliseconds per duration suffix, or 0 when unknown. A bare number is seconds, as on the command line. */
static uint32_t duration_unit(const char *s, size_t len)
{
    if (len == 0 || suffix_is(s, len, "s"))
        return 1000;
    if (suffix_is(s, len, "ms"))
        return 1;
    if (suffix_is(s, len, "m"))
        return 60 * 1000;
    if (suffix_is(s, len, "h"))
        return 3600 * 1000;
    return 0;
}

int gh_conf_parse_duration(const char *s, size_t len, uint32_t *ms, const char **why)
{
    size_t nd = count_digits(s, len);
    uint32_t unit;
    uint64_t v;

    *why = "expected a duration such as 500ms, 10s, 5m or 1h";
    if (nd == 0)
        return -1;
    unit = duration_unit(s + nd, len - nd);
    if (unit == 0)
        return -1;
    if (leading_digits(s, nd, UINT32_MAX, &v) < 0 || v > UINT32_MAX / unit) {
        *why = "too long (the maximum is 1193h)";
        return -1;
    }
    if (v == 0) {
        *why = "must be greater than zero (every timeout is on)";
        return -1;
    }
    *ms = (uint32_t)(v * unit);
    return 0;
}
