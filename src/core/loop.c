#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

struct gh_loop {
    int epfd;
    int stopped;
    uint64_t now, now_us;
    int64_t wall;
    gh_timer **heap;
    uint32_t nheap, capheap;
    void **garbage;
    uint32_t ngarbage, capgarbage;
    void (*idle_cb)(void *);
    void *idle_arg;
};

static void collect_garbage(gh_loop *l);

/*
 * CLOCK_MONOTONIC, not _COARSE (4 ms ticks at HZ=250): the upstream
 * histograms' 0.5 ms buckets take their response time from it (gh_loop_now_us);
 * one vDSO read per iteration (about 17 ns more than the coarse one) instead
 * of one per response head.
 */
static void update_clock(gh_loop *l)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    l->now_us = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
    l->now = l->now_us / 1000;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    l->wall = ts.tv_sec;
}

gh_loop *gh_loop_new(void)
{
    gh_loop *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (l->epfd < 0) {
        free(l);
        return NULL;
    }
    update_clock(l);
    return l;
}

void gh_loop_free(gh_loop *l)
{
    if (l == NULL)
        return;
    close(l->epfd);
    collect_garbage(l);
    free(l->heap);
    free(l->garbage);
    free(l);
}

int gh_loop_add(gh_loop *l, gh_io *io)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) == 0 ? 0 : -errno;
}

int gh_loop_add_listener(gh_loop *l, gh_io *io)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = io};
    return epoll_ctl(l->epfd, EPOLL_CTL_ADD, io->fd, &ev) == 0 ? 0 : -errno;
}

static int level(gh_loop *l, gh_io *io, int op, int write)
{
    struct epoll_event ev = {.events = EPOLLIN | (write ? EPOLLOUT : 0u), .data.ptr = io};
    return epoll_ctl(l->epfd, op, io->fd, &ev) == 0 ? 0 : -errno;
}

int gh_loop_add_level(gh_loop *l, gh_io *io, int write)
{
    return level(l, io, EPOLL_CTL_ADD, write);
}

int gh_loop_want(gh_loop *l, gh_io *io, int write)
{
    return level(l, io, EPOLL_CTL_MOD, write);
}

void gh_loop_del(gh_loop *l, gh_io *io)
{
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, io->fd, NULL);
}

/* ---- timer heap (min-heap on key, 1-based slots stored in the timers) ---- */

static void heap_place(gh_loop *l, uint32_t i, gh_timer *t)
{
    l->heap[i] = t;
    t->slot = i + 1;
}

static void sift_up(gh_loop *l, uint32_t i)
{
    gh_timer *t = l->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (l->heap[parent]->key <= t->key)
            break;
        heap_place(l, i, l->heap[parent]);
        i = parent;
    }
    heap_place(l, i, t);
}

static void sift_down(gh_loop *l, uint32_t i)
{
    gh_timer *t = l->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= l->nheap)
            break;
        if (child + 1 < l->nheap && l->heap[child + 1]->key < l->heap[child]->key)
            child++;
        if (t->key <= l->heap[child]->key)
            break;
        heap_place(l, i, l->heap[child]);
        i = child;
    }
    heap_place(l, i, t);
}

static void heap_remove(gh_loop *l, gh_timer *t)
{
    uint32_t i = t->slot - 1;
    gh_timer *last = l->heap[--l->nheap];
    t->slot = 0;
    if (i == l->nheap)
        return;
    heap_place(l, i, last);
    if (i > 0 && l->heap[(i - 1) / 2]->key > last->key)
        sift_up(l, i);
    else
        sift_down(l, i);
}

void gh_timer_set(gh_loop *l, gh_timer *t, uint32_t ms)
{
    t->when = l->now + ms;
    if (t->slot != 0) {
        if (t->when >= t->key)
            return; /* lazily moved when the old key comes due */
        t->key = t->when;
        sift_up(l, t->slot - 1);
        return;
    }
    if (l->nheap == l->capheap) {
        uint32_t cap = l->capheap ? l->capheap * 2 : 256;
        gh_timer **h = realloc(l->heap, cap * sizeof(*h));
        if (h == NULL)
            abort(); /* a timer that silently never fires is worse */
        l->heap = h;
        l->capheap = cap;
    }
    t->key = t->when;
    heap_place(l, l->nheap++, t);
    sift_up(l, l->nheap - 1);
}

