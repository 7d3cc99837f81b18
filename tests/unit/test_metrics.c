/* metrics: histogram buckets, status classes, slots by name across reloads, the admin block, the exposition. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "metrics/export.h"
#include "metrics/metrics.h"
#include "unit.h"

static char dir[64];
static char err[1024];

static gh_config *parse_text(const char *text)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/m.conf", dir);
    f = fopen(path, "w");
    if (f == NULL)
        return NULL;
    fputs(text, f);
    fclose(f);
    return gh_config_parse(path, err, sizeof(err));
}

static const gh_cfg_route *route(const gh_config *c, const char *prefix)
{
    for (size_t i = 0; i < c->nsites; i++)
        for (size_t k = 0; k < c->sites[i].nroutes; k++)
            if (strcmp(c->sites[i].routes[k].prefix.p, prefix) == 0)
                return &c->sites[i].routes[k];
    return NULL;
}

static void buckets(void)
{
    gh_m_hist h;

    unit_case("histogram: an observation goes to the first bucket whose bound holds it");
    memset(&h, 0, sizeof(h));
    gh_metric_observe(&h, 0);
    gh_metric_observe(&h, 500);      /* le=0.0005: the bound is inclusive, as Prometheus's le */
    gh_metric_observe(&h, 501);      /* le=0.001 */
    gh_metric_observe(&h, 300000);   /* le=0.5 */
    gh_metric_observe(&h, 20000000); /* +Inf */
    CHECK_INT(h.bucket[0], 2);
    CHECK_INT(h.bucket[1], 1);
    CHECK_INT(h.bucket[9], 1);
    CHECK_INT(h.bucket[GH_M_NBUCKETS], 1);
    CHECK_INT(h.sum_us, 500 + 501 + 300000 + 20000000);
}

static void classes(gh_mslot *m)
{
    unit_case("requests: status classes; no status counts as 4xx; an unslotted route counts nowhere");
    memset(&m->routes[7], 0, sizeof(m->routes[7]));
    gh_metric_request(m, 7, 204, 10, 20);
    gh_metric_request(m, 7, 101, 0, 0);
    gh_metric_request(m, 7, 503, 0, 5);
    gh_metric_request(m, 7, 0, 0, 0);
    gh_metric_request(m, GH_M_NONE, 200, 1, 1);
    CHECK_INT(m->routes[7].requests[0], 1);
    CHECK_INT(m->routes[7].requests[1], 1);
    CHECK_INT(m->routes[7].requests[3], 1);
    CHECK_INT(m->routes[7].requests[4], 1);
    CHECK_INT(m->routes[7].bytes_in, 10);
    CHECK_INT(m->routes[7].bytes_out, 25);
}

#define TAIL "listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\n"

static void slots_by_name(void)
{
    gh_config *a, *b, *b2, *c;
    gh_mslot *m = gh_metrics_self();
    uint32_t ra, rb;

    unit_case("slots: the same route keeps its slot (and its counts) across a reload, a new one gets another");
    a = parse_text(TAIL "site default {\n route /a { proxy app }\n route /b { proxy app }\n}\n");
    CHECK(a != NULL);
    if (a == NULL)
        return;
    gh_metrics_claim(a);
    ra = route(a, "/a")->metric;
    rb = route(a, "/b")->metric;
    CHECK(ra != rb && ra < GH_M_MAX_ROUTES && rb < GH_M_MAX_ROUTES && ra != GH_M_NO_ROUTE);
    gh_metric_request(m, rb, 200, 0, 0);
    b = parse_text(TAIL "site default {\n route /c { proxy app }\n route /b { proxy app }\n}\n");
    b2 = parse_text(TAIL "site default {\n route /c { proxy app }\n route /b { proxy app }\n}\n");
    CHECK(b != NULL && b2 != NULL);
    if (b == NULL || b2 == NULL)
        return;
    gh_metrics_claim(b);
    CHECK_INT(route(b, "/b")->metric, rb);
    CHECK(route(b, "/c")->metric != ra && route(b, "/c")->metric != rb);
    CHECK_INT(m->routes[rb].requests[1], 1);
    unit_case("slots: a worker's copy of the configuration finds the master's slots (bind)");
    gh_metrics_bind(b2);
    CHECK_INT(route(b2, "/b")->metric, rb);
    CHECK_INT(route(b2, "/c")->metric, route(b, "/c")->metric);
    CHECK_INT(b2->pools[0].metric, b->pools[0].metric);
    CHECK_INT(b2->listeners[0].metric, b->listeners[0].metric);
    unit_case("slots: a route the master never claimed has no slot in a worker");
    c = parse_text(TAIL "site default {\n route /never { proxy app }\n}\n");
    CHECK(c != NULL);
    if (c != NULL) {
        gh_metrics_bind(c);
        CHECK_INT(route(c, "/never")->metric, GH_M_NONE);
    }
    gh_config_free(a);
    gh_config_free(b);
    gh_config_free(b2);
    gh_config_free(c);
}

