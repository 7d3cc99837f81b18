/* The config file: units, lexer, directives, every error class with its FILE:LINE, includes, the example. */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/bundle.h"
#include "conf/config.h"
#include "conf/source.h"
#include "conf/units.h"
#include "core/log.h"
#include "unit.h"

static char dir[64];
static char err[1024];

/* Writes dir/name (name may contain one subdirectory level that must exist). */
static void write_file(const char *name, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fputs(text, f);
    fclose(f);
}

static void make_dir(const char *name)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    CHECK(mkdir(path, 0700) == 0);
}

static gh_config *parse_text(const char *text)
{
    char path[256];

    write_file("main.conf", text);
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    return gh_config_parse(path, err, sizeof(err));
}

/* A minimal valid tail, so error tests fail only where they mean to. */
#define VALID_TAIL "listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\nsite default { route / { proxy app } }\n"

/* The text must fail with "DIR/FILE:LINE: reason..." where want is "FILE:LINE: reason" (a prefix of the message). */
static void expect_error_in(const char *text, const char *want, const char *file, int line)
{
    char full[512];
    gh_config *c = parse_text(text);

    snprintf(full, sizeof(full), "%s/%s", dir, want);
    unit_check(c == NULL, file, line, "config was accepted, want error \"%s\"", want);
    unit_check(strncmp(err, full, strlen(full)) == 0, file, line, "error \"%s\", want prefix \"%s\"", err, full);
    gh_config_free(c);
}
#define EXPECT_ERROR(text, want) expect_error_in((text), (want), __FILE__, __LINE__)

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* ---- units ------------------------------------------------------------------------------------ */

static uint64_t size_of(const char *s, int *ok)
{
    const char *why;
    uint64_t v = 0;

    *ok = gh_conf_parse_size(s, strlen(s), &v, &why) == 0;
    return v;
}

static uint32_t ms_of(const char *s, int *ok)
{
    const char *why;
    uint32_t v = 0;

    *ok = gh_conf_parse_duration(s, strlen(s), &v, &why) == 0;
    return v;
}

static void units(void)
{
    int ok;

    unit_case("sizes");
    CHECK_INT(size_of("0", &ok), 0);
    CHECK(ok);
    CHECK_INT(size_of("512", &ok), 512);
    CHECK_INT(size_of("16k", &ok), 16384);
    CHECK_INT(size_of("16K", &ok), 16384);
    CHECK_INT(size_of("1m", &ok), 1048576);
    CHECK_INT(size_of("1g", &ok), 1073741824);
    CHECK(size_of("18446744073709551615", &ok) == UINT64_MAX && ok);
    size_of("18446744073709551616", &ok);
    CHECK(!ok);
    size_of("17179869184g", &ok); /* 2^34 g = 2^64 */
    CHECK(!ok);
    CHECK(size_of("17179869183g", &ok) == 17179869183ull * 1073741824ull && ok);
    for (const char *const *bad =
             (const char *const[]){"", "k", "-1", "+1", " 1", "1 ", "1kb", "1.5m", "1t", "0x10", NULL};
         *bad != NULL; bad++) {
        size_of(*bad, &ok);
        unit_check(!ok, __FILE__, __LINE__, "size \"%s\" accepted", *bad);
    }

    unit_case("durations");
    CHECK_INT(ms_of("500ms", &ok), 500);
    CHECK_INT(ms_of("10s", &ok), 10000);
    CHECK_INT(ms_of("10", &ok), 10000);
    CHECK_INT(ms_of("5m", &ok), 300000);
    CHECK_INT(ms_of("1h", &ok), 3600000);
    CHECK_INT(ms_of("4294967295ms", &ok), 4294967295u);
    CHECK(ok);
    CHECK_INT(ms_of("1193h", &ok), 1193u * 3600000u);
    CHECK(ok);
    for (const char *const *bad = (const char *const[]){"0", "0s", "", "s", "1d", "1H", "-5s", "1.5s", "4294967296ms",
                                                        "1194h", "99999999999999999999999s", "10 s", NULL};
         *bad != NULL; bad++) {
        ms_of(*bad, &ok);
        unit_check(!ok, __FILE__, __LINE__, "duration \"%s\" accepted", *bad);
    }
}

/* ---- a valid file, read back --------------------------------------------------------------- */

static void full_model(void)
{
    gh_config *c;
    const gh_cfg_site *s;
    const gh_cfg_route *r;
    const gh_cfg_pool *p;

    unit_case("every directive lands in the model");
    c = parse_text("# comment line\n"
                   "workers 3\n"
                   "log_level debug   # trailing comment\n"
                   "access_log logs/access.log\n"
                   "max_body 2m\n"
                   "timeouts { connect 3s; response 45s; handshake 500ms }\n"
                   "listen 0.0.0.0:8443 tls\n"
                   "listen [::1]:8080;\n"
                   "pool app {\n"
                   "    server 127.0.0.1:8081 weight=3\n"
                   "    server app2.internal:8081\n"
                   "    server [::1]:8089 backup\n"
                   "    balance hash cookie sid\n"
                   "    health http HEAD /healthz status=200-204 interval=4s timeout=1s rise=1 fall=5 host=app.local\n"
                   "    passive fails=4 window=20s eject=1m\n"
                   "}\n"
                   "pool api { server 10.0.0.1:80; balance p2c; health tcp; passive }\n"
                   "site Example.COM *.example.com {\n"
                   "    listen 0.0.0.0:8443\n"
                   "    cert certs/ec.pem certs/ec.key\n"
                   "    cert /abs/rsa.pem /abs/rsa.key\n"
                   "    route /api/ {\n"
                   "        proxy api strip_prefix\n"
                   "        method GET POST\n"
                   "        header X-Canary 1\n"
                   "        timeout response 30s\n"
                   "        max_body 10m\n"
                   "        request_header set X-From \"gate house\"\n"
                   "        request_header remove Cookie\n"
                   "        response_header remove Server\n"
                   "    }\n"
                   "    route /v1 { proxy api replace_prefix /v2/ }\n"
                   "    route / { proxy app }\n"
                   "}\n"
                   "site default {\n"
                   "    listen [::1]:8080\n"
                   "    route / { redirect 301 https://$host$request_uri }\n"
                   "    route /teapot { respond 418 \"short and \\\"stout\\\"\\n\" }\n"
                   "}\n");
    CHECK(c != NULL);
    if (c == NULL) {
        fprintf(stderr, "    %s\n", err);
        return;
    }
    CHECK_INT(c->workers, 3);
    CHECK_INT(c->log_level, GH_LOG_DEBUG);
    CHECK(c->access_log != NULL && strcmp(c->access_log + strlen(dir), "/logs/access.log") == 0);
    CHECK(c->max_body == 2 * 1024 * 1024);
    CHECK_INT(c->timeouts.connect, 3000);
    CHECK_INT(c->timeouts.response, 45000);
    CHECK_INT(c->timeouts.handshake, 500);
    CHECK_INT(c->timeouts.keepalive, 60000); /* untouched default */
    CHECK_INT(c->nlisteners, 2);
    CHECK(strcmp(c->listeners[0].addr.text, "0.0.0.0:8443") == 0 && c->listeners[0].tls);
    CHECK(strcmp(c->listeners[1].addr.text, "[::1]:8080") == 0 && !c->listeners[1].tls);

    CHECK_INT(c->npools, 2);
    p = gh_config_pool(c, "app");
    CHECK(p != NULL && p->index == 0);
    if (p != NULL) {
        CHECK_INT(p->nservers, 3);
        CHECK_INT(p->servers[0].weight, 3);
        CHECK_INT(p->servers[0].naddrs, 1);
        CHECK_MEM(p->servers[1].host.p, p->servers[1].host.len, "app2.internal");
        CHECK_INT(p->servers[1].port, 8081);
        CHECK_INT(p->servers[1].naddrs, 0); /* a name: resolved later */
        CHECK_MEM(p->servers[2].host.p, p->servers[2].host.len, "::1");
        CHECK(p->servers[2].backup && !p->servers[0].backup);
        CHECK_INT(p->balance, GH_BALANCE_HASH);
        CHECK_INT(p->hash_key, GH_HASH_COOKIE);
        CHECK_MEM(p->hash_name.p, p->hash_name.len, "sid");
        CHECK_INT(p->health.type, GH_HEALTH_HTTP);
        CHECK_MEM(p->health.method.p, p->health.method.len, "HEAD");
        CHECK_MEM(p->health.path.p, p->health.path.len, "/healthz");
        CHECK_MEM(p->health.host.p, p->health.host.len, "app.local");
        CHECK(p->health.status_min == 200 && p->health.status_max == 204);
        CHECK(p->health.interval == 4000 && p->health.timeout == 1000);
        CHECK(p->health.rise == 1 && p->health.fall == 5);
        CHECK(p->passive.fails == 4 && p->passive.window == 20000 && p->passive.eject == 60000);
    }
    p = gh_config_pool(c, "api");
    CHECK(p != NULL && p->balance == GH_BALANCE_P2C && p->health.type == GH_HEALTH_TCP);
    CHECK(p != NULL && p->passive.fails == 3 && p->passive.window == 10000 && p->passive.eject == 30000);
    CHECK(p != NULL && p->health.interval == 5000 && p->health.fall == 3);

    CHECK_INT(c->nsites, 2);
    s = &c->sites[0];
    CHECK_INT(s->nnames, 2);
    CHECK_MEM(s->names[0].p, s->names[0].len, "example.com");
    CHECK_MEM(s->names[1].p, s->names[1].len, "*.example.com");
    CHECK(!s->is_default);
    CHECK(s->nlisteners == 1 && s->listeners[0] == 0);
    CHECK_INT(s->ncerts, 2);
    CHECK(strcmp(s->certs[0].cert_file.p + strlen(dir), "/certs/ec.pem") == 0);
    CHECK(strcmp(s->certs[1].key_file.p, "/abs/rsa.key") == 0);
    CHECK_INT(s->nroutes, 3);
    r = &s->routes[0]; /* sorted: /api/ (5) before /v1 (3) before / */
    CHECK_MEM(r->prefix.p, r->prefix.len, "/api/");
    CHECK_INT(r->action, GH_ACTION_PROXY);
    CHECK(r->pool == gh_config_pool(c, "api") && r->rewrite == GH_REWRITE_STRIP);
    CHECK_INT(r->nmethods, 2);
    CHECK_INT(r->nheaders, 1);
    CHECK_MEM(r->headers[0].name.p, r->headers[0].name.len, "x-canary");
    CHECK_INT(r->response_timeout, 30000);
    CHECK_INT(r->connect_timeout, 3000); /* from timeouts */
    CHECK(r->max_body == 10 * 1024 * 1024);
    CHECK_INT(r->nreq_ops, 2);
    CHECK(r->req_ops[0].op == GH_HEADER_SET && strcmp(r->req_ops[0].value.p, "gate house") == 0);
    CHECK(r->req_ops[1].op == GH_HEADER_REMOVE && strcmp(r->req_ops[1].name.p, "Cookie") == 0);
    CHECK_INT(r->nresp_ops, 1);
    CHECK_MEM(s->routes[1].prefix.p, s->routes[1].prefix.len, "/v1");
    CHECK(s->routes[1].rewrite == GH_REWRITE_REPLACE && strcmp(s->routes[1].replace_with.p, "/v2/") == 0);
    CHECK(s->routes[2].max_body == 2 * 1024 * 1024); /* from max_body */

    s = &c->sites[1];
    CHECK(s->is_default && s->nnames == 0 && s->nlisteners == 1 && s->listeners[0] == 1);
    CHECK_MEM(s->routes[0].prefix.p, s->routes[0].prefix.len, "/teapot");
    CHECK_INT(s->routes[0].status, 418);
    CHECK_MEM(s->routes[0].body.p, s->routes[0].body.len, "short and \"stout\"\n");
    CHECK_INT(s->routes[1].action, GH_ACTION_REDIRECT);
    CHECK_INT(s->routes[1].status, 301);
    gh_config_free(c);
}

