/*
 * export: the metrics region as Prometheus text (exposition format 0.0.4) and
 * the status page as JSON, for the admin listener (src/admin/admin.h). What
 * is shown is what the given configuration names: a route or pool that a
 * reload removed disappears, one it kept goes on with its counts.
 */
#ifndef GH_METRICS_EXPORT_H
#define GH_METRICS_EXPORT_H

#include <stddef.h>

#include "conf/config.h"
#include "health/addrs.h"
#include "health/state.h"

/* A growing text of at most `max` bytes; `full` once something did not fit (the caller answers 500). */
typedef struct gh_mtext {
    char *p;
    size_t len, cap, max;
    int full;
} gh_mtext;

void gh_mtext_printf(gh_mtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void gh_mtext_append(gh_mtext *t, const char *p, size_t n);
void gh_mtext_dispose(gh_mtext *t);

/* What the answering worker runs: its current configuration and the shared health state. */
typedef struct gh_metrics_view {
    const gh_config *cfg;
    const gh_health_shm *health;
    const gh_addr_shm *addrs;
    const gh_health_ref *refs; /* per health slot of cfg (its pools' servers in file order) */
    size_t nslots;
    int worker; /* the id of the worker answering (the status page says it) */
} gh_metrics_view;

/* Appends the whole exposition / the status JSON to out. */
void gh_metrics_prometheus(const gh_metrics_view *v, gh_mtext *out);
void gh_metrics_status_json(const gh_metrics_view *v, gh_mtext *out);

#endif