static void admin_block(void)
{
    gh_config *c;

    unit_case("admin block: listen and allow lists parse; none given means loopback (no list)");
    c = parse_text(TAIL "admin {\n listen 127.0.0.1:9100\n allow 10.0.0.0/8 ::1\n allow 192.0.2.7\n}\n"
                        "site default { route / { proxy app } }\n");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_INT(c->admin.enabled, 1);
        CHECK(strcmp(c->admin.addr.text, "127.0.0.1:9100") == 0);
        CHECK_INT(c->admin.nallow, 3);
        gh_config_free(c);
    }
    c = parse_text(TAIL "admin {\n listen 127.0.0.1:9100\n allow all\n}\nsite default { route / { proxy app } }\n");
    CHECK(c != NULL && c->admin.nallow == 2);
    gh_config_free(c);
    c = parse_text(TAIL "admin { listen [::1]:9100 }\nsite default { route / { proxy app } }\n");
    CHECK(c != NULL && c->admin.enabled && c->admin.nallow == 0);
    gh_config_free(c);
    c = parse_text(TAIL "site default { route / { proxy app } }\n");
    CHECK(c != NULL && !c->admin.enabled);
    gh_config_free(c);
    unit_case("admin block: errors");
    CHECK(parse_text(TAIL "admin { allow ::1 }\nsite default { route / { proxy app } }\n") == NULL);
    CHECK(strstr(err, "m.conf:3: the admin block needs \"listen") != NULL);
    CHECK(parse_text(TAIL "admin { listen 127.0.0.1:8080 }\nsite default { route / { proxy app } }\n") == NULL);
    CHECK(strstr(err, "m.conf:3: admin listen 127.0.0.1:8080 is also a proxy listener") != NULL);
    CHECK(parse_text(
              TAIL "admin {\n listen 127.0.0.1:9100\n allow 10.1.0.0/8\n}\nsite default { route / { proxy app } }\n") ==
          NULL);
    CHECK(strstr(err, "m.conf:5: invalid network \"10.1.0.0/8\"") != NULL);
    CHECK(parse_text(TAIL "admin { listen 127.0.0.1:9100 }\nadmin { listen 127.0.0.1:9101 }\n"
                          "site default { route / { proxy app } }\n") == NULL);
}

static void exposition(void)
{
    gh_config *c = parse_text(TAIL "site example.com {\n route /api/ { proxy app }\n route /api/ {\n  method POST\n"
                                   "  proxy app\n }\n}\n");
    gh_health_ref refs[1] = {0};
    gh_metrics_view v;
    gh_mtext t = {NULL, 0, 0, 1 << 20, 0};

    unit_case("exposition: families, labels, the second route of a prefix, histogram lines");
    CHECK(c != NULL);
    if (c == NULL)
        return;
    gh_metrics_claim(c);
    memset(&v, 0, sizeof(v));
    v.cfg = c;
    v.refs = refs;
    v.nslots = 1;
    gh_metrics_prometheus(&v, &t);
    CHECK(!t.full && t.p != NULL);
    if (t.p == NULL)
        return;
    CHECK(strstr(t.p, "# TYPE gatehouse_http_requests_total counter\n") != NULL);
    CHECK(strstr(t.p, "gatehouse_http_requests_total{site=\"example.com\",route=\"/api/\",code=\"2xx\"} 0\n") != NULL);
    CHECK(strstr(t.p, "gatehouse_http_requests_total{site=\"example.com\",route=\"/api/ (2)\",code=\"5xx\"} 0\n") !=
          NULL);
    CHECK(strstr(t.p, "gatehouse_upstream_connect_duration_seconds_bucket{pool=\"app\",le=\"0.0005\"} 0\n") != NULL);
    CHECK(strstr(t.p, "gatehouse_upstream_connect_duration_seconds_bucket{pool=\"app\",le=\"+Inf\"} 0\n") != NULL);
    CHECK(strstr(t.p, "gatehouse_server_state{pool=\"app\",server=\"127.0.0.1:9000\",address=\"127.0.0.1:9000\","
                      "state=\"unknown\"} 1\n") != NULL);
    unit_case("exposition: the text is bounded");
    gh_mtext_dispose(&t);
    t.max = 100;
    gh_metrics_prometheus(&v, &t);
    CHECK(t.full);
    gh_mtext_dispose(&t);
    gh_config_free(c);
}

void suite_metrics(void)
{
    snprintf(dir, sizeof(dir), "/tmp/gh-unit-metrics-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        CHECK(!"mkdtemp");
        return;
    }
    buckets();
    CHECK_INT(gh_metrics_init(2), 0);
    gh_metrics_attach(0);
    classes(gh_metrics_self());
    slots_by_name();
    admin_block();
    exposition();
    snprintf(err, sizeof(err), "%s/m.conf", dir);
    unlink(err);
    rmdir(dir);
}