static void defaults_and_forms(void)
{
    gh_config *c;

    unit_case("defaults: all listeners, round robin, no limits, no checks");
    c = parse_text("listen 127.0.0.1:1\nlisten 127.0.0.1:2\npool p { server h.test:1 }\n"
                   "site default { route / { proxy p } }\n");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK(c->sites[0].nlisteners == 2 && c->sites[0].listeners[1] == 1);
        CHECK(c->pools[0].balance == GH_BALANCE_ROUND_ROBIN && c->pools[0].health.type == GH_HEALTH_NONE);
        CHECK(c->pools[0].passive.fails == 0 && c->pools[0].servers[0].weight == 1);
        CHECK(c->sites[0].routes[0].max_body == GH_CFG_NO_LIMIT);
        CHECK(c->access_log == NULL && c->workers >= 1);
        CHECK(c->max_connections == 0); /* derived from the open file limit */
        CHECK_INT(c->timeouts.tunnel, 3600 * 1000);
        CHECK_INT(c->sites[0].routes[0].websocket, 1);
    }
    gh_config_free(c);

    unit_case("process security: user, group, seccomp (default: no names, seccomp on)");
    c = parse_text("user www-data\ngroup _gh.logs\nseccomp off\n" VALID_TAIL);
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK(strcmp(c->user, "www-data") == 0 && strcmp(c->group, "_gh.logs") == 0 && c->seccomp == 0);
        CHECK_INT(c->user_where.line, 1);
        CHECK_INT(c->group_where.line, 2);
    }
    gh_config_free(c);
    c = parse_text(VALID_TAIL);
    CHECK(c != NULL);
    if (c != NULL)
        CHECK(c->user == NULL && c->group == NULL && c->seccomp == 1 && c->user_where.line == 0);
    gh_config_free(c);

    unit_case("timeouts { tunnel }, websocket on|off");
    c = parse_text("timeouts { tunnel 90s }\nlisten 127.0.0.1:1\npool p { server 127.0.0.1:2 }\n"
                   "site default { route /a { proxy p; websocket off } route /b { proxy p; websocket on } }\n");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_INT(c->timeouts.tunnel, 90000);
        for (size_t i = 0; i < c->sites[0].nroutes; i++)
            CHECK_INT(c->sites[0].routes[i].websocket, c->sites[0].routes[i].prefix.p[1] == 'b');
    }
    gh_config_free(c);

    unit_case("max_connections N and auto");
    c = parse_text("max_connections 5000\n" VALID_TAIL);
    CHECK(c != NULL && c->max_connections == 5000);
    gh_config_free(c);
    c = parse_text("max_connections auto\n" VALID_TAIL);
    CHECK(c != NULL && c->max_connections == 0);
    gh_config_free(c);

    unit_case("pools may follow the sites; ';' and newlines end directives; CRLF; quoted {");
    c = parse_text("site default { route / { proxy later; respond_never_seen_because_comment # x }\r\n}\r\n"
                   "listen 127.0.0.1:1\r\npool later { server 127.0.0.1:2 }\n");
    CHECK(c == NULL); /* respond_never_seen_because_comment is unknown: comments start only at a token */
    gh_config_free(c);
    c = parse_text(
        "site default { route / { proxy later } }\r\nlisten 127.0.0.1:1\r\n"
        "pool later { server 127.0.0.1:2 }\nsite \"quoted.test\" { route / { respond 200 \"{ #not a comment }\" } }\n");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK(c->sites[0].routes[0].pool == &c->pools[0]);
        CHECK_MEM(c->sites[1].names[0].p, c->sites[1].names[0].len, "quoted.test");
        CHECK_MEM(c->sites[1].routes[0].body.p, c->sites[1].routes[0].body.len, "{ #not a comment }");
    }
    gh_config_free(c);

    unit_case("balance forms");
    for (int i = 0; i < 6; i++) {
        static const char *const forms[] = {"round_robin", "least_conn", "p2c", "random", "hash ip", "hash header X-U"};
        static const int want[] = {GH_BALANCE_ROUND_ROBIN, GH_BALANCE_LEAST_CONN, GH_BALANCE_P2C,
                                   GH_BALANCE_RANDOM,      GH_BALANCE_HASH,       GH_BALANCE_HASH};
        char text[512];

        snprintf(text, sizeof(text),
                 "listen 127.0.0.1:1\npool p { server 127.0.0.1:2; balance %s }\n"
                 "site default { route / { proxy p } }\n",
                 forms[i]);
        c = parse_text(text);
        CHECK(c != NULL && c->pools[0].balance == want[i]);
        if (c != NULL && i == 5)
            CHECK(c->pools[0].hash_key == GH_HASH_HEADER && strcmp(c->pools[0].hash_name.p, "X-U") == 0);
        gh_config_free(c);
    }
}

