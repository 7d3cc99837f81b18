#include "main/cli.h"

#include <ctype.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

enum {
    OPT_LISTEN = 256,
    OPT_CERT,
    OPT_KEY,
    OPT_TO,
    OPT_WORKERS,
    OPT_ACCESS_LOG,
    OPT_LOG_LEVEL,
    OPT_MAX_CONNECTIONS,
    OPT_USER,
    OPT_GROUP,
    OPT_SECCOMP,
    OPT_TIMEOUT, /* OPT_TIMEOUT + i: --FLAG of gh_cfg_timeout_table[i] */
    OPT_END = OPT_TIMEOUT + GH_CFG_NTIMEOUTS
};

/* The options but the timeouts, which come from gh_cfg_timeout_table (see all_options). */
static const struct option fixed_options[] = {
    {"listen", required_argument, NULL, OPT_LISTEN},
    {"cert", required_argument, NULL, OPT_CERT},
    {"key", required_argument, NULL, OPT_KEY},
    {"to", required_argument, NULL, OPT_TO},
    {"workers", required_argument, NULL, OPT_WORKERS},
    {"access-log", required_argument, NULL, OPT_ACCESS_LOG},
    {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
    {"max-connections", required_argument, NULL, OPT_MAX_CONNECTIONS},
    {"user", required_argument, NULL, OPT_USER},
    {"group", required_argument, NULL, OPT_GROUP},
    {"seccomp", required_argument, NULL, OPT_SECCOMP},
    {"config", required_argument, NULL, 'c'},
    {"test", no_argument, NULL, 't'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'V'},
    {NULL, 0, NULL, 0},
};

#define NFIXED (sizeof(fixed_options) / sizeof(fixed_options[0]) - 1)

/* fixed_options, then a --FLAG for every timeout that has one, then the terminator. */
static void all_options(struct option out[NFIXED + GH_CFG_NTIMEOUTS + 1])
{
    size_t n = NFIXED;

    memcpy(out, fixed_options, NFIXED * sizeof(out[0]));
    for (size_t i = 0; i < GH_CFG_NTIMEOUTS; i++)
        if (gh_cfg_timeout_table[i].flag != NULL)
            out[n++] = (struct option){gh_cfg_timeout_table[i].flag, required_argument, NULL, OPT_TIMEOUT + (int)i};
    out[n] = (struct option){NULL, 0, NULL, 0};
}

#define STR_(x)         #x
#define STR(x)          STR_(x)
#define DURATION_SYNTAX "expected a duration such as 500ms, 10s, 5m or 1h"
#define ADDR_SYNTAX     "expected host:port, numeric (127.0.0.1:8080, [::1]:8080)"
#define SHORT_USAGE     "Usage: gatehouse --listen ADDR --cert FILE --key FILE --to ADDR [--to ADDR ...] [options]\n"

void gh_cli_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* A startup error is an error to journald too (journalctl -p err), not the stream's default priority. */
    fprintf(stderr, "%sgatehouse: %s\n", gh_log_to_journal() ? "<3>" : "", msg);
}

/* The canonical "--name" of an option code, whatever abbreviation was typed. */
static const char *option_name(int code)
{
    if (code >= OPT_TIMEOUT && code < OPT_END)
        return gh_cfg_timeout_table[code - OPT_TIMEOUT].flag;
    for (const struct option *o = fixed_options; o->name != NULL; o++)
        if (o->val == code)
            return o->name;
    return "?";
}

/* Milliseconds per unit suffix, or 0 for an unknown suffix. A bare number is seconds. */
static uint32_t unit_ms(const char *suffix)
{
    if (strcmp(suffix, "ms") == 0)
        return 1;
    if (suffix[0] == '\0' || strcmp(suffix, "s") == 0)
        return 1000;
    if (strcmp(suffix, "m") == 0)
        return 60 * 1000;
    if (strcmp(suffix, "h") == 0)
        return 3600 * 1000;
    return 0;
}