void gh_timer_stop(gh_loop *l, gh_timer *t)
{
    if (t->slot != 0)
        heap_remove(l, t);
    t->when = 0;
}

static void run_timers(gh_loop *l)
{
    while (l->nheap > 0 && l->heap[0]->key <= l->now) {
        gh_timer *t = l->heap[0];
        if (t->when > l->now) {
            t->key = t->when;
            sift_down(l, 0);
            continue;
        }
        heap_remove(l, t);
        t->when = 0;
        t->cb(t);
    }
}

static int next_timeout(gh_loop *l)
{
    if (l->nheap == 0)
        return 1000;
    uint64_t key = l->heap[0]->key;
    if (key <= l->now)
        return 0;
    /* COARSE clocks tick every few ms: round up so a timer never fires early-and-again. */
    uint64_t d = key - l->now + 1;
    return d > 1000 ? 1000 : (int)d;
}

void gh_loop_release(gh_loop *l, void *p)
{
    if (l->ngarbage == l->capgarbage) {
        uint32_t cap = l->capgarbage ? l->capgarbage * 2 : 64;
        void **g = realloc(l->garbage, cap * sizeof(*g));
        if (g == NULL)
            abort();
        l->garbage = g;
        l->capgarbage = cap;
    }
    l->garbage[l->ngarbage++] = p;
}

static void collect_garbage(gh_loop *l)
{
    for (uint32_t i = 0; i < l->ngarbage; i++)
        free(l->garbage[i]);
    l->ngarbage = 0;
}

uint64_t gh_loop_now(const gh_loop *l)
{
    return l->now;
}
uint64_t gh_loop_now_us(const gh_loop *l)
{
    return l->now_us;
}

int64_t gh_loop_wall(const gh_loop *l)
{
    return l->wall;
}
void gh_loop_stop(gh_loop *l)
{
    l->stopped = 1;
}

void gh_loop_on_idle(gh_loop *l, void (*cb)(void *), void *arg)
{
    l->idle_cb = cb;
    l->idle_arg = arg;
}

int gh_loop_run(gh_loop *l)
{
    struct epoll_event events[MAX_EVENTS];

    l->stopped = 0; /* a loop stopped before can run again (tests run one in steps) */
    while (!l->stopped) {
        int n = epoll_wait(l->epfd, events, MAX_EVENTS, next_timeout(l));
        update_clock(l);
        for (int i = 0; i < n; i++) {
            gh_io *io = events[i].data.ptr;
            uint32_t e = events[i].events;
            unsigned ev = 0;
            if (io->fd < 0)
                continue; /* closed by an earlier callback of this batch */
            if (e & (EPOLLIN | EPOLLRDHUP))
                ev |= GH_EV_READ;
            if (e & EPOLLOUT)
                ev |= GH_EV_WRITE;
            if (e & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                ev |= GH_EV_HUP;
            if (e & (EPOLLERR | EPOLLHUP))
                ev |= GH_EV_ERROR | GH_EV_READ | GH_EV_WRITE;
            io->cb(io, ev);
        }
        run_timers(l);
        collect_garbage(l);
        if (l->idle_cb != NULL)
            l->idle_cb(l->idle_arg);
    }
    return 0;
}

/*
 * For tests and fuzzing (tests/fuzz/fuzz_front.c), whose connections have no socket (net/memconn.h): one
 * iteration of gh_loop_run without epoll_wait, on a virtual clock that moves advance_ms, so that timeouts fire
 * when the driver says, the same for every run of an input.
 */
void gh_loop_step(gh_loop *l, uint32_t advance_ms)
{
    l->now += advance_ms;
    run_timers(l);
    collect_garbage(l);
    if (l->idle_cb != NULL)
        l->idle_cb(l->idle_arg);
}