/* ---- errors ----------------------------------------------------------------------------------- */

static void errors_syntax(void)
{
    unit_case("syntax errors");
    EXPECT_ERROR("workers 2\nfrobnicate 1\n", "main.conf:2: unknown directive \"frobnicate\"");
    EXPECT_ERROR("workers 2 3\n", "main.conf:1: wrong number of arguments for \"workers\" (usage: workers N|auto)");
    EXPECT_ERROR("workers\n", "main.conf:1: wrong number of arguments for \"workers\"");
    EXPECT_ERROR("\n\nroute / { proxy a }\n",
                 "main.conf:3: \"route\" is not allowed here (it belongs in a site block)");
    EXPECT_ERROR("site a.test {\n  server 1.2.3.4:5\n}\n", "main.conf:2: \"server\" is not allowed here (it belongs "
                                                           "in a pool block)");
    EXPECT_ERROR("pool a\n{\n}\n", "main.conf:1: \"pool\" needs a { } block opened on the same line");
    EXPECT_ERROR("workers 2 {\n}\n", "main.conf:1: \"workers\" takes no { } block");
    EXPECT_ERROR("pool a {\n  server 1.2.3.4:5\n", "main.conf:3: unexpected end of file: the block opened at line 1");
    EXPECT_ERROR("workers 1\n}\n", "main.conf:2: unexpected \"}\"");
    EXPECT_ERROR("{\n", "main.conf:1: unexpected \"{\"");
    EXPECT_ERROR("access_log \"/tmp/x\n", "main.conf:1: unterminated string");
    EXPECT_ERROR("access_log \"a\\qb\"\n", "main.conf:1: unknown escape in a string");
    EXPECT_ERROR("access_log a\"b\"\n", "main.conf:1: unexpected quote inside a word");
    EXPECT_ERROR("access_log \"a\"b\n", "main.conf:1: a quoted string must be followed by a space");
    EXPECT_ERROR("\"workers\" 2\n", "main.conf:1: a directive name cannot be quoted");
    EXPECT_ERROR("workers 2\x01\n", "main.conf:1: control character 0x01");
    EXPECT_ERROR("workers 2\nworkers 3\n", "main.conf:2: duplicate \"workers\" (first at ");
    EXPECT_ERROR("timeouts {\n connect 1s\n connect 2s\n}\n", "main.conf:3: duplicate \"connect\"");
}

static void errors_values(void)
{
    unit_case("bad values");
    EXPECT_ERROR("workers 0\n", "main.conf:1: invalid worker count \"0\": expected a number from 1 to 1024");
    EXPECT_ERROR("max_connections 0\n",
                 "main.conf:1: invalid connection limit \"0\": expected a number from 1 to 16777216");
    EXPECT_ERROR("max_connections 16777217\n", "main.conf:1: invalid connection limit");
    EXPECT_ERROR("max_connections -1\n", "main.conf:1: invalid connection limit");
    EXPECT_ERROR("workers 99999999999999999999999\n", "main.conf:1: invalid worker count");
    EXPECT_ERROR("log_level loud\n", "main.conf:1: invalid log level \"loud\"");
    EXPECT_ERROR("user 1000\n", "main.conf:1: invalid user \"1000\": expected an account name");
    EXPECT_ERROR("user -x\n", "main.conf:1: invalid user \"-x\"");
    EXPECT_ERROR("group \"a b\"\n", "main.conf:1: invalid group \"a b\"");
    EXPECT_ERROR("user abcdefghijklmnopqrstuvwxyz0123456\n", "main.conf:1: invalid user"); /* 33 bytes */
    EXPECT_ERROR("seccomp maybe\n", "main.conf:1: invalid seccomp \"maybe\": expected on or off");
    EXPECT_ERROR("site default { route / { websocket maybe } }\n",
                 "main.conf:1: invalid websocket \"maybe\": expected on or off");
    EXPECT_ERROR("max_body 12q\n", "main.conf:1: invalid size \"12q\": expected a size such as 512, 16k, 1m or 1g");
    EXPECT_ERROR("max_body 99999999999g\n", "main.conf:1: invalid size \"99999999999g\": too large");
    EXPECT_ERROR("timeouts {\n  response 0s\n}\n", "main.conf:2: invalid duration \"0s\": must be greater than zero");
    EXPECT_ERROR("timeouts { header 10x }\n", "main.conf:1: invalid duration \"10x\": expected a duration");
    EXPECT_ERROR("listen 1.2.3.4\n", "main.conf:1: invalid listen address \"1.2.3.4\"");
    EXPECT_ERROR("listen localhost:80\n", "main.conf:1: invalid listen address \"localhost:80\"");
    EXPECT_ERROR("listen 1.2.3.4:80 ssl\n", "main.conf:1: invalid listen option \"ssl\"");
    EXPECT_ERROR("pool a { server 1.2.3.4:0 }\n", "main.conf:1: invalid server address \"1.2.3.4:0\": the port");
    EXPECT_ERROR("pool a { server 1.2.3:80 }\n", "main.conf:1: invalid server address \"1.2.3:80\"");
    EXPECT_ERROR("pool a { server [::1:80 }\n", "main.conf:1: invalid server address");
    EXPECT_ERROR("pool a { server bad_host!:80 }\n", "main.conf:1: invalid server address");
    EXPECT_ERROR("pool a { server 0.0.0.0:80 }\n", "main.conf:1: invalid server address \"0.0.0.0:80\": 0.0.0.0");
    EXPECT_ERROR("pool a { server 1.2.3.4:80 weight=0 }\n", "main.conf:1: invalid weight \"0\"");
    EXPECT_ERROR("pool a { server 1.2.3.4:80 heavy }\n", "main.conf:1: invalid server option \"heavy\"");
    EXPECT_ERROR("pool a { balance fastest }\n", "main.conf:1: invalid balance \"fastest\"");
    EXPECT_ERROR("pool a { balance hash header }\n", "main.conf:1: balance hash header needs a header name");
    EXPECT_ERROR("pool a { balance hash }\n", "main.conf:1: balance hash needs a key");
    EXPECT_ERROR("pool a {\nhealth http status=99\n}\n", "main.conf:2: invalid status range \"99\"");
    EXPECT_ERROR("pool a { health http status=300-200 }\n", "main.conf:1: invalid status range");
    EXPECT_ERROR("pool a { health udp }\n", "main.conf:1: invalid health check \"udp\"");
    EXPECT_ERROR("pool a { health http interval=1s timeout=1s }\n", "main.conf:1: the health check timeout must be");
    EXPECT_ERROR("pool a { passive fails=x }\n", "main.conf:1: invalid fails \"x\"");
    EXPECT_ERROR("pool a/b { }\n", "main.conf:1: invalid pool name \"a/b\"");
    EXPECT_ERROR("site a..*.b { }\n", "main.conf:1: invalid site name \"a..*.b\": a wildcard is only allowed");
    EXPECT_ERROR("site example.com:443 { }\n", "main.conf:1: invalid site name \"example.com:443\": no port here");
    EXPECT_ERROR("site [::1]:443 { }\n", "main.conf:1: invalid site name \"[::1]:443\"");
    EXPECT_ERROR("site x { route api { } }\n", "main.conf:1: invalid route prefix \"api\": must start with /");
    EXPECT_ERROR("site x {\n route / {\n  redirect 300 /x\n }\n}\n", "main.conf:3: invalid status \"300\"");
    EXPECT_ERROR("site x { route / { redirect 304 /x } }\n", "main.conf:1: invalid redirect status 304");
    EXPECT_ERROR("site x { route / { redirect 301 https://$hots/ } }\n",
                 "main.conf:1: unknown variable \"$hots\" in redirect target");
    EXPECT_ERROR("site x { route / { redirect 301 \"/a b\" } }\n", "main.conf:1: invalid redirect target");
    EXPECT_ERROR("site x { route / { respond 204 body } }\n", "main.conf:1: status 204 has no body");
    EXPECT_ERROR("site x { route / { respond 200; proxy a } }\n", "main.conf:1: a route has one action");
    EXPECT_ERROR("site x { route / { proxy a strip } }\n", "main.conf:1: usage: proxy POOL");
    EXPECT_ERROR("site x { route / { timeout idle 1s } }\n", "main.conf:1: invalid route timeout \"idle\"");
    EXPECT_ERROR("site x { route / { method \"G T\" } }\n", "main.conf:1: invalid method \"G T\"");
    EXPECT_ERROR("site x { route / { request_header set Content-Length 5 } }\n",
                 "main.conf:1: invalid header name \"Content-Length\": framing headers");
    EXPECT_ERROR("site x { route / { response_header set X-A \"a\\nb\" } }\n", "main.conf:1: invalid header value");
    EXPECT_ERROR("site x { route / { request_header add X-A b } }\n", "main.conf:1: usage: request_header set");
    EXPECT_ERROR("site x { route \"/a;b/\" { respond 200 } }\n", "main.conf:1: invalid route prefix \"/a;b/\"");
    EXPECT_ERROR("site x { route //a/ { respond 200 } }\n", "main.conf:1: invalid route prefix \"//a/\"");
    EXPECT_ERROR("site x { route /a%2Fb { respond 200 } }\n", "main.conf:1: invalid route prefix");
    EXPECT_ERROR("site x { route / { request_header remove HOST } }\n",
                 "main.conf:1: invalid header name \"HOST\": an HTTP/1.1 request needs a Host");
}

