/*
 * proctitle: see proctitle.h. Linux reads /proc/PID/cmdline from the memory
 * between the first argument and the end of the environment strings when
 * the last byte of the arguments is no longer NUL (fs/proc/base.c,
 * get_mm_cmdline), which is how nginx and PostgreSQL set their titles: the
 * area is only ever written where the kernel put the strings, never beyond.
 */
#include "main/proctitle.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

extern char **environ;

static char **env_copies; /* every string copied, for life: environ may drop one (unsetenv), they stay ours */
static char *area;        /* the first argument's first byte; NULL: no title */
static size_t area_len;   /* up to the NUL of the last contiguous string */

/* The original strings are contiguous: argv[0], ..., argv[argc-1], environ[0], ... each after the other's NUL. */
static char *contiguous_end(char *end, char **strs, int n)
{
    for (int i = 0; i < n && strs[i] != NULL; i++)
        if (strs[i] == end)
            end = strs[i] + strlen(strs[i]) + 1;
    return end;
}

int gh_proctitle_init(int argc, char **argv)
{
    char *first, *end, **env, *copy;
    size_t nenv = 0;

    if (argc < 1 || argv[0] == NULL)
        return -1;
    first = argv[0];
    while (environ[nenv] != NULL)
        nenv++;
    end = contiguous_end(first, argv, argc);
    end = contiguous_end(end, environ, (int)nenv);
    if ((env = calloc(nenv + 1, sizeof(*env))) == NULL || (env_copies = calloc(nenv + 1, sizeof(*env))) == NULL)
        return -1;
    for (size_t i = 0; i < nenv; i++)
        if ((env[i] = env_copies[i] = strdup(environ[i])) == NULL)
            return -1; /* the originals stay in use: no title, nothing broken */
    for (int i = 0; i < argc; i++) {
        if ((copy = strdup(argv[i])) == NULL)
            return -1;
        argv[i] = copy;
    }
    environ = env;
    program_invocation_name = argv[0]; /* glibc's copy of the pointer, for error messages */
    area = first;
    area_len = (size_t)(end - first);
    return 0;
}

void gh_proctitle_set(const char *title, const char *comm)
{
    size_t n;

    prctl(PR_SET_NAME, comm, 0, 0, 0); /* the kernel cuts it at 15 bytes */
    if (area == NULL || area_len < 2)
        return;
    n = strlen(title);
    if (n > area_len - 1)
        n = area_len - 1;
    memcpy(area, title, n);
    memset(area + n, '\0', area_len - n);
}
