/* forward/rules: the address classes (SSRF) and the forward proxy's rule matching, from parsed configs. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/config.h"
#include "forward/rules.h"
#include "unit.h"

static struct sockaddr_storage sa(const char *ip)
{
    struct sockaddr_storage ss;

    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    return ss;
}

static unsigned cls(const char *ip)
{
    struct sockaddr_storage ss = sa(ip);
    return gh_addr_class((struct sockaddr *)&ss);
}

static void classes(void)
{
    static const struct {
        const char *ip;
        unsigned want;
    } cases[] = {
        {"8.8.8.8", 0},
        {"1.1.1.1", 0},
        {"2001:4860:4860::8888", 0},
        {"127.0.0.1", GH_ADDR_LOOPBACK},
        {"127.255.255.254", GH_ADDR_LOOPBACK},
        {"::1", GH_ADDR_LOOPBACK},
        {"10.0.0.1", GH_ADDR_PRIVATE},
        {"172.16.0.1", GH_ADDR_PRIVATE},
        {"172.31.255.255", GH_ADDR_PRIVATE},
        {"172.32.0.1", 0},
        {"192.168.0.1", GH_ADDR_PRIVATE},
        {"fc00::1", GH_ADDR_PRIVATE},
        {"fdff::1", GH_ADDR_PRIVATE},
        {"169.254.1.1", GH_ADDR_LINKLOCAL},
        {"fe80::1", GH_ADDR_LINKLOCAL},
        {"100.64.0.1", GH_ADDR_CGNAT},
        {"100.127.255.255", GH_ADDR_CGNAT},
        {"100.128.0.1", 0},
        {"169.254.169.254", GH_ADDR_LINKLOCAL | GH_ADDR_METADATA},
        {"fd00:ec2::254", GH_ADDR_PRIVATE | GH_ADDR_METADATA},
        {"224.0.0.1", GH_ADDR_MULTICAST},
        {"ff02::1", GH_ADDR_MULTICAST},
        {"0.0.0.0", GH_ADDR_UNSPECIFIED},
        {"0.1.2.3", GH_ADDR_UNSPECIFIED},
        {"::", GH_ADDR_UNSPECIFIED},
        {"255.255.255.255", GH_ADDR_RESERVED},
        {"240.0.0.1", GH_ADDR_RESERVED},
        {"192.0.2.1", GH_ADDR_RESERVED},
        /* IPv6 forms that carry an IPv4 address are that address */
        {"::ffff:127.0.0.1", GH_ADDR_LOOPBACK},
        {"::ffff:10.1.2.3", GH_ADDR_PRIVATE},
        {"::ffff:169.254.169.254", GH_ADDR_LINKLOCAL | GH_ADDR_METADATA},
        {"::ffff:8.8.8.8", 0},
        {"64:ff9b::7f00:1", GH_ADDR_LOOPBACK},
        {"64:ff9b::a9fe:a9fe", GH_ADDR_LINKLOCAL | GH_ADDR_METADATA},
        {"2002:7f00:1::1", GH_ADDR_LOOPBACK},
        {"2002:0808:0808::1", 0},
        {"::127.0.0.1", GH_ADDR_LOOPBACK | GH_ADDR_RESERVED},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unit_case("address class of %s", cases[i].ip);
        CHECK_INT(cls(cases[i].ip), cases[i].want);
    }
    unit_case("class names");
    CHECK(strcmp(gh_addr_class_name(GH_ADDR_LINKLOCAL | GH_ADDR_METADATA), "metadata") == 0);
    CHECK(strcmp(gh_addr_class_name(GH_ADDR_PRIVATE), "private") == 0);
    CHECK(strcmp(gh_addr_class_name(0), "public") == 0);
}

static void host_patterns(void)
{
    gh_cstr exact = {"example.com", 11}, wild = {"*.example.com", 13}, any = {"*", 1};

    unit_case("host patterns");
    CHECK(gh_fwd_host_match(&exact, "example.com", 11));
    CHECK(!gh_fwd_host_match(&exact, "www.example.com", 15));
    CHECK(!gh_fwd_host_match(&exact, "example.co", 10));
    CHECK(gh_fwd_host_match(&wild, "www.example.com", 15));
    CHECK(gh_fwd_host_match(&wild, "a.b.example.com", 15));
    CHECK(!gh_fwd_host_match(&wild, "example.com", 11));
    CHECK(!gh_fwd_host_match(&wild, "badexample.com", 14));
    CHECK(gh_fwd_host_match(&any, "anything", 8));
}

static char dir[] = "/tmp/gh-unit-forward-XXXXXX";