static void errors_whole_file(void)
{
    unit_case("errors found once the whole file is read");
    EXPECT_ERROR("listen 127.0.0.1:1\npool app { server 127.0.0.1:2 }\n"
                 "site default {\n  route / {\n    proxy ap\n  }\n}\n",
                 "main.conf:5: unknown pool \"ap\"");
    EXPECT_ERROR("listen 127.0.0.1:1\nlisten 127.0.0.1:1 tls\n",
                 "main.conf:2: duplicate listener 127.0.0.1:1 (first at ");
    EXPECT_ERROR("pool a { server 127.0.0.1:1 }\n\npool a { server 127.0.0.1:1 }\n",
                 "main.conf:3: duplicate pool \"a\" (first at ");
    EXPECT_ERROR(VALID_TAIL "site A.test { route / { proxy app } }\nsite a.test { route / { proxy app } }\n",
                 "main.conf:5: duplicate site a.test on listener 127.0.0.1:8080 (first at ");
    EXPECT_ERROR(VALID_TAIL "site default { route / { proxy app } }\n", "main.conf:4: duplicate site default");
    EXPECT_ERROR("listen 127.0.0.1:1 tls\npool app { server 127.0.0.1:2 }\nsite a.test {\n route / { proxy app }\n}\n",
                 "main.conf:3: site a.test is served by TLS listener 127.0.0.1:1 but has no cert");
    EXPECT_ERROR("listen 127.0.0.1:1\npool app { server 127.0.0.1:2 }\nsite a.test {\n listen 127.0.0.1:9\n"
                 " route / { proxy app }\n}\n",
                 "main.conf:4: no listener 127.0.0.1:9");
    EXPECT_ERROR("listen 127.0.0.1:1\nlisten 127.0.0.1:2\npool app { server 127.0.0.1:2 }\n"
                 "site a.test {\n listen 127.0.0.1:1\n route / { proxy app }\n}\n",
                 "main.conf:2: listener 127.0.0.1:2 serves no site");
    EXPECT_ERROR("listen 127.0.0.1:1\npool app {\n}\nsite default { route / { proxy app } }\n",
                 "main.conf:2: pool \"app\" has no server");
    EXPECT_ERROR("listen 127.0.0.1:1\npool app { server 127.0.0.1:2 backup }\nsite default { route / { proxy app } }\n",
                 "main.conf:2: pool \"app\" has no server that is not a backup");
    EXPECT_ERROR("listen 127.0.0.1:1\nsite default {\n}\n", "main.conf:2: site default has no route");
    EXPECT_ERROR("listen 127.0.0.1:1\nsite default {\n route / {\n }\n}\n", "main.conf:3: route / has no action");
    EXPECT_ERROR(VALID_TAIL "site b.test {\n route /x { respond 200 }\n route /x { respond 201 }\n}\n",
                 "main.conf:6: duplicate route /x with the same conditions");
    EXPECT_ERROR("workers 1\n\n", "main.conf:3: no listener");
    EXPECT_ERROR("listen 127.0.0.1:1\n", "main.conf:2: no site");
}

static void errors_files(void)
{
    char path[256], want[512];
    gh_config *c;

    unit_case("unreadable main file");
    snprintf(path, sizeof(path), "%s/missing.conf", dir);
    c = gh_config_parse(path, err, sizeof(err));
    snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
    CHECK(c == NULL && strcmp(err, want) == 0);
    c = gh_config_parse(dir, err, sizeof(err));
    snprintf(want, sizeof(want), "%s: cannot read: Is a directory", dir);
    CHECK(c == NULL && strcmp(err, want) == 0);

    unit_case("certificate readability is checked by load, not parse");
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    write_file("main.conf", "listen 127.0.0.1:1 tls\npool p { server 127.0.0.1:2 }\n"
                            "site default {\n cert c.pem c.key\n cert missing.pem c.key\n route / { proxy p }\n}\n");
    write_file("c.pem", "x");
    write_file("c.key", "x");
    c = gh_config_parse(path, err, sizeof(err));
    CHECK(c != NULL);
    CHECK(c != NULL && gh_config_check_files(c, err, sizeof(err)) < 0);
    snprintf(want, sizeof(want), "%s/main.conf:5: cannot read certificate \"%s/missing.pem\": No such file", dir, dir);
    CHECK(strncmp(err, want, strlen(want)) == 0);
    gh_config_free(c);
    c = gh_config_load(path, err, sizeof(err));
    CHECK(c == NULL && strncmp(err, want, strlen(want)) == 0);
    write_file("missing.pem", "x");
    c = gh_config_load(path, err, sizeof(err));
    CHECK(c != NULL);
    gh_config_free(c);
}

/* ---- include ---------------------------------------------------------------------------------- */

static void includes(void)
{
    gh_config *c;

    unit_case("include: glob, sorted, relative to the including file, in any block");
    make_dir("conf.d");
    make_dir("conf.d/routes");
    write_file("conf.d/20-site.conf", "site b.test {\n  include routes/*.conf\n}\n");
    write_file("conf.d/10-site.conf", "site a.test { route / { proxy app } }\n");
    write_file("conf.d/routes/api.conf", "route /api/ { proxy app }\n");
    write_file("conf.d/routes/root.conf", "route / { respond 200 }\n");
    write_file("conf.d/ignored.txt", "this is not config\n");
    write_file("pools.conf", "pool app { server 127.0.0.1:9 }\n");
    c = parse_text("listen 127.0.0.1:1\ninclude pools.conf\ninclude conf.d/*.conf\ninclude nothing/*.conf\n");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_INT(c->nsites, 2);
        CHECK_MEM(c->sites[0].names[0].p, c->sites[0].names[0].len, "a.test"); /* 10- before 20- */
        CHECK_INT(c->sites[1].nroutes, 2);
        CHECK(c->sites[1].routes[0].where.line == 1 && strstr(c->sites[1].routes[0].where.file, "routes/api.conf"));
    } else {
        fprintf(stderr, "    %s\n", err);
    }
    gh_config_free(c);

    unit_case("include errors point at the right file and line");
    EXPECT_ERROR("listen 127.0.0.1:1\n\ninclude nope.conf\n", "main.conf:3: cannot read \"");
    write_file("bad.conf", "\n\nworkers x\n");
    EXPECT_ERROR("include bad.conf\n", "bad.conf:3: invalid worker count \"x\"");
    write_file("unbalanced.conf", "}\n");
    EXPECT_ERROR("site x {\n include unbalanced.conf\n}\n", "unbalanced.conf:1: unexpected \"}\"");
    write_file("open.conf", "pool z {\n");
    EXPECT_ERROR("include open.conf\n", "open.conf:2: unexpected end of file");
    write_file("wrongctx.conf", "workers 2\n");
    EXPECT_ERROR("pool p {\n include wrongctx.conf\n}\n", "wrongctx.conf:1: \"workers\" is not allowed here");

    unit_case("include cycles and depth");
    write_file("a.conf", "include b.conf\n");
    write_file("b.conf", "\ninclude a.conf\n");
    EXPECT_ERROR("include a.conf\n", "b.conf:2: include cycle: \"");
    EXPECT_ERROR("include main.conf\n", "main.conf:1: include cycle");
    for (int i = 0; i < 12; i++) {
        char name[32], text[64];

        snprintf(name, sizeof(name), "deep%d.conf", i);
        snprintf(text, sizeof(text), "include deep%d.conf\n", i + 1);
        write_file(name, text);
    }
    EXPECT_ERROR("include deep0.conf\n", "deep7.conf:1: includes nested more than 8 deep");
}

