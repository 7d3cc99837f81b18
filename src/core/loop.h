/*
 * loop: the per-worker event loop: epoll (edge-triggered, each socket registered
 * once for its whole life), a timer heap, and the cached clock. Nothing else in
 * gatehouse knows about epoll.
 */
#ifndef GH_CORE_LOOP_H
#define GH_CORE_LOOP_H

#include <stdint.h>

typedef struct gh_loop gh_loop;
typedef struct gh_io gh_io;
typedef struct gh_timer gh_timer;

/* Events passed to callbacks. */
#define GH_EV_READ  0x1
#define GH_EV_WRITE 0x2
#define GH_EV_ERROR 0x4 /* error or hang-up: the next read or write tells which */
#define GH_EV_HUP   0x8 /* the peer closed its side: reads must go on until they return 0 */

typedef void (*gh_io_cb)(gh_io *io, unsigned events);
typedef void (*gh_timer_cb)(gh_timer *t);

/* A registered file descriptor; embedded in its owner (who frees both). */
struct gh_io {
    int fd;
    gh_io_cb cb;
};

/*
 * A timeout, embedded in its owner. Setting it again to a later deadline costs
 * O(1) (the heap entry is only moved when it comes due), so refreshing a
 * connection's idle deadline on every read is cheap.
 */
struct gh_timer {
    uint64_t when; /* deadline in loop ms; 0 when not armed */
    uint64_t key;  /* the deadline the heap is ordered by (<= when) */
    uint32_t slot; /* index in the heap + 1; 0 when not in the heap */
    gh_timer_cb cb;
};

gh_loop *gh_loop_new(void);
void gh_loop_free(gh_loop *l);

/* Registers fd for read and write readiness, edge-triggered. Returns 0 or -errno. */
int gh_loop_add(gh_loop *l, gh_io *io);
/* Registers a listening socket: level-triggered readable, EPOLLEXCLUSIVE. */
int gh_loop_add_listener(gh_loop *l, gh_io *io);
/*
 * Registers fd level-triggered, readable and (when write is 1) writable: for
 * sockets of a library that reads one datagram or segment per call and
 * expects to be told again while more is there (c-ares). gh_loop_want
 * changes the interest. 0 or -errno.
 */
int gh_loop_add_level(gh_loop *l, gh_io *io, int write);
int gh_loop_want(gh_loop *l, gh_io *io, int write);
/* Removes fd (before closing it, or when it moves elsewhere). */
void gh_loop_del(gh_loop *l, gh_io *io);

/* Arms t to fire after ms milliseconds (replacing any earlier deadline). */
void gh_timer_set(gh_loop *l, gh_timer *t, uint32_t ms);
/* Disarms t; a no-op when not armed. Must be called before t's memory is freed. */
void gh_timer_stop(gh_loop *l, gh_timer *t);

/* The loop's clock in ms (CLOCK_MONOTONIC), updated once per iteration. */
uint64_t gh_loop_now(const gh_loop *l);
/* The same clock in microseconds: when this iteration's events were known (epoll_wait returned). */
uint64_t gh_loop_now_us(const gh_loop *l);
/* Wall-clock seconds, updated once per iteration (for logs). */
int64_t gh_loop_wall(const gh_loop *l);

/* Runs until gh_loop_stop(); returns 0. */
int gh_loop_run(gh_loop *l);
void gh_loop_stop(gh_loop *l);

/*
 * Frees p (with free()) after the events of this iteration were handled. An
 * object that owns a gh_io is released this way, with io->fd set to -1 first, so
 * an event already fetched for it in the same batch finds it closed, not freed.
 */
void gh_loop_release(gh_loop *l, void *p);

/*
 * One iteration without waiting for descriptors (none is asked): the clock moves advance_ms (a virtual clock:
 * it is not read again), then due timers, released memory, the idle callback. For drivers of in-memory
 * connections (tests, fuzzing); never mixed with gh_loop_run.
 */
void gh_loop_step(gh_loop *l, uint32_t advance_ms);

/* Called once per iteration after the events were handled (flushes logs...). */
void gh_loop_on_idle(gh_loop *l, void (*cb)(void *), void *arg);

#endif
