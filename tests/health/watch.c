/*
 * health-watch: runs the real prober (gh_health_run) in a forked child against
 * one server, as the master will, and prints each change of the shared verdict
 * with the wall-clock time in ms (what `date +%s%3N` prints): "1764082470123
 * down". Stops the prober with SIGTERM after the given number of seconds, or at
 * once on SIGUSR1, and prints "exit N" with the prober's exit status.
 *
 *   health-watch ADDR tcp|http PATH INTERVAL_MS TIMEOUT_MS RISE FALL SECONDS
 *
 * Driven by tests/health/run.sh; see there.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "net/addr.h"
#include "core/log.h"
#include "health/probe.h"
#include "health/state.h"

static volatile sig_atomic_t stop;

static void on_usr1(int sig)
{
    stop = 1;
}

/* Wall-clock: the script's `date` can read it cheaply; a 10-second test does not care about clock steps. */
static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* "1.2.3.4:80" only: this tool runs against loopback (and leaves conf.c, which others change, alone). */
static int parse_addr(gh_addr *a, const char *text)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&a->ss;
    const char *colon = strrchr(text, ':');
    char host[64];

    if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
        return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    memset(a, 0, sizeof(*a));
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)strtoul(colon + 1, NULL, 10));
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return -1;
    a->len = sizeof(*sin);
    snprintf(a->text, sizeof(a->text), "%s", text);
    return 0;
}

static const char *name(int status)
{
    return status == GH_HEALTH_UP ? "up" : status == GH_HEALTH_DOWN ? "down" : "unknown";
}

int main(int argc, char **argv)
{
    gh_health_target t = {0};
    gh_health_shm *shm;
    uint64_t end;
    int last = GH_HEALTH_UNKNOWN, status;
    sigset_t mask;
    pid_t pid;

    if (argc != 9 || parse_addr(&t.addr, argv[1]) < 0) {
        fprintf(stderr, "usage: %s ADDR tcp|http PATH INTERVAL_MS TIMEOUT_MS RISE FALL SECONDS\n", argv[0]);
        return 2;
    }
    t.type = strcmp(argv[2], "http") == 0 ? GH_PROBE_HTTP : GH_PROBE_TCP;
    t.path = argv[3];
    t.pool = "watch";
    t.interval_ms = (uint32_t)strtoul(argv[4], NULL, 10);
    t.timeout_ms = (uint32_t)strtoul(argv[5], NULL, 10);
    t.rise = (uint32_t)strtoul(argv[6], NULL, 10);
    t.fall = (uint32_t)strtoul(argv[7], NULL, 10);
    gh_log_level = GH_LOG_INFO;
    if ((shm = gh_health_shm_new(1)) == NULL) {
        perror("gh_health_shm_new");
        return 1;
    }
    /* As the master does: signals blocked before the fork, the child reads them from a signalfd. */
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGQUIT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    end = now_ms() + 1000 * strtoull(argv[8], NULL, 10);
    fflush(NULL);
    if ((pid = fork()) == 0)
        exit(gh_health_run(&t, 1, shm, NULL, NULL)); /* exit, not _exit: LeakSanitizer checks the teardown */
    signal(SIGUSR1, on_usr1);
    while (!stop && now_ms() < end) {
        int now = gh_health_status_get(shm, 0);
        if (now != last) {
            printf("%llu %s\n", (unsigned long long)now_ms(), name(now));
            fflush(stdout);
            last = now;
        }
        usleep(5000);
    }
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    printf("exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    gh_health_shm_free(shm);
    return 0;
}