/* ---- the example, the quick start, resolution, helpers ----------------------------------------- */

static void example(void)
{
    gh_config *c;
    const gh_cfg_site *s;

    unit_case("examples/gatehouse.conf parses (certificates are not checked by gh_config_parse)");
    c = gh_config_parse("examples/gatehouse.conf", err, sizeof(err));
    if (c == NULL)
        c = gh_config_parse("../examples/gatehouse.conf", err, sizeof(err));
    CHECK(c != NULL);
    if (c == NULL) {
        fprintf(stderr, "    %s\n", err);
        return;
    }
    CHECK_INT(c->nlisteners, 4);
    CHECK_INT(c->npools, 3);
    CHECK_INT(c->nsites, 3);
    s = &c->sites[0];
    CHECK_INT(s->ncerts, 2);
    CHECK_INT(s->nlisteners, 2);
    /* Conditional /admin/ sorts before the unconditional one. */
    for (size_t i = 0; i + 1 < s->nroutes; i++)
        if (strcmp(s->routes[i].prefix.p, "/admin/") == 0) {
            CHECK_INT(s->routes[i].nheaders, 1);
            CHECK_INT(s->routes[i + 1].nheaders, 0);
            break;
        }
    CHECK(gh_config_check_files(c, err, sizeof(err)) < 0 && strstr(err, "gatehouse.conf:") != NULL);
    gh_config_free(c);
}

static void quickstart(void)
{
    gh_conf q;
    gh_config *c;
    const gh_cfg_route *r;

    unit_case("quick start flags build the same model");
    gh_conf_defaults(&q);
    q.workers = 2;
    q.timeouts.connect = 1234;
    q.access_log = "-";
    q.cert_file = "site.pem";
    q.key_file = "site.key";
    CHECK(gh_addr_parse(&q.listen, "127.0.0.1:8443") == 0);
    CHECK(gh_addr_parse(&q.servers[0], "127.0.0.1:8080") == 0);
    CHECK(gh_addr_parse(&q.servers[1], "[::1]:8081") == 0);
    q.nservers = 2;
    c = gh_config_from_quickstart(&q, err, sizeof(err));
    CHECK(c != NULL);
    if (c == NULL)
        return;
    CHECK(c->workers == 2 && strcmp(c->access_log, "-") == 0 && c->access_log != q.access_log);
    CHECK(c->nlisteners == 1 && c->listeners[0].tls && strcmp(c->listeners[0].addr.text, "127.0.0.1:8443") == 0);
    CHECK(c->npools == 1 && c->pools[0].nservers == 2 && c->pools[0].balance == GH_BALANCE_ROUND_ROBIN);
    CHECK_MEM(c->pools[0].servers[1].host.p, c->pools[0].servers[1].host.len, "::1");
    CHECK_INT(c->pools[0].servers[1].port, 8081);
    CHECK(c->pools[0].servers[1].naddrs == 1 && strcmp(c->pools[0].servers[1].addrs[0].text, "[::1]:8081") == 0);
    CHECK_MEM(c->pools[0].servers[0].text.p, c->pools[0].servers[0].text.len, "127.0.0.1:8080");
    CHECK(c->nsites == 1 && c->sites[0].is_default && c->sites[0].ncerts == 1 && c->sites[0].nlisteners == 1);
    CHECK(strcmp(c->sites[0].certs[0].cert_file.p, "site.pem") == 0);
    r = &c->sites[0].routes[0];
    CHECK(c->sites[0].nroutes == 1 && r->action == GH_ACTION_PROXY && r->pool == &c->pools[0]);
    CHECK(strcmp(r->prefix.p, "/") == 0 && r->connect_timeout == 1234 && r->max_body == GH_CFG_NO_LIMIT);
    gh_config_free(c);
}

static void resolve(void)
{
    gh_config *c;

    unit_case("names resolve at load; failures name the line");
    c = parse_text("listen 127.0.0.1:1\npool p {\n server localhost:8080\n server 127.0.0.2:1\n}\n"
                   "site default { route / { proxy p } }\n");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK(gh_config_resolve(c, err, sizeof(err)) == 0);
        CHECK(c->pools[0].servers[0].naddrs >= 1);
        CHECK(c->pools[0].servers[0].naddrs >= 1 && strstr(c->pools[0].servers[0].addrs[0].text, ":8080") != NULL);
        CHECK(c->pools[0].servers[1].naddrs == 1);
        CHECK(c->pools[0].servers[0].naddrs <= c->pools[0].servers[0].nslots);
        for (size_t i = 1; i < c->pools[0].servers[0].naddrs; i++) /* sorted, no duplicates */
            CHECK(!gh_addr_same(&c->pools[0].servers[0].addrs[i - 1], &c->pools[0].servers[0].addrs[i]));
    }
    gh_config_free(c);
    c = parse_text("listen 127.0.0.1:1\npool p {\n\n server no-such-host.invalid:80\n}\n"
                   "site default { route / { proxy p } }\n");
    CHECK(c != NULL);
    if (c != NULL) {
        char want[256];

        snprintf(want, sizeof(want), "%s/main.conf:4: cannot resolve no-such-host.invalid: ", dir);
        CHECK(gh_config_resolve(c, err, sizeof(err)) < 0);
        unit_check(strncmp(err, want, strlen(want)) == 0, __FILE__, __LINE__, "error \"%s\"", err);
    }
    gh_config_free(c);
}

/* Loads dir/b/main.conf through src and resolves it; NULL with err set. */
static gh_config *load_through(const gh_conf_source *src)
{
    char path[256];
    gh_config *c;

    snprintf(path, sizeof(path), "%s/b/main.conf", dir);
    c = gh_config_load_from(path, src, err, sizeof(err));
    if (c != NULL && gh_config_resolve_from(c, src, err, sizeof(err)) < 0) {
        gh_config_free(c);
        c = NULL;
    }
    return c;
}