int gh_cli_parse_duration(const char *s, uint32_t *ms, const char **why)
{
    uint64_t v = 0;
    uint32_t unit;
    size_t i;

    *why = DURATION_SYNTAX;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    for (i = 0; s[i] >= '0' && s[i] <= '9'; i++) {
        v = v * 10 + (uint64_t)(s[i] - '0');
        /* Checked per digit: v stays far below UINT64_MAX, so this cannot wrap. */
        if (v > UINT32_MAX) {
            *why = "too long (the maximum is 1193h)";
            return -1;
        }
    }
    unit = unit_ms(s + i);
    if (unit == 0)
        return -1;
    if (v == 0) {
        /* Zero would mean "no timeout" elsewhere; here every timeout is on. */
        *why = "must be greater than zero";
        return -1;
    }
    if (v > UINT32_MAX / unit) {
        *why = "too long (the maximum is 1193h)";
        return -1;
    }
    *ms = (uint32_t)(v * unit);
    return 0;
}

/* Renders a default for --help: all of them are whole seconds today. */
static const char *format_duration(uint32_t ms, char *buf, size_t len)
{
    if (ms % 1000 == 0)
        snprintf(buf, len, "%us", ms / 1000);
    else
        snprintf(buf, len, "%ums", ms);
    return buf;
}

static void print_help(void)
{
    static const char *const level_names[] = {"error", "warn", "info", "debug"};
    gh_conf d;
    char flag[32], dflt[16];

    gh_conf_defaults(&d);
    printf(SHORT_USAGE "\n"
                       "gatehouse terminates TLS on ADDR (ALPN h2 and http/1.1) and forwards each request\n"
                       "to one of the --to servers over plain HTTP/1.1 (keep-alive, round-robin).\n"
                       "\n"
                       "   or: gatehouse -c FILE [-t] [--workers N] [--log-level LEVEL]\n"
                       "\n"
                       "  -c, --config FILE       run from a configuration file (docs/config.md)\n"
                       "  -t, --test              check the configuration (file or flags), then exit\n"
                       "\n"
                       "Required without -c:\n"
                       "  --listen ADDR           address to accept TLS connections on (0.0.0.0:443, [::]:443)\n"
                       "  --cert FILE             certificate chain in PEM, leaf first\n"
                       "  --key FILE              private key in PEM\n"
                       "  --to ADDR               upstream HTTP server (127.0.0.1:8080); repeat for more,\n"
                       "                          up to %d\n"
                       "\n"
                       "Options:\n"
                       "  --workers N             worker processes, 1 to %d (default: one per CPU core: %d)\n"
                       "  --access-log PATH|-     access log, appended to PATH, or - for standard output\n"
                       "                          (default: off)\n"
                       "  --log-level LEVEL       error, warn, info or debug (default: %s)\n"
                       "  --max-connections N     client connections, all workers together, 1 to %u\n"
                       "                          (default: from the open file limit, logged at start)\n"
                       "  --user NAME             started as root: the account of the workers (default:\n"
                       "                          nobody); the master keeps root to bind and read keys\n"
                       "  --group NAME            their group (default: the user's primary group)\n"
                       "  --seccomp on|off        the workers' system-call allow-list (default: on)\n"
                       "\n"
                       "Timeouts (500ms, 10s, 5m, 1h; a bare number is seconds):\n",
           GH_LB_MAX_SERVERS, GH_CLI_MAX_WORKERS, d.workers, level_names[d.log_level], GH_CLI_MAX_CONNS);
    for (size_t i = 0; i < GH_CFG_NTIMEOUTS; i++) {
        const gh_cfg_timeout *t = &gh_cfg_timeout_table[i];

        if (t->flag == NULL)
            continue;
        snprintf(flag, sizeof(flag), "--%s T", t->flag);
        printf("  %-22s  %s (default: %s)\n", flag, t->help,
               format_duration(*gh_cfg_timeout_field(&d.timeouts, t), dflt, sizeof(dflt)));
    }
    fputs("\n"
          "  -h, --help              print this help and exit\n"
          "  -V, --version           print the version and exit\n"
          "\n"
          "Addresses are numeric: 192.0.2.1:8080 or [2001:db8::1]:8080.\n"
          "Signals: SIGTERM finishes in-flight requests, then exits; SIGINT and SIGQUIT\n"
          "exit at once; SIGHUP reloads the file; SIGUSR1 reopens the access log; SIGUSR2\n"
          "starts the binary at the same path and hands it the listening sockets (upgrade).\n"
          "Errors go to standard error. See gatehouse(8).\n",
          stdout);
}

