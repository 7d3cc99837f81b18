/* The loop's timer heap: order, lazy re-arming, stopping. */
#include <stddef.h>

#include "core/loop.h"
#include "unit.h"

struct probe {
    gh_timer t;
    int id;
};

static gh_loop *loop;
static int fired[16], nfired;

static void on_fire(gh_timer *t)
{
    struct probe *p = (struct probe *)((char *)t - offsetof(struct probe, t));
    fired[nfired++] = p->id;
    if (nfired == 3)
        gh_loop_stop(loop);
}

void suite_loop(void)
{
    struct probe p[5];

    unit_case("timers fire in deadline order; re-armed and stopped ones obey");
    loop = gh_loop_new();
    CHECK(loop != NULL);
    if (loop == NULL)
        return;
    for (int i = 0; i < 5; i++) {
        p[i].t = (gh_timer){.cb = on_fire};
        p[i].id = i;
    }
    gh_timer_set(loop, &p[0].t, 30);
    gh_timer_set(loop, &p[1].t, 10);
    gh_timer_set(loop, &p[2].t, 20);
    gh_timer_set(loop, &p[3].t, 5);
    gh_timer_set(loop, &p[4].t, 15);
    gh_timer_stop(loop, &p[3].t);    /* never fires */
    gh_timer_set(loop, &p[1].t, 40); /* later: moved lazily */
    gh_timer_set(loop, &p[0].t, 1);  /* earlier: moved at once */
    gh_loop_run(loop);
    CHECK_INT(nfired, 3);
    CHECK_INT(fired[0], 0);
    CHECK_INT(fired[1], 4);
    CHECK_INT(fired[2], 2);
    CHECK_INT(p[3].t.when, 0);
    gh_timer_stop(loop, &p[1].t);
    gh_loop_free(loop);
    unit_case(NULL);
}