static void bundle(void)
{
    char path[256], sub[256];
    gh_bundle *rec, *got;
    gh_config *c;
    gh_conf_file f = {0};
    struct addrinfo *res = NULL;
    const char *data;
    size_t len, rejected = 0;
    int fd;

    unit_case("bundle: a load recorded in the master is the same load in a worker, with the disk changed");
    snprintf(sub, sizeof(sub), "%s/b", dir);
    mkdir(sub, 0700);
    snprintf(sub, sizeof(sub), "%s/b/conf.d", dir);
    mkdir(sub, 0700);
    write_file("b/main.conf", "listen 127.0.0.1:1 tls\ninclude conf.d/*.conf\n"
                              "site default {\n cert c.pem c.key\n route / { proxy p }\n}\n");
    write_file("b/conf.d/pool.conf", "pool p {\n server localhost:8080\n server 127.0.0.2:1\n}\n");
    write_file("b/c.pem", "PEM");
    write_file("b/c.key", "KEY");
    rec = gh_bundle_recorder();
    CHECK(rec != NULL);
    if (rec == NULL)
        return;
    c = load_through(gh_bundle_source(rec));
    CHECK(c != NULL);
    gh_config_free(c);
    fd = gh_bundle_memfd(rec);
    CHECK(fd >= 0);
    CHECK(write(fd, "x", 1) < 0 && errno == EPERM); /* sealed: no process may change it under a worker */
    /* Everything on disk changes or goes: the worker must not notice. */
    write_file("b/main.conf", "bogus\n");
    snprintf(path, sizeof(path), "%s/b/conf.d/pool.conf", dir);
    unlink(path);
    got = fd >= 0 ? gh_bundle_from_memfd(fd, err, sizeof(err)) : NULL;
    CHECK(got != NULL);
    if (fd >= 0)
        close(fd);
    c = got != NULL ? load_through(gh_bundle_source(got)) : NULL;
    unit_check(c != NULL, __FILE__, __LINE__, "load from the bundle: %s", err);
    if (c != NULL) {
        CHECK_INT(c->npools, 1);
        CHECK_INT(c->pools[0].nservers, 2);
        CHECK(c->pools[0].servers[0].naddrs >= 1 && strstr(c->pools[0].servers[0].addrs[0].text, ":8080") != NULL);
        CHECK_INT(c->nsites, 1);
        CHECK_INT(c->sites[0].ncerts, 1);
    }
    gh_config_free(c);

    unit_case("bundle: the certificate bytes are the recorded ones; a miss is an error, never the disk");
    if (got != NULL) {
        const gh_conf_source *src = gh_bundle_source(got);

        snprintf(path, sizeof(path), "%s/b/c.pem", dir);
        CHECK(src->read(src, path, 1 << 20, &f) == 0 && f.len == 3 && memcmp(f.data, "PEM", 3) == 0);
        gh_conf_file_dispose(&f);
        CHECK_INT(src->read(src, path, 2, &f), EFBIG);
        snprintf(path, sizeof(path), "%s/b/other.pem", dir);
        write_file("b/other.pem", "on disk, not in the bundle");
        CHECK_INT(src->read(src, path, 1 << 20, &f), ENOENT);
        CHECK(src->getaddrinfo(src, "localhost", "8081", NULL, &res) != 0 && res == NULL);
        CHECK(src->getaddrinfo(src, "localhost", "8080", NULL, &res) == 0 && res != NULL);
        src->freeaddrinfo(src, res);
    }

    unit_case("bundle: every truncation and a corrupted length are refused");
    data = gh_bundle_data(rec);
    len = gh_bundle_size(rec);
    for (size_t n = 0; n < len; n++) {
        gh_bundle *b = gh_bundle_parse(data, n, err, sizeof(err));

        rejected += b == NULL;
        gh_bundle_free(b);
    }
    CHECK_INT(rejected, len);
    {
        char *bad = malloc(len);

        if (bad != NULL) {
            gh_bundle *b;
            uint32_t huge = 0xfffffff0u;

            memcpy(bad, data, len);
            memcpy(bad + 16 + 8, &huge, 4); /* the first entry's value length */
            b = gh_bundle_parse(bad, len, err, sizeof(err));
            CHECK(b == NULL && strstr(err, "invalid reload bundle") != NULL);
            gh_bundle_free(b);
            memcpy(bad, data, len);
            bad[16] = 9; /* an unknown kind */
            b = gh_bundle_parse(bad, len, err, sizeof(err));
            CHECK(b == NULL);
            gh_bundle_free(b);
            free(bad);
        }
    }
    gh_bundle_free(got);
    gh_bundle_free(rec);
}

static void route_helpers(void)
{
    gh_config *c;
    char out[128];
    gh_redirect_vars v = {{"https", 5}, {"a.test", 6}, {"/x?y=1", 6}};
    const gh_cfg_site *s;

    unit_case("redirect targets and prefix rewriting");
    c = parse_text("listen 127.0.0.1:1\npool p { server 127.0.0.1:2 }\nsite default {\n"
                   " route /r1 { redirect 301 https://$host$request_uri }\n"
                   " route /r2 { redirect 302 \"$scheme://b.test/$$5$$\" }\n"
                   " route /r3 { redirect 307 /static }\n"
                   " route /api/ { proxy p strip_prefix }\n"
                   " route /api2 { proxy p strip_prefix }\n"
                   " route /old/ { proxy p replace_prefix /new }\n"
                   " route /o { proxy p replace_prefix /n/ }\n"
                   " route / { proxy p }\n}\n");
    CHECK(c != NULL);
    if (c == NULL) {
        fprintf(stderr, "    %s\n", err);
        return;
    }
    s = &c->sites[0];
    for (size_t i = 0; i < s->nroutes; i++) {
        const gh_cfg_route *r = &s->routes[i];
        int n;
#define RW(in, want)                                                                                                   \
    do {                                                                                                               \
        n = gh_route_rewrite_path(r, in, strlen(in), out, sizeof(out));                                                \
        CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0), want);                                                          \
    } while (0)

        if (strcmp(r->prefix.p, "/r1") == 0) {
            n = gh_route_redirect_target(r, &v, out, sizeof(out));
            CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0), "https://a.test/x?y=1");
            CHECK_INT(gh_route_redirect_target(r, &v, out, 20), -1); /* 20 bytes + NUL do not fit */
            CHECK_INT(gh_route_redirect_target(r, &v, out, 21), 20);
        } else if (strcmp(r->prefix.p, "/r2") == 0) {
            n = gh_route_redirect_target(r, &v, out, sizeof(out));
            CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0), "https://b.test/$5$");
        } else if (strcmp(r->prefix.p, "/r3") == 0) {
            n = gh_route_redirect_target(r, &v, out, sizeof(out));
            CHECK_MEM(out, (unsigned long)(n > 0 ? n : 0), "/static");
        } else if (strcmp(r->prefix.p, "/api/") == 0) {
            RW("/api/users?x=1", "/users?x=1");
            RW("/api/", "/");
        } else if (strcmp(r->prefix.p, "/api2") == 0) {
            RW("/api2", "/");
            RW("/api2?q", "/?q");
            RW("/api2/v", "/v");
        } else if (strcmp(r->prefix.p, "/old/") == 0) {
            RW("/old/a/b", "/new/a/b");
            RW("/old/", "/new/");
        } else if (strcmp(r->prefix.p, "/o") == 0) {
            RW("/o/a", "/n/a");
            RW("/o", "/n/");
        } else {
            RW("/keep/this?q", "/keep/this?q");
            CHECK_INT(gh_route_rewrite_path(r, "/abc", 4, out, 4), -1);
        }
#undef RW
    }
    gh_config_free(c);
}

/* A8: which response statuses passive ejection counts (a client must not eject a server by asking for a 500). */
static void passive_statuses(void)
{
    gh_config *c;
    const gh_cfg_pool *p;

    unit_case("passive_ejection_by_client_requesting_500: default statuses are 502-504 only");
    c = parse_text("listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000; passive }\n"
                   "site default { route / { proxy app } }\n");
    CHECK(c != NULL);
    p = c != NULL ? gh_config_pool(c, "app") : NULL;
    CHECK(p != NULL);
    if (p != NULL) {
        for (int st = 100; st <= 599; st++)
            unit_check(gh_cfg_passive_counts(&p->passive, st) == (st >= 502 && st <= 504), __FILE__, __LINE__,
                       "status %d counts %d", st, gh_cfg_passive_counts(&p->passive, st));
        CHECK(!gh_cfg_passive_counts(&p->passive, 0) && !gh_cfg_passive_counts(&p->passive, 600));
        CHECK(!gh_cfg_passive_counts(&p->passive, -1) && !gh_cfg_passive_counts(&p->passive, 99999));
    }
    gh_config_free(c);

    unit_case("passive status= lists: ranges, single values, none");
    c = parse_text("listen 127.0.0.1:8080\n"
                   "pool a { server 127.0.0.1:9000; passive fails=2 status=500-504,429 eject=5s }\n"
                   "pool b { server 127.0.0.1:9000; passive status=none }\n"
                   "pool c { server 127.0.0.1:9000; passive status=599,100 }\n"
                   "site default { route / { proxy a } }\n");
    CHECK(c != NULL);
    if (c != NULL) {
        p = gh_config_pool(c, "a");
        CHECK(p->passive.fails == 2 && p->passive.eject == 5000 && p->passive.window == 10000);
        CHECK(gh_cfg_passive_counts(&p->passive, 500) && gh_cfg_passive_counts(&p->passive, 504));
        CHECK(gh_cfg_passive_counts(&p->passive, 429) && !gh_cfg_passive_counts(&p->passive, 428));
        CHECK(!gh_cfg_passive_counts(&p->passive, 430) && !gh_cfg_passive_counts(&p->passive, 505));
        p = gh_config_pool(c, "b");
        CHECK(p->passive.fails == 3);
        for (int st = 100; st <= 599; st++)
            CHECK(!gh_cfg_passive_counts(&p->passive, st));
        p = gh_config_pool(c, "c");
        CHECK(gh_cfg_passive_counts(&p->passive, 599) && gh_cfg_passive_counts(&p->passive, 100));
        CHECK(!gh_cfg_passive_counts(&p->passive, 502) && !gh_cfg_passive_counts(&p->passive, 101));
    }
    gh_config_free(c);

    unit_case("passive status= errors name the line");
    EXPECT_ERROR("pool a {\npassive status=5xx\n}\n", "main.conf:2: invalid status list \"5xx\"");
    EXPECT_ERROR("pool a { passive status=504-502 }\n", "main.conf:1: invalid status list \"504-502\"");
    EXPECT_ERROR("pool a { passive status=502, }\n", "main.conf:1: invalid status list \"502,\"");
    EXPECT_ERROR("pool a { passive status= }\n", "main.conf:1: invalid status list \"\"");
    EXPECT_ERROR("pool a { passive status=99 }\n", "main.conf:1: invalid status list \"99\"");
    EXPECT_ERROR("pool a { passive status=500-600 }\n", "main.conf:1: invalid status list \"500-600\"");
    EXPECT_ERROR("pool a { passive status=502,,503 }\n", "main.conf:1: invalid status list");
    EXPECT_ERROR("pool a { passive code=502 }\n", "main.conf:1: invalid passive option \"code=502\"");
}

