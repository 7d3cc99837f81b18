/*
 * source: the filesystem implementation of gh_conf_source (see source.h).
 */
#include "conf/source.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void gh_conf_file_dispose(gh_conf_file *f)
{
    free(f->data);
    free(f->real);
    f->data = f->real = NULL;
    f->len = 0;
}

/* Reads a whole regular file of at most max bytes into a malloc'd, NUL-terminated buffer. */
static int fs_read(const gh_conf_source *s, const char *path, size_t max, gh_conf_file *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), e = 0;
    struct stat st;
    size_t got = 0;
    char *b = NULL;

    (void)s;
    if (fd < 0)
        return errno;
    if (fstat(fd, &st) < 0)
        e = errno;
    else if (S_ISDIR(st.st_mode))
        e = EISDIR;
    else if (!S_ISREG(st.st_mode))
        e = EINVAL;
    else if ((uint64_t)st.st_size > max)
        e = EFBIG;
    else if ((b = malloc((size_t)st.st_size + 1)) == NULL)
        e = ENOMEM;
    while (e == 0 && got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            e = n < 0 ? errno : EIO; /* shrank while we read it */
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (e == 0 && (out->real = realpath(path, NULL)) == NULL)
        e = errno;
    if (e != 0) {
        free(b);
        return e;
    }
    b[got] = '\0';
    out->data = b;
    out->len = got;
    return 0;
}

/* A directory that does not exist matches nothing; one we may not read is an error. */
static int glob_error(const char *path, int e)
{
    (void)path;
    return e != ENOENT && e != ENOTDIR;
}

static int fs_glob(const gh_conf_source *s, const char *pattern, glob_t *g)
{
    (void)s;
    return glob(pattern, 0, glob_error, g);
}

static void fs_globfree(const gh_conf_source *s, glob_t *g)
{
    (void)s;
    globfree(g);
}

static int fs_getaddrinfo(const gh_conf_source *s, const char *host, const char *port, const struct addrinfo *hints,
                          struct addrinfo **res)
{
    (void)s;
    return getaddrinfo(host, port, hints, res);
}

static void fs_freeaddrinfo(const gh_conf_source *s, struct addrinfo *res)
{
    (void)s;
    if (res != NULL)
        freeaddrinfo(res);
}

static const gh_conf_source fs = {fs_read, fs_glob, fs_globfree, fs_getaddrinfo, fs_freeaddrinfo, NULL};

const gh_conf_source *gh_conf_source_fs(void)
{
    return &fs;
}
