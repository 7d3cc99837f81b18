/*
 * libFuzzer target for src/tls/hello.c (the ClientHello's SNI, read from bytes a client sent
 * before any TLS) and src/proxy/pg.c (the PostgreSQL client's first message): no read past the
 * input, a name that is always a bounded lowercase host name, and the same answer for the same
 * bytes whatever follows them once the hello is complete.
 *
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       -o build-fuzz/fuzz_hello tests/fuzz/fuzz_hello.c src/tls/hello.c src/proxy/pg.c
 *   build-fuzz/fuzz_hello -max_total_time=60
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "proxy/pg.h"
#include "tls/hello.h"

#define REQUIRE(cond)                                                                                                  \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            __builtin_trap();                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char sni[GH_TLS_SNI_MAX];
    unsigned char *copy;
    int rc;

    if (size > GH_TLS_HELLO_MAX + 64)
        return 0;
    /* an exact-size heap copy: ASan sees any read past the end */
    if ((copy = malloc(size ? size : 1)) == NULL)
        return 0;
    memcpy(copy, data, size);
    rc = gh_tls_hello_sni(copy, size, sni, sizeof(sni));
    REQUIRE(rc == GH_OK || rc == GH_AGAIN || rc == GH_ERROR);
    if (rc == GH_OK) {
        size_t n = strlen(sni);
        REQUIRE(n < GH_TLS_SNI_MAX);
        for (size_t i = 0; i < n; i++)
            REQUIRE((sni[i] >= 'a' && sni[i] <= 'z') || (sni[i] >= '0' && sni[i] <= '9') || sni[i] == '-' ||
                    sni[i] == '_' || sni[i] == '.');
    }
    rc = gh_pg_first(copy, size);
    REQUIRE(rc >= GH_PG_MORE && rc <= GH_PG_INVALID);
    free(copy);
    return 0;
}