/* A7: every address of a name is a server; how many a name may have is fixed by the file. */
static void name_slots(void)
{
    gh_config *c;
    char text[4096];
    size_t at = 0;

    unit_case("server slots: 1 for an address, 8 for a name unless max_addrs=N; resolve_interval");
    c = parse_text("listen 127.0.0.1:8080\nresolve_interval 500ms\n"
                   "pool app { server 127.0.0.1:9000; server app.internal:80; server b.internal:80 max_addrs=3 }\n"
                   "site default { route / { proxy app } }\n");
    CHECK(c != NULL);
    if (c != NULL) {
        CHECK_INT(c->pools[0].servers[0].nslots, 1);
        CHECK_INT(c->pools[0].servers[1].nslots, GH_CFG_NAME_SLOTS);
        CHECK_INT(c->pools[0].servers[2].nslots, 3);
        CHECK_INT(c->resolve_interval, 500);
    }
    gh_config_free(c);
    c = parse_text(VALID_TAIL);
    CHECK(c != NULL && c->resolve_interval == 30000);
    gh_config_free(c);

    unit_case("server slots: a pool holds at most 64, a name counting as its max_addrs");
    at += (size_t)snprintf(text + at, sizeof(text) - at, "pool a {\n");
    for (int i = 0; i < 8; i++)
        at += (size_t)snprintf(text + at, sizeof(text) - at, " server n%d.internal:80\n", i);
    snprintf(text + at, sizeof(text) - at, " server 127.0.0.1:1\n}\n");
    EXPECT_ERROR(text, "main.conf:10: too many servers in pool \"a\" (at most 64; a server given by name counts");
    EXPECT_ERROR("pool a { server 127.0.0.1:80 max_addrs=2 }\n",
                 "main.conf:1: max_addrs is for a server given by name, not 127.0.0.1:80");
    EXPECT_ERROR("pool a { server a.internal:80 max_addrs=17 }\n", "main.conf:1: invalid max_addrs \"17\"");
    EXPECT_ERROR("pool a { server a.internal:80 max_addrs=0 }\n", "main.conf:1: invalid max_addrs \"0\"");
    EXPECT_ERROR("resolve_interval 0\n", "main.conf:1: invalid resolve_interval \"0\"");
    at = (size_t)snprintf(text, sizeof(text), "listen 127.0.0.1:1\npool a {\n");
    for (int i = 0; i < 64; i++)
        at += (size_t)snprintf(text + at, sizeof(text) - at, " server n%d.internal:80 max_addrs=1\n", i);
    snprintf(text + at, sizeof(text) - at, "}\nsite default { route / { proxy a } }\n");
    c = parse_text(text);
    CHECK(c != NULL);
    gh_config_free(c);
}

/* A resolver that answers 10.0.0.1..10.0.0.6 rotated by *arg, as round-robin DNS does. */
static int rotating_gai(const gh_conf_source *src, const char *host, const char *port, const struct addrinfo *hints,
                        struct addrinfo **res)
{
    int rot = *(const int *)src->arg;
    struct addrinfo *head = NULL, **tail = &head;

    (void)host, (void)port, (void)hints;
    for (int i = 0; i < 6; i++) {
        struct addrinfo *ai = calloc(1, sizeof(*ai) + sizeof(struct sockaddr_in));
        struct sockaddr_in *sin = (struct sockaddr_in *)(ai + 1);
        sin->sin_family = AF_INET;
        sin->sin_port = htons(80);
        sin->sin_addr.s_addr = htonl(0x0a000001u + (uint32_t)((i + rot) % 6));
        ai->ai_family = AF_INET;
        ai->ai_socktype = SOCK_STREAM;
        ai->ai_addr = (struct sockaddr *)sin;
        ai->ai_addrlen = sizeof(*sin);
        *tail = ai;
        tail = &ai->ai_next;
    }
    *res = head;
    return 0;
}

static void rotating_free(const gh_conf_source *src, struct addrinfo *res)
{
    (void)src;
    while (res != NULL) {
        struct addrinfo *next = res->ai_next;
        free(res);
        res = next;
    }
}

/* max_addrs smaller than the answer: the same addresses whatever the rotation (sorted, then cut). */
static void name_addrs_truncated_in_resolver_order(void)
{
    char first[2][2][64];

    unit_case("name_addrs_truncated_in_resolver_order");
    for (int rot = 0; rot < 2; rot++) {
        int r = rot * 3;
        gh_conf_source src = *gh_conf_source_fs();
        src.getaddrinfo = rotating_gai;
        src.freeaddrinfo = rotating_free;
        src.arg = &r;
        gh_config *c = parse_text("listen 127.0.0.1:8080\npool app { server rr.test:80 max_addrs=2 }\n"
                                  "site default { route / { proxy app } }\n");
        CHECK(c != NULL);
        if (c == NULL)
            return;
        CHECK(gh_config_resolve_from(c, &src, err, sizeof(err)) == 0);
        CHECK_INT(c->pools[0].servers[0].naddrs, 2);
        for (int i = 0; i < 2; i++)
            snprintf(first[rot][i], sizeof(first[rot][i]), "%s", c->pools[0].servers[0].addrs[i].text);
        gh_config_free(c);
    }
    CHECK(strcmp(first[0][0], first[1][0]) == 0 && strcmp(first[0][1], first[1][1]) == 0);
    CHECK(strcmp(first[0][0], "10.0.0.1:80") == 0);
}

