/*
 * source: where a configuration's inputs come from. Loading a file reads the
 * main file, its includes (a glob lists them), certificate and key files, and
 * resolves server names; all four go through a gh_conf_source, so that the
 * same loader runs on the filesystem (the master) and on a reload bundle (a
 * worker, which must neither block on the disk nor on DNS: bundle.h).
 *
 * The operations have the contracts of the libc calls they stand for
 * (glob(3), getaddrinfo(3)), so the loader reads the same either way.
 */
#ifndef GH_CONF_SOURCE_H
#define GH_CONF_SOURCE_H

#include <glob.h>
#include <netdb.h>
#include <stddef.h>

/* A whole file: data (NUL-terminated at len) and its canonical path, both malloc'd. */
typedef struct gh_conf_file {
    char *data;
    size_t len;
    char *real; /* realpath(3): what include cycles are detected on */
} gh_conf_file;

typedef struct gh_conf_source gh_conf_source;
struct gh_conf_source {
    /* The regular file at path, at most max bytes: 0, or an errno value (EFBIG: larger, EINVAL: not a regular file). */
    int (*read)(const gh_conf_source *s, const char *path, size_t max, gh_conf_file *out);
    /* glob(pattern, 0, ...) sorted; a directory that does not exist matches nothing. */
    int (*glob)(const gh_conf_source *s, const char *pattern, glob_t *g);
    void (*globfree)(const gh_conf_source *s, glob_t *g);
    int (*getaddrinfo)(const gh_conf_source *s, const char *host, const char *port, const struct addrinfo *hints,
                       struct addrinfo **res);
    void (*freeaddrinfo)(const gh_conf_source *s, struct addrinfo *res);
    void *arg;
};

/* The filesystem and the system resolver (blocking: for the master). */
const gh_conf_source *gh_conf_source_fs(void);

void gh_conf_file_dispose(gh_conf_file *f);

#endif
