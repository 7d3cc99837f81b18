/*
 * libFuzzer target for the PROXY protocol parser (src/net/proxyproto.c):
 * arbitrary bytes must never read outside the input, a header's length must
 * lie within it, every TLV slice within the header, one byte less of a whole
 * header must be "incomplete", and what was parsed must survive being
 * written again (v1 and v2) and read back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/proxyproto.h"

static void within(const gh_pp_slice *s, const uint8_t *buf, size_t n)
{
    if (s->p != NULL && (s->p < buf || s->p + s->len > buf + n))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gh_pp_header h, again;
    uint8_t out[GH_PP_MAX];
    const char *why;
    ssize_t r = gh_pp_parse(data, size, &h, &why);

    if (r == GH_PP_INCOMPLETE || r == GH_PP_MALFORMED)
        return 0;
    if (r <= 0 || (size_t)r > size || (size_t)r > GH_PP_MAX)
        abort();
    within(&h.alpn, data, (size_t)r);
    within(&h.authority, data, (size_t)r);
    within(&h.unique_id, data, (size_t)r);
    within(&h.ssl_version, data, (size_t)r);
    within(&h.ssl_cipher, data, (size_t)r);
    within(&h.ssl_cn, data, (size_t)r);
    if (gh_pp_parse(data, (size_t)r - 1, &again, &why) != GH_PP_INCOMPLETE)
        abort();
    if (h.local)
        return 0;
    gh_pp_info i = {.src = (const struct sockaddr *)&h.src, .dst = (const struct sockaddr *)&h.dst};
    for (int v = 1; v <= 2; v++) {
        ssize_t n = v == 1 ? gh_pp_write_v1((char *)out, sizeof(out), &i) : gh_pp_write_v2(out, sizeof(out), &i);
        if (n <= 0 || gh_pp_parse(out, (size_t)n, &again, &why) != n || again.local)
            abort();
        if (memcmp(&again.src, &h.src, sizeof(h.src)) != 0 && h.src.ss_family == again.src.ss_family)
            abort(); /* the same family back: the same address and port (a mapped IPv6 comes back as IPv4) */
    }
    return 0;
}