/* Access logs, rules, rate limits and hidden headers: a route's own, else its site's, else the main context's. */
static void edge_inheritance(void)
{
    gh_config *c;
    const gh_cfg_route *a = NULL, *b = NULL, *q = NULL;

    unit_case("edge: logs, rules, rate limits and hidden headers are inherited and overridden");
    c = parse_text("listen 127.0.0.1:8080\n"
                   "access_log main.log\n"
                   "hide_header X-Main\n"
                   "log_format f escape=json \"{\\\"s\\\":$status,\\\"u\\\":\\\"${uri}\\\"}$$\"\n"
                   "pool app { server 127.0.0.1:9000 }\n"
                   "site default {\n"
                   "  access_log site.log format=f\n"
                   "  deny 10.0.0.0/8\n"
                   "  rate_limit 600r/m\n"
                   "  response_header set X-Frame-Options DENY\n"
                   "  hsts max-age=24h includeSubDomains\n"
                   "  route /a/ { proxy app; allow 192.0.2.1; deny all; rate_limit off; hide_header none }\n"
                   "  route /b/ { proxy app; access_log off; rate_limit 5r/s burst=3 key=header:X-Key;"
                   " response_header set X-Frame-Options SAMEORIGIN; intercept_errors 502 504-505 }\n"
                   "  route /q/ { proxy app; access_log - format=combined }\n"
                   "}\n");
    CHECK(c != NULL);
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->sites[0].nroutes; i++) {
        const gh_cfg_route *r = &c->sites[0].routes[i];
        if (strcmp(r->prefix.p, "/a/") == 0)
            a = r;
        else if (strcmp(r->prefix.p, "/b/") == 0)
            b = r;
        else
            q = r;
    }
    CHECK(a != NULL && b != NULL && q != NULL);
    if (a == NULL || b == NULL || q == NULL)
        return;
    CHECK_INT(c->nlogs, 3);
    CHECK(strstr(c->access_log, "main.log") != NULL);
    CHECK(a->access_log != NULL && strstr(a->access_log->path, "site.log") != NULL);
    CHECK(a->access_log->format->json && strcmp(a->access_log->format->name.p, "f") == 0);
    CHECK_INT(a->access_log->format->nsegs, 5); /* {"s": $status ,"u":" $uri "}$ */
    CHECK(b->access_log == NULL);
    CHECK(strcmp(q->access_log->path, "-") == 0 && strcmp(q->access_log->format->name.p, "combined") == 0);
    CHECK_INT(a->edge.nrules, 3); /* allow, deny all as two families */
    CHECK(a->edge.rules[0].allow && !a->edge.rules[1].allow);
    CHECK_INT(q->edge.nrules, 1); /* the site's */
    CHECK(a->edge.rate == NULL);
    CHECK(b->edge.rate != NULL && b->edge.rate->burst == 3 && b->edge.rate->interval_us == 200000 &&
          b->edge.rate->key == GH_RATE_KEY_HEADER && strcmp(b->edge.rate->key_name.p, "x-key") == 0);
    CHECK(q->edge.rate != NULL && q->edge.rate->interval_us == 100000 && q->edge.rate->burst == 10);
    CHECK(q->edge.rate->id != b->edge.rate->id);
    CHECK_INT(a->edge.nhide, 0);
    CHECK_INT(q->edge.nhide, 5); /* the four defaults and X-Main */
    CHECK(strcmp(q->edge.hide[4].p, "X-Main") == 0);
    CHECK_INT(b->nresp_ops, 1); /* the route's X-Frame-Options replaces the site's */
    CHECK(strcmp(b->resp_ops[0].value.p, "SAMEORIGIN") == 0);
    CHECK_INT(q->nresp_ops, 1);
    CHECK(strcmp(q->resp_ops[0].value.p, "DENY") == 0);
    CHECK(strcmp(c->sites[0].hsts.p, "max-age=86400; includeSubDomains") == 0);
    CHECK(q->site == &c->sites[0]);
    CHECK(b->intercept_any && gh_cfg_status_in(b->intercept, 502) && !gh_cfg_status_in(b->intercept, 503) &&
          gh_cfg_status_in(b->intercept, 505) && !gh_cfg_status_in(b->intercept, 500));
    CHECK(!q->intercept_any);
    gh_config_free(c);

    unit_case("edge: errors");
    EXPECT_ERROR("log_format combined \"$status\"\n" VALID_TAIL, "main.conf:1: invalid log format name \"combined\"");
    EXPECT_ERROR("log_format x \"${status\"\n" VALID_TAIL, "main.conf:1: unknown variable \"$status\"");
    EXPECT_ERROR("access_log a.log format=nope\n" VALID_TAIL, "main.conf:1: unknown log format \"nope\"");
    EXPECT_ERROR("access_log off format=json\n" VALID_TAIL, "main.conf:1: invalid access_log \"format=json\"");
    EXPECT_ERROR("listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\nsite default {\n"
                 "  route / { proxy app; rate_limit 0r/s }\n}\n",
                 "main.conf:4: invalid rate \"0r/s\"");
    EXPECT_ERROR("listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\nsite default {\n"
                 "  route / { proxy app; rate_limit 1r/s burst=0 }\n}\n",
                 "main.conf:4: invalid burst \"0\"");
    EXPECT_ERROR("listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\nsite default {\n"
                 "  deny 10.0.0.1/8\n  route / { proxy app }\n}\n",
                 "main.conf:4: invalid network \"10.0.0.1/8\"");
    EXPECT_ERROR("listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\nsite default {\n"
                 "  hsts max-age=100 includeSubDomains preload\n  route / { proxy app }\n}\n",
                 "main.conf:4: hsts preload needs");
    EXPECT_ERROR("listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\nsite default {\n"
                 "  route / { proxy app; intercept_errors 599-500 }\n}\n",
                 "main.conf:4: invalid status range \"599-500\"");
    EXPECT_ERROR("listen 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\nsite default {\n"
                 "  route / { proxy app; allow all; allow all; access_log a; access_log b }\n}\n",
                 "main.conf:4: duplicate");

    unit_case("edge: a stream's allow/deny and rate_limit are its own, nothing inherited");
    c = parse_text("pool p { server 127.0.0.1:9000 }\n"
                   "stream a {\n  listen 127.0.0.1:8080\n  proxy p\n  allow 10.0.0.0/8 192.0.2.1\n  deny all\n"
                   "  rate_limit 60r/m burst=5\n}\n"
                   "stream b {\n  listen 127.0.0.1:8081\n  proxy p\n  deny 198.51.100.0/24\n  rate_limit off\n}\n"
                   "stream c {\n  listen 127.0.0.1:8082\n  proxy p\n}\n");
    CHECK(c != NULL && c->nstreams == 3);
    if (c != NULL && c->nstreams == 3) {
        const gh_cfg_stream *sa = &c->streams[0], *sb = &c->streams[1], *sc = &c->streams[2];

        CHECK_INT(sa->edge.nrules, 4); /* two allows, deny all as two families */
        CHECK(sa->edge.rules[0].allow && sa->edge.rules[1].allow && !sa->edge.rules[2].allow);
        CHECK(sa->edge.rate != NULL && sa->edge.rate->interval_us == 1000000 && sa->edge.rate->burst == 5 &&
              sa->edge.rate->key == GH_RATE_KEY_IP);
        CHECK_INT(sb->edge.nrules, 1);
        CHECK(!sb->edge.rules[0].allow && sb->edge.rules != sa->edge.rules);
        CHECK(sb->edge.rate == NULL); /* off: none */
        CHECK_INT(sc->edge.nrules, 0);
        CHECK(sc->edge.rate == NULL);
    }
    gh_config_free(c);
    EXPECT_ERROR("pool p { server 127.0.0.1:9000 }\nstream s {\n  listen 127.0.0.1:8080\n  proxy p\n"
                 "  rate_limit 1r/s key=cookie:sid\n}\n",
                 "main.conf:5: a stream's rate_limit counts new connections per client address: key=ip only");
    EXPECT_ERROR("pool p { server 127.0.0.1:9000 }\nstream s {\n  listen 127.0.0.1:8080\n  proxy p\n"
                 "  allow 10.0.0.1/8\n}\n",
                 "main.conf:5: invalid network \"10.0.0.1/8\"");
}

/* `workers auto` on more cores than GH_CFG_MAX_WORKERS fell back to 1 worker instead of the maximum. */
static void workers_auto_over_max_cores_caps_not_one(void)
{
    int capped = -1;

    unit_case("workers_auto_over_max_cores_caps_not_one");
    CHECK_INT(gh_conf_auto_workers(GH_CFG_MAX_WORKERS + 1, GH_CFG_MAX_WORKERS, &capped), GH_CFG_MAX_WORKERS);
    CHECK_INT(capped, 1);
    CHECK_INT(gh_conf_auto_workers(4096, GH_CFG_MAX_WORKERS, &capped), GH_CFG_MAX_WORKERS);
    CHECK_INT(gh_conf_auto_workers(GH_CFG_MAX_WORKERS, GH_CFG_MAX_WORKERS, &capped), GH_CFG_MAX_WORKERS);
    CHECK_INT(capped, 0);
    CHECK_INT(gh_conf_auto_workers(2, GH_CFG_MAX_WORKERS, &capped), 2);
    CHECK_INT(capped, 0);
    CHECK_INT(gh_conf_auto_workers(-1, GH_CFG_MAX_WORKERS, &capped), 1); /* sysconf failed: unknown */
    CHECK_INT(capped, 0);
    CHECK_INT(gh_conf_auto_workers(0, GH_CFG_MAX_WORKERS, NULL), 1);
}

void suite_conf(void)
{
    snprintf(dir, sizeof(dir), "/tmp/gh-conf-XXXXXX");
    if (mkdtemp(dir) == NULL) {
        CHECK(!"mkdtemp");
        return;
    }
    units();
    full_model();
    defaults_and_forms();
    errors_syntax();
    errors_values();
    errors_whole_file();
    errors_files();
    includes();
    example();
    quickstart();
    resolve();
    bundle();
    route_helpers();
    passive_statuses();
    name_slots();
    name_addrs_truncated_in_resolver_order();
    edge_inheritance();
    workers_auto_over_max_cores_caps_not_one();
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    unit_case(NULL);
}