static gh_config *load(const char *forward)
{
    char path[300], err[512], text[2048];
    FILE *f;
    gh_config *c;

    snprintf(path, sizeof(path), "%s/f.conf", dir);
    snprintf(text, sizeof(text),
             "listen 127.0.0.1:3128\nsite proxy {\n    listen 127.0.0.1:3128\n    forward {\n%s\n    }\n}\n", forward);
    if ((f = fopen(path, "w")) == NULL)
        return NULL;
    fputs(text, f);
    fclose(f);
    c = gh_config_parse(path, err, sizeof(err));
    if (c == NULL)
        printf("  (config error: %s)\n", err);
    return c;
}

typedef struct q {
    const char *host;
    uint16_t port;
    int connect;
    const char *client, *user, *addr;
} q;

/* The verdict for q: before DNS (DENY or RESOLVE), then for its address; *rule the deciding rule. */
static int judge(const gh_cfg_forward *f, const q *x, int *rule, const char **why)
{
    struct sockaddr_storage client = sa(x->client ? x->client : "192.0.2.10"), a = sa(x->addr);
    gh_fwd_req r = {x->host, strlen(x->host), x->port, x->connect, (struct sockaddr *)&client, x->user};

    *why = "name";
    if (gh_fwd_check_name(f, &r, rule) == GH_FWD_DENY)
        return GH_FWD_DENY;
    return gh_fwd_check_addr(f, &r, (struct sockaddr *)&a, rule, why);
}

static void rules(void)
{
    gh_config *c;
    const gh_cfg_forward *f;
    int rule;
    const char *why;

    if (mkdtemp(dir) == NULL)
        return;
    unit_case("default deny");
    c = load("        rule allow host=*.ok.test");
    CHECK(c != NULL);
    if (c == NULL)
        return;
    f = c->sites[0].forward;
    CHECK_INT(judge(f, &(q){"a.ok.test", 443, 1, NULL, NULL, "8.8.8.8"}, &rule, &why), GH_FWD_ALLOW);
    CHECK_INT(rule, 0);
    CHECK_INT(judge(f, &(q){"a.bad.test", 443, 1, NULL, NULL, "8.8.8.8"}, &rule, &why), GH_FWD_DENY);
    CHECK_INT(rule, -1);
    unit_case("CONNECT without port=: 443 only; plain http: any port");
    CHECK_INT(judge(f, &(q){"a.ok.test", 22, 1, NULL, NULL, "8.8.8.8"}, &rule, &why), GH_FWD_DENY);
    CHECK_INT(judge(f, &(q){"a.ok.test", 8080, 0, NULL, NULL, "8.8.8.8"}, &rule, &why), GH_FWD_ALLOW);
    unit_case("internal addresses need to=");
    CHECK_INT(judge(f, &(q){"a.ok.test", 443, 1, NULL, NULL, "10.0.0.1"}, &rule, &why), GH_FWD_DENY);
    CHECK(strcmp(why, "private") == 0);
    CHECK_INT(judge(f, &(q){"a.ok.test", 443, 1, NULL, NULL, "169.254.169.254"}, &rule, &why), GH_FWD_DENY);
    CHECK(strcmp(why, "metadata") == 0);
    CHECK_INT(judge(f, &(q){"a.ok.test", 443, 1, NULL, NULL, "::ffff:127.0.0.1"}, &rule, &why), GH_FWD_DENY);
    CHECK(strcmp(why, "loopback") == 0);
    gh_config_free(c);

    unit_case("first match wins; to=, from=, port ranges");
    c = load("        rule deny host=secret.ok.test\n"
             "        rule allow host=*.ok.test to=10.0.0.0/8 port=80,8000-8099\n"
             "        rule allow from=192.0.2.0/24 port=1-65535\n");
    CHECK(c != NULL);
    if (c == NULL)
        return;
    f = c->sites[0].forward;
    CHECK_INT(judge(f, &(q){"secret.ok.test", 80, 0, NULL, NULL, "8.8.8.8"}, &rule, &why), GH_FWD_DENY);
    CHECK_INT(rule, 0);
    CHECK(strcmp(why, "name") == 0); /* refused before any DNS query */
    CHECK_INT(judge(f, &(q){"a.ok.test", 8050, 0, NULL, NULL, "10.9.9.9"}, &rule, &why), GH_FWD_ALLOW);
    CHECK_INT(rule, 1);
    /* 10/8 named only for those ports: another port falls to rule 3, which names no range */
    CHECK_INT(judge(f, &(q){"a.ok.test", 9000, 0, NULL, NULL, "10.9.9.9"}, &rule, &why), GH_FWD_DENY);
    CHECK_INT(rule, 2);
    CHECK_INT(judge(f, &(q){"x.test", 9000, 0, NULL, NULL, "8.8.8.8"}, &rule, &why), GH_FWD_ALLOW);
    CHECK_INT(judge(f, &(q){"x.test", 9000, 0, "198.51.100.1", NULL, "8.8.8.8"}, &rule, &why), GH_FWD_DENY);
    CHECK_INT(rule, -1);
    gh_config_free(c);
    rmdir(dir);
}

void suite_forward(void)
{
    classes();
    host_patterns();
    rules();
}