static int bad_value(int opt, const char *arg, const char *why)
{
    gh_cli_error("--%s: \"%s\": %s", option_name(opt), arg, why);
    return -1;
}

/* The field a timeout option sets, or NULL for another option. */
static uint32_t *duration_field(gh_conf *c, int opt)
{
    if (opt < OPT_TIMEOUT || opt >= OPT_END)
        return NULL;
    return gh_cfg_timeout_field(&c->timeouts, &gh_cfg_timeout_table[opt - OPT_TIMEOUT]);
}

/* 1..max, digits only: no sign, spaces or suffix; at most 9 digits, so no overflow. */
static int parse_count(const char *s, uint32_t max, uint32_t *n)
{
    uint64_t v = 0;

    if (s[0] == '\0')
        return -1;
    for (size_t i = 0; s[i] != '\0'; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 9)
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < 1 || v > max)
        return -1;
    *n = (uint32_t)v;
    return 0;
}

/*
 * Connecting to 0.0.0.0 or [::] reaches the local host on Linux, by accident:
 * as a --to it is almost surely a listen address pasted in the wrong place.
 */
static int addr_is_unspecified(const gh_addr *a)
{
    if (a->ss.ss_family == AF_INET)
        return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

static int parse_server(gh_conf *c, const char *arg)
{
    gh_addr *a;

    if (c->nservers == GH_LB_MAX_SERVERS) {
        gh_cli_error("--to: \"%s\": at most %d servers", arg, GH_LB_MAX_SERVERS);
        return -1;
    }
    a = &c->servers[c->nservers];
    if (gh_addr_parse(a, arg) < 0)
        return bad_value(OPT_TO, arg, ADDR_SYNTAX);
    if (addr_is_unspecified(a))
        return bad_value(OPT_TO, arg, "not a server address (0.0.0.0 and [::] are for --listen)");
    c->nservers++;
    return 0;
}

/* As the `user` directive takes them (conf/directives.c): useradd(8)'s portable names. */
static int is_account_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 32 || !(isalpha((unsigned char)s[0]) || s[0] == '_'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-')
            return 0;
    return 1;
}

static int apply_option(gh_conf *c, int opt, const char *arg)
{
    const char *why;
    uint32_t *field, n;

    switch (opt) {
    case OPT_LISTEN:
        if (gh_addr_parse(&c->listen, arg) < 0)
            return bad_value(opt, arg, ADDR_SYNTAX);
        return 0;
    case OPT_CERT:
    case OPT_KEY:
    case OPT_ACCESS_LOG:
        if (arg[0] == '\0')
            return bad_value(opt, arg, opt == OPT_ACCESS_LOG ? "expected a file path or -" : "expected a file path");
        if (opt == OPT_CERT)
            c->cert_file = arg;
        else if (opt == OPT_KEY)
            c->key_file = arg;
        else
            c->access_log = arg;
        return 0;
    case OPT_TO:
        return parse_server(c, arg);
    case OPT_WORKERS:
        if (parse_count(arg, GH_CLI_MAX_WORKERS, &n) < 0)
            return bad_value(opt, arg, "expected a number from 1 to " STR(GH_CLI_MAX_WORKERS));
        c->workers = (int)n;
        return 0;
    case OPT_MAX_CONNECTIONS:
        if (parse_count(arg, GH_CLI_MAX_CONNS, &c->max_connections) < 0)
            return bad_value(opt, arg, "expected a number from 1 to " STR(GH_CLI_MAX_CONNS));
        return 0;
    case OPT_USER:
    case OPT_GROUP:
        if (!is_account_name(arg))
            return bad_value(opt, arg, "expected an account name (letters, digits, '.', '_', '-'; not a number)");
        *(opt == OPT_USER ? &c->user : &c->group) = arg;
        return 0;
    case OPT_SECCOMP:
        if (strcmp(arg, "on") != 0 && strcmp(arg, "off") != 0)
            return bad_value(opt, arg, "expected on or off");
        c->seccomp = strcmp(arg, "on") == 0;
        return 0;
    case OPT_LOG_LEVEL:
        if ((c->log_level = gh_log_level_parse(arg)) < 0)
            return bad_value(opt, arg, "expected error, warn, info or debug");
        return 0;
    default:
        field = duration_field(c, opt);
        if (field == NULL || gh_cli_parse_duration(arg, field, &why) < 0)
            return bad_value(opt, arg, field == NULL ? "unknown option" : why);
        return 0;
    }
}

/* Reports what getopt_long refused: an unknown option, a missing or an unwanted value. */
static void getopt_error(int ret, char **argv)
{
    const char *typed = argv[optind - 1];

    if (ret == ':')
        gh_cli_error("--%s: missing value", option_name(optopt));
    else if (optopt == 'h' || optopt == 'V' || optopt >= OPT_LISTEN)
        gh_cli_error("%.*s: takes no value", (int)strcspn(typed, "="), typed);
    else if (optopt != 0)
        gh_cli_error("unknown option \"-%c\"", optopt);
    else
        gh_cli_error("unknown or ambiguous option \"%.*s\"", (int)strcspn(typed, "="), typed);
}

/* --listen, --cert, --key and --to are mandatory; names every one missing at once. */
static int check_required(const gh_conf *c)
{
    char missing[64] = "";
    size_t n = 0;

    if (c->listen.len == 0)
        n += (size_t)snprintf(missing + n, sizeof(missing) - n, " --listen");
    if (c->cert_file == NULL)
        n += (size_t)snprintf(missing + n, sizeof(missing) - n, " --cert");
    if (c->key_file == NULL)
        n += (size_t)snprintf(missing + n, sizeof(missing) - n, " --key");
    if (c->nservers == 0)
        n += (size_t)snprintf(missing + n, sizeof(missing) - n, " --to");
    if (n == 0)
        return 0;
    gh_cli_error("missing required option%s:%s", strchr(missing + 1, ' ') ? "s" : "", missing);
    fputs(SHORT_USAGE, stderr);
    return -1;
}

static int usage_error(void)
{
    fputs("Try 'gatehouse --help' for more information.\n", stderr);
    return GH_CLI_USAGE;
}

int gh_cli_parse(gh_conf *c, int argc, char **argv)
{
    /* Single-valued options may appear once: a second --listen is a mistake, not an override. */
    unsigned char seen[OPT_END - OPT_LISTEN] = {0};
    struct option options[NFIXED + GH_CFG_NTIMEOUTS + 1];
    int opt;

    all_options(options);
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":hVc:t", options, NULL)) != -1) {
        if (opt == 'c') {
            if (c->config_file != NULL) {
                gh_cli_error("-c: given more than once");
                return usage_error();
            }
            c->config_file = optarg;
            continue;
        }
        if (opt == 't') {
            c->test_only = 1;
            continue;
        }
        if (opt == 'h') {
            print_help();
            return GH_CLI_DONE;
        }
        if (opt == 'V') {
            printf("gatehouse " GH_VERSION "\n");
            return GH_CLI_DONE;
        }
        if (opt == '?' || opt == ':' || opt < OPT_LISTEN || opt >= OPT_END) {
            getopt_error(opt, argv);
            return usage_error();
        }
        if (opt != OPT_TO && seen[opt - OPT_LISTEN]++) {
            gh_cli_error("--%s: given more than once", option_name(opt));
            return usage_error();
        }
        if (apply_option(c, opt, optarg) < 0)
            return usage_error();
        if (opt == OPT_WORKERS)
            c->workers_given = 1;
    }
    if (optind < argc) {
        gh_cli_error("unexpected argument \"%s\"", argv[optind]);
        return usage_error();
    }
    if (c->config_file != NULL) {
        /* One source of truth: a file and quick-start flags that contradict it would confuse. */
        if (c->listen.len != 0 || c->cert_file != NULL || c->key_file != NULL || c->nservers != 0 ||
            c->access_log != NULL || c->max_connections != 0 || c->user != NULL || c->group != NULL ||
            seen[OPT_SECCOMP - OPT_LISTEN]) {
            gh_cli_error("-c: --listen, --cert, --key, --to, --access-log, --max-connections, --user, --group and "
                         "--seccomp belong in the file");
            return usage_error();
        }
        return GH_CLI_RUN;
    }
    if (check_required(c) < 0)
        return usage_error();
    return GH_CLI_RUN;
}
