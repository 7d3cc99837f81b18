/*
 * The typed setters of src/conf (setters.c): units, bounds and the wording of
 * their errors, options given as KEY=VALUE, rows that are a slot and nothing
 * else, and the timeouts list that the directive, the defaults and the CLI
 * share.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/directives.h"
#include "conf/timeouts.h"
#include "unit.h"

static char err[512];

/* A parser with just what the setters use: an arena, the error buffer and a file name. */
static void parser_init(conf__parser *p, gh_config *cfg)
{
    memset(p, 0, sizeof(*p));
    memset(cfg, 0, sizeof(*cfg));
    p->cfg = cfg;
    p->a = conf__arena_new();
    p->err = err;
    p->errlen = sizeof(err);
    p->file = "t.conf";
    err[0] = '\0';
}

/* Runs slot's setter on text into field; returns its result. */
static int set(conf__parser *p, const conf__slot *slot, const char *what, const char *text, void *field)
{
    err[0] = '\0';
    return slot->set(p, 7, what, text, strlen(text), field, slot);
}

#define CHECK_PREFIX(want)                                                                                             \
    unit_check(strncmp(err, want, strlen(want)) == 0, __FILE__, __LINE__, "error \"%s\", want prefix \"%s\"", err, want)
#define CHECK_ERR(want) unit_check(strcmp(err, want) == 0, __FILE__, __LINE__, "error \"%s\", want \"%s\"", err, want)

typedef struct fields {
    uint32_t ms, n;
    uint64_t bytes;
    int on;
    gh_cstr text;
} fields;

static void durations(conf__parser *p)
{
    static const conf__slot slot = CONF__DURATION(fields, ms);
    fields f = {0};

    unit_case("duration units");
    CHECK(set(p, &slot, "interval", "500ms", &f.ms) == 0 && f.ms == 500);
    CHECK(set(p, &slot, "interval", "10s", &f.ms) == 0 && f.ms == 10000);
    CHECK(set(p, &slot, "interval", "5m", &f.ms) == 0 && f.ms == 300000);
    CHECK(set(p, &slot, "interval", "1h", &f.ms) == 0 && f.ms == 3600000);
    CHECK(set(p, &slot, "interval", "7", &f.ms) == 0 && f.ms == 7000); /* bare: seconds */
    CHECK(set(p, &slot, "interval", "4294967295ms", &f.ms) == 0 && f.ms == UINT32_MAX);
    unit_case("duration errors");
    f.ms = 42;
    CHECK(set(p, &slot, "interval", "0", &f.ms) < 0);
    CHECK_ERR("t.conf:7: invalid interval \"0\": must be greater than zero (every timeout is on)");
    CHECK(set(p, &slot, "interval", "4294967296ms", &f.ms) < 0);
    CHECK_PREFIX("t.conf:7: invalid interval \"4294967296ms\": ");
    CHECK(set(p, &slot, "duration", "10x", &f.ms) < 0);
    CHECK_PREFIX("t.conf:7: invalid duration \"10x\": expected a duration");
    CHECK(set(p, &slot, "interval", "", &f.ms) < 0);
    CHECK(set(p, &slot, "interval", "-1s", &f.ms) < 0);
    CHECK(set(p, &slot, "interval", "1.5s", &f.ms) < 0);
    CHECK_INT(f.ms, 42); /* a refused value leaves the field alone */
}

static void counts(conf__parser *p)
{
    static const conf__slot slot = CONF__COUNT(fields, n, 1, 1000);
    static const conf__slot wide = CONF__COUNT(fields, n, 0, UINT64_MAX);
    fields f = {0};

    unit_case("count bounds");
    CHECK(set(p, &slot, "fails", "1", &f.n) == 0 && f.n == 1);
    CHECK(set(p, &slot, "fails", "1000", &f.n) == 0 && f.n == 1000);
    CHECK(set(p, &slot, "fails", "0", &f.n) < 0);
    CHECK_ERR("t.conf:7: invalid fails \"0\": expected a number from 1 to 1000");
    CHECK(set(p, &slot, "count", "1001", &f.n) < 0);
    CHECK_ERR("t.conf:7: invalid count \"1001\": expected a number from 1 to 1000");
    CHECK(set(p, &slot, "fails", "+5", &f.n) < 0);
    CHECK(set(p, &slot, "fails", "5 ", &f.n) < 0);
    CHECK(set(p, &slot, "fails", "", &f.n) < 0);
    CHECK_INT(f.n, 1000);
    unit_case("count fits its uint32_t field whatever the row's max");
    CHECK(set(p, &wide, "n", "4294967295", &f.n) == 0 && f.n == UINT32_MAX);
    CHECK(set(p, &wide, "n", "4294967296", &f.n) < 0);
    CHECK_ERR("t.conf:7: invalid n \"4294967296\": expected a number from 0 to 4294967295");
    CHECK(set(p, &wide, "n", "99999999999999999999999", &f.n) < 0);
}

