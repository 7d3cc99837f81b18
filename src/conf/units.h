/*
 * units: the human numbers of the config file. Pure functions, no allocation.
 * Digits only (no sign, spaces or exponent), a unit suffix, and overflow is an
 * error rather than a wrap.
 */
#ifndef GH_CONF_UNITS_H
#define GH_CONF_UNITS_H

#include <stddef.h>
#include <stdint.h>

/*
 * A size: "512" (bytes), "16k", "1m", "1g" (binary: 1k = 1024; the suffix may
 * be upper case). Returns 0 with *bytes set, or -1 with a short reason in *why.
 */
int gh_conf_parse_size(const char *s, size_t len, uint64_t *bytes, const char **why);

/*
 * A duration: "500ms", "10s", "5m", "1h", or a bare number of seconds.
 * Zero is refused (every timeout is on) and so is anything beyond
 * UINT32_MAX ms (about 49 days). Returns 0 with *ms set, or -1 and *why.
 */
int gh_conf_parse_duration(const char *s, size_t len, uint32_t *ms, const char **why);

/* An integer in [min, max], digits only. Returns 0 or -1. */
int gh_conf_parse_uint(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out);

#endif
