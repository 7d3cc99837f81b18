/*
 * fake_resolver: a stand-in for the system resolver, loaded into gatehouse
 * with LD_PRELOAD by the tests of servers given by name (t_health.py), so that
 * a name can resolve to several loopback addresses, and to other ones later,
 * without DNS and without touching /etc/hosts. gatehouse itself is the binary
 * under test, unchanged: only getaddrinfo() answers differently.
 *
 * Names ending in ".test" are answered from the hosts-format file named by
 * $GH_FAKE_HOSTS ("ADDRESS NAME..." per line, '#' comments), read again at
 * every call: a test rewrites it (rename, so never half-written) to make the
 * next re-resolution see other addresses. A ".test" name the file does not
 * hold does not resolve (EAI_NONAME). Every other name goes to the real
 * getaddrinfo.
 *
 * $GH_FAKE_DELAY_MS, when set, makes every ".test" answer wait that long
 * first: a slow DNS server, as getaddrinfo callers feel it (they block).
 *
 * The answer is allocated the way glibc's freeaddrinfo() frees it (each node
 * one malloc with its sockaddr, no canonical name), so the real
 * freeaddrinfo() releases it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static int is_fake(const char *node)
{
    size_t n = node != NULL ? strlen(node) : 0;
    return n > 5 && strcmp(node + n - 5, ".test") == 0;
}

/* Appends one node for the numeric address text; 0, or -1 when it is not an address of a wanted family. */
static int append(struct addrinfo ***tail, const char *text, int family, int socktype, unsigned short port)
{
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    const void *sa;
    socklen_t len;
    struct addrinfo *ai;

    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));
    if (inet_pton(AF_INET, text, &a4.sin_addr) == 1 && family != AF_INET6) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons(port);
        sa = &a4;
        len = sizeof(a4);
    } else if (inet_pton(AF_INET6, text, &a6.sin6_addr) == 1 && family != AF_INET) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(port);
        sa = &a6;
        len = sizeof(a6);
    } else {
        return -1;
    }
    if ((ai = calloc(1, sizeof(*ai) + len)) == NULL)
        return -1;
    ai->ai_family = ((const struct sockaddr *)sa)->sa_family;
    ai->ai_socktype = socktype ? socktype : SOCK_STREAM;
    ai->ai_protocol = 0;
    ai->ai_addrlen = len;
    ai->ai_addr = (struct sockaddr *)(ai + 1);
    memcpy(ai->ai_addr, sa, len);
    **tail = ai;
    *tail = &ai->ai_next;
    return 0;
}

static int fake_lookup(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    const char *path = getenv("GH_FAKE_HOSTS");
    int family = hints != NULL ? hints->ai_family : AF_UNSPEC, socktype = hints != NULL ? hints->ai_socktype : 0;
    unsigned long port = service != NULL ? strtoul(service, NULL, 10) : 0;
    struct addrinfo *head = NULL, **tail = &head;
    char line[512];
    FILE *f;

    if (path == NULL || (f = fopen(path, "r")) == NULL)
        return EAI_NONAME;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *words[16], *p = line;
        size_t n = 0;

        /* Splits the line into words in place; a '#' word ends it. */
        while (n < 16) {
            p += strspn(p, " \t\r\n");
            if (*p == '\0' || *p == '#')
                break;
            words[n++] = p;
            p += strcspn(p, " \t\r\n");
            if (*p != '\0')
                *p++ = '\0';
        }
        for (size_t i = 1; i < n; i++)
            if (strcasecmp(words[i], node) == 0)
                append(&tail, words[0], family, socktype, (unsigned short)port);
    }
    fclose(f);
    if (head == NULL)
        return EAI_NONAME;
    *res = head;
    return 0;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
    static gai_fn real;

    if (is_fake(node)) {
        const char *delay = getenv("GH_FAKE_DELAY_MS");
        if (delay != NULL)
            usleep((useconds_t)strtoul(delay, NULL, 10) * 1000);
        return fake_lookup(node, service, hints, res);
    }
    if (real == NULL)
        real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    return real != NULL ? real(node, service, hints, res) : EAI_FAIL;
}
