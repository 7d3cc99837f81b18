#include "main/notify.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "main/cli.h"

static struct sockaddr_un notify_addr;
static socklen_t notify_len; /* 0: no $NOTIFY_SOCKET */
static int notify_warned;

void gh_notify_init(void)
{
    const char *path = getenv("NOTIFY_SOCKET");
    size_t n;

    notify_len = 0;
    if (path == NULL || (path[0] != '/' && path[0] != '@'))
        return; /* unset, or a form we do not speak (vsock: systemd 253, for virtual machines) */
    n = strlen(path);
    if (n < 2 || n >= sizeof(notify_addr.sun_path)) {
        gh_log_warn("NOTIFY_SOCKET is %zu bytes long: ignored", n);
        return;
    }
    memset(&notify_addr, 0, sizeof(notify_addr));
    notify_addr.sun_family = AF_UNIX;
    memcpy(notify_addr.sun_path, path, n);
    if (path[0] == '@')
        notify_addr.sun_path[0] = '\0'; /* abstract: the length, not a NUL, ends the name */
    notify_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/' ? 1 : 0));
}

int gh_notify_enabled(void)
{
    return notify_len != 0;
}

int gh_notify_send(const char *msg)
{
    int fd, err = 0;
    ssize_t n;

    if (notify_len == 0)
        return -1;
    /* A socket per message: a master sends a handful in its life, and nothing stays open in the workers. */
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err = errno;
    } else {
        n = sendto(fd, msg, strlen(msg), MSG_NOSIGNAL | MSG_DONTWAIT, (const struct sockaddr *)&notify_addr,
                   notify_len);
        if (n < 0)
            err = errno;
        close(fd);
    }
    if (err == 0)
        return 0;
    if (!notify_warned++)
        gh_log_warn("cannot notify the service manager (NOTIFY_SOCKET): %s", strerror(err));
    return -1;
}

/* "gatehouse 0.1.0: 2 workers, 127.0.0.1:443 (tls), ...; EXTRA" into buf. */
static void format_status(char *buf, size_t len, const gh_config *cfg, const char *extra)
{
    size_t n;
    size_t i;

    n = (size_t)snprintf(buf, len, "STATUS=gatehouse " GH_VERSION ": %d worker%s on ", cfg->workers,
                         cfg->workers == 1 ? "" : "s");
    for (i = 0; i < cfg->nlisteners && n + 80 < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%s%s", i ? ", " : "", cfg->listeners[i].addr.text,
                              cfg->listeners[i].tls ? " (tls)" : "");
    if (i < cfg->nlisteners && n < len)
        n += (size_t)snprintf(buf + n, len - n, " and %zu more", cfg->nlisteners - i);
    if (extra != NULL && n < len)
        snprintf(buf + n, len - n, "; %s", extra);
}

void gh_notify_ready(const gh_config *cfg, const char *extra)
{
    char msg[1024];

    if (notify_len == 0)
        return;
    memcpy(msg, "READY=1\n", 8);
    format_status(msg + 8, sizeof(msg) - 8, cfg, extra);
    gh_notify_send(msg);
}

void gh_notify_reloading(void)
{
    struct timespec ts;
    char msg[128];

    if (notify_len == 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
             (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
    gh_notify_send(msg);
}

void gh_notify_stopping(const char *why)
{
    char msg[256];

    if (notify_len == 0)
        return;
    snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", why);
    gh_notify_send(msg);
}

void gh_notify_mainpid(pid_t pid, const gh_config *cfg, const char *extra)
{
    char msg[1024];
    int n;

    if (notify_len == 0)
        return;
    n = snprintf(msg, sizeof(msg), "MAINPID=%d\n", (int)pid);
    format_status(msg + n, sizeof(msg) - (size_t)n, cfg, extra);
    gh_notify_send(msg);
}