static void sizes(conf__parser *p)
{
    static const conf__slot slot = CONF__SIZE(fields, bytes, 1024, 1 << 20);
    static const conf__slot any = CONF__SIZE(fields, bytes, 0, 0);
    static const conf__slot limit = CONF__LIMIT(fields, bytes);
    fields f = {0};

    unit_case("size units and bounds");
    CHECK(set(p, &slot, "request_buffer", "16k", &f.bytes) == 0 && f.bytes == 16384);
    CHECK(set(p, &slot, "request_buffer", "1M", &f.bytes) == 0 && f.bytes == 1 << 20);
    CHECK(set(p, &slot, "request_buffer", "1024", &f.bytes) == 0 && f.bytes == 1024);
    CHECK(set(p, &slot, "request_buffer", "1023", &f.bytes) < 0);
    CHECK_ERR("t.conf:7: invalid request_buffer \"1023\": expected 1024 to 1048576 bytes");
    CHECK(set(p, &slot, "request_buffer", "2m", &f.bytes) < 0);
    CHECK(set(p, &slot, "request_buffer", "1x", &f.bytes) < 0);
    CHECK_PREFIX("t.conf:7: invalid request_buffer \"1x\": ");
    CHECK(set(p, &slot, "request_buffer", "off", &f.bytes) < 0);
    CHECK_INT(f.bytes, 1024);
    CHECK(set(p, &any, "size", "1g", &f.bytes) == 0 && f.bytes == 1ull << 30);
    CHECK(set(p, &any, "size", "0", &f.bytes) == 0 && f.bytes == 0);
    CHECK(set(p, &any, "size", "99999999999g", &f.bytes) < 0); /* overflow is an error, not a wrap */
    unit_case("size or off");
    CHECK(set(p, &limit, "size", "off", &f.bytes) == 0 && f.bytes == GH_CFG_NO_LIMIT);
    CHECK(set(p, &limit, "size", "0", &f.bytes) == 0 && f.bytes == 0);
    CHECK(set(p, &limit, "size", "Off", &f.bytes) < 0);
    CHECK_PREFIX("t.conf:7: invalid size \"Off\": ");
}

static void flags_and_strings(conf__parser *p)
{
    static const conf__slot flag = CONF__FLAG(fields, on);
    static const conf__slot str = CONF__STRING(fields, text);
    fields f = {0};
    char text[] = "a value";

    unit_case("on/off");
    CHECK(set(p, &flag, "websocket", "on", &f.on) == 0 && f.on == 1);
    CHECK(set(p, &flag, "websocket", "off", &f.on) == 0 && f.on == 0);
    CHECK(set(p, &flag, "websocket", "ON", &f.on) < 0);
    CHECK_ERR("t.conf:7: invalid websocket \"ON\": expected on or off");
    CHECK(set(p, &flag, "websocket", "1", &f.on) < 0);
    CHECK(set(p, &flag, "websocket", "", &f.on) < 0);
    unit_case("string");
    CHECK(set(p, &str, "name", text, &f.text) == 0);
    CHECK_MEM(f.text.p, f.text.len, "a value");
    CHECK(f.text.p != text && f.text.p[f.text.len] == '\0'); /* a copy in the arena, NUL-terminated */
    CHECK(set(p, &str, "name", "a\r\nX-Evil: 1", &f.text) < 0);
    CHECK_PREFIX("t.conf:7: invalid name \"");
    CHECK(strstr(err, "control characters are not allowed") != NULL);
    CHECK_MEM(f.text.p, f.text.len, "a value");
}

static conf__arg arg(const char *s)
{
    return (conf__arg){s, strlen(s), 0};
}

static void options(conf__parser *p)
{
    static const conf__option opts[] = {
        {"interval", CONF__DURATION(fields, ms)},
        {"rise", CONF__SLOT(conf__set_count, fields, n, uint32_t, 1, 10, "count")},
        {NULL, {0}},
    };
    fields f = {0};
    conf__arg a;

    unit_case("KEY=VALUE options");
    a = arg("interval=2s");
    CHECK(conf__set_option(p, 3, opts, &a, &f) == 0 && f.ms == 2000);
    a = arg("rise=4");
    CHECK(conf__set_option(p, 3, opts, &a, &f) == 0 && f.n == 4);
    a = arg("rise=11");
    CHECK(conf__set_option(p, 3, opts, &a, &f) == -1);
    CHECK_ERR("t.conf:3: invalid count \"11\": expected a number from 1 to 10");
    a = arg("interval=");
    CHECK(conf__set_option(p, 3, opts, &a, &f) == -1);
    CHECK_PREFIX("t.conf:3: invalid interval \"\": ");
    unit_case("not one of the options: left to the caller");
    a = arg("interval");
    CHECK(conf__set_option(p, 3, opts, &a, &f) == 1);
    a = arg("intervalx=1s");
    CHECK(conf__set_option(p, 3, opts, &a, &f) == 1);
    a = arg("fall=2");
    CHECK(conf__set_option(p, 3, opts, &a, &f) == 1);
    CHECK(f.ms == 2000 && f.n == 4);
}

