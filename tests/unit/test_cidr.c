/* cidr: parsing networks and matching addresses (IPv4, IPv6, IPv4-mapped). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "net/cidr.h"
#include "net/sock.h"
#include "unit.h"

static int parse(const char *s, gh_cidr *c)
{
    const char *why;
    return gh_cidr_parse(s, strlen(s), c, &why);
}

static int in(const char *net, const char *ip)
{
    gh_cidr c;
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (parse(net, &c) < 0)
        return -1;
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    else
        return -2;
    return gh_cidr_match(&c, (struct sockaddr *)&ss);
}

/* gh_sock_ntop's own IPv4 formatter (inet_ntop's is slow) against inet_ntop itself. */
static void ntop_cases(void)
{
    static const char *const ips[] = {"0.0.0.0",   "255.255.255.255", "10.0.100.9",
                                      "1.20.3.40", "192.0.2.7",       "100.10.1.0"};
    struct sockaddr_storage ss;
    char got[64], want[64];

    unit_case("sock_ntop: IPv4 as inet_ntop writes it");
    for (size_t i = 0; i < sizeof(ips) / sizeof(ips[0]); i++) {
        memset(&ss, 0, sizeof(ss));
        ss.ss_family = AF_INET;
        inet_pton(AF_INET, ips[i], &((struct sockaddr_in *)&ss)->sin_addr);
        gh_sock_ntop(&ss, got, sizeof(got));
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, want, sizeof(want));
        unit_check(strcmp(got, ips[i]) == 0 && strcmp(got, want) == 0, __FILE__, __LINE__, "%s written as %s", ips[i],
                   got);
    }
    gh_sock_ntop(&ss, got, 8); /* "100.10.1.0" does not fit in 8 */
    CHECK(strlen(got) < 8);
    memset(&ss, 0, sizeof(ss));
    ss.ss_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &((struct sockaddr_in6 *)&ss)->sin6_addr);
    gh_sock_ntop(&ss, got, sizeof(got));
    CHECK_MEM(got, strlen(got), "2001:db8::1");
}

void suite_cidr(void)
{
    ntop_cases();
    gh_cidr c;
    char text[64];

    unit_case("parse: valid forms");
    CHECK_INT(parse("10.0.0.0/8", &c), 0);
    CHECK_INT(c.family, AF_INET);
    CHECK_INT(c.bits, 8);
    CHECK_INT(parse("192.0.2.7", &c), 0);
    CHECK_INT(c.bits, 32);
    CHECK_INT(parse("::1", &c), 0);
    CHECK_INT(c.bits, 128);
    CHECK_INT(parse("2001:db8::/32", &c), 0);
    CHECK_INT(parse("0.0.0.0/0", &c), 0);
    CHECK_INT(parse("::/0", &c), 0);
    gh_cidr_format(&c, text, sizeof(text));
    CHECK(strcmp(text, "::/0") == 0);

    unit_case("parse: refused");
    CHECK_INT(parse("10.1.2.3/8", &c), -1); /* host bits set */
    CHECK_INT(parse("10.0.0.0/33", &c), -1);
    CHECK_INT(parse("10.0.0.0/", &c), -1);
    CHECK_INT(parse("10.0.0.0/08", &c), -1);
    CHECK_INT(parse("10.0.0.0/8x", &c), -1);
    CHECK_INT(parse("::/129", &c), -1);
    CHECK_INT(parse("example.com", &c), -1);
    CHECK_INT(parse("/8", &c), -1);
    CHECK_INT(parse("[::1]", &c), -1);
    CHECK_INT(parse("10.0.0.1:80", &c), -1);

    unit_case("match");
    CHECK_INT(in("10.0.0.0/8", "10.255.1.2"), 1);
    CHECK_INT(in("10.0.0.0/8", "11.0.0.1"), 0);
    CHECK_INT(in("192.168.0.0/23", "192.168.1.200"), 1);
    CHECK_INT(in("192.168.0.0/23", "192.168.2.1"), 0);
    CHECK_INT(in("0.0.0.0/0", "203.0.113.9"), 1);
    CHECK_INT(in("0.0.0.0/0", "2001:db8::1"), 0); /* families do not mix */
    CHECK_INT(in("2001:db8::/32", "2001:db8:ffff::1"), 1);
    CHECK_INT(in("2001:db8::/33", "2001:db8:8000::1"), 0);
    CHECK_INT(in("::1", "::1"), 1);
    CHECK_INT(in("127.0.0.0/8", "::ffff:127.0.0.1"), 1); /* IPv4-mapped */
    CHECK_INT(in("::ffff:0:0/96", "::ffff:127.0.0.1"), 1);
    CHECK_INT(in("127.0.0.0/8", "::1"), 0);
    unit_case(NULL);
}