/* A row that is only a slot: the parser's dispatch runs it on the block's object. */
static void slot_rows(conf__parser *p)
{
    static const conf__dirspec row = {
        "connect", CONF__CTX_TIMEOUTS, 1, 1, 0, 0, NULL, "connect DURATION", CONF__DURATION(gh_cfg_timeouts, connect)};
    static const conf__dirspec limit = {"max_body",
                                        CONF__CTX_MAIN,
                                        1,
                                        1,
                                        0,
                                        0,
                                        NULL,
                                        "max_body SIZE|off",
                                        CONF__SLOT(conf__set_limit, gh_config, max_body, uint64_t, 0, 0, "size")};
    conf__directive d;

    unit_case("slot rows");
    memset(&d, 0, sizeof(d));
    d.line = 9;
    d.nargs = 1;
    d.args[0] = arg("3s");
    CHECK(conf__set_slot(p, &d, &row) == 0 && p->cfg->timeouts.connect == 3000);
    CHECK_INT(p->cfg->timeouts.response, 0); /* its neighbours untouched */
    d.args[0] = arg("0");
    CHECK(conf__set_slot(p, &d, &row) < 0);
    CHECK_ERR(
        "t.conf:9: invalid connect \"0\": must be greater than zero (every timeout is on)"); /* no `what`: the
                                                                                                directive's name */
    d.args[0] = arg("2k");
    CHECK(conf__set_slot(p, &d, &limit) == 0 && p->cfg->max_body == 2048);
    d.args[0] = arg("2q");
    CHECK(conf__set_slot(p, &d, &limit) < 0);
    CHECK_PREFIX("t.conf:9: invalid size \"2q\": ");
}

/* Every timeout of GH_CFG_TIMEOUTS: its directive sets its field and no other; defaults come from the list. */
static void timeouts_list(void)
{
    char dir[] = "/tmp/gh-setters-XXXXXX", path[64], text[512];
    gh_cfg_timeouts defaults;

    unit_case("timeouts list");
    gh_cfg_timeouts_defaults(&defaults);
    CHECK_INT(defaults.connect, 5000); /* docs/config.md */
    CHECK_INT(defaults.upstream_idle, 30000);
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/main.conf", dir);
    for (size_t i = 0; i < GH_CFG_NTIMEOUTS; i++) {
        const gh_cfg_timeout *t = &gh_cfg_timeout_table[i];
        FILE *f = fopen(path, "w");
        gh_config *c;

        unit_case("timeouts { %s }", t->name);
        CHECK(t->default_ms > 0 && t->help != NULL && t->help[0] != '\0');
        CHECK(*gh_cfg_timeout_field(&defaults, t) == t->default_ms);
        if (f == NULL)
            break;
        snprintf(text, sizeof(text),
                 "timeouts { %s 1234ms }\nlisten 127.0.0.1:8080\npool app { server 127.0.0.1:9000 }\n"
                 "site default { route / { proxy app } }\n",
                 t->name);
        fputs(text, f);
        fclose(f);
        c = gh_config_parse(path, err, sizeof(err));
        CHECK(c != NULL);
        if (c == NULL)
            continue;
        for (size_t j = 0; j < GH_CFG_NTIMEOUTS; j++)
            CHECK_INT(*gh_cfg_timeout_field(&c->timeouts, &gh_cfg_timeout_table[j]),
                      j == i ? 1234 : gh_cfg_timeout_table[j].default_ms);
        gh_config_free(c);
    }
    unlink(path);
    rmdir(dir);
}

void suite_conf_setters(void)
{
    conf__parser p;
    gh_config cfg;

    parser_init(&p, &cfg);
    CHECK(p.a != NULL);
    if (p.a == NULL)
        return;
    durations(&p);
    counts(&p);
    sizes(&p);
    flags_and_strings(&p);
    options(&p);
    slot_rows(&p);
    conf__arena_free(p.a);
    timeouts_list();
    unit_case(NULL);
}
