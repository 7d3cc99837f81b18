/*
 * pp_send: the PROXY protocol header gatehouse sends first on a new
 * connection to a server of a pool with `proxy_protocol v1|v2`: the client
 * and the address it connected to, and for v2 over TLS what the handshake
 * agreed (ALPN, the SNI as authority, the TLS version). net/proxyproto.c
 * writes the bytes; this file gathers what they say.
 */
#include <string.h>

#include "net/proxyproto.h"
#include "net/sock.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

ssize_t proxy__pp_write(int version, const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
                        const gh_conn *client, uint8_t *out, size_t cap)
{
    gh_pp_info i = {.src = (const struct sockaddr *)src, .dst = (const struct sockaddr *)dst};

    if (version == 1)
        return gh_pp_write_v1((char *)out, cap, &i);
    if (client != NULL && client->ops == &gh_tls_conn_ops) {
        const char *sni = gh_tls_conn_sni(client), *v = gh_tls_conn_version_name(client);
        i.alpn = gh_conn_alpn(client, &i.alpn_len);
        i.authority = sni;
        i.authority_len = sni != NULL ? strlen(sni) : 0;
        i.tls = 1;
        i.tls_version = v;
        i.tls_version_len = v != NULL ? strlen(v) : 0;
    }
    return gh_pp_write_v2(out, cap, &i);
}

ssize_t proxy__pp_session(proxy__session *s, int version, uint8_t *out, size_t cap)
{
    /* Read once per client connection, and only for pools that send a header: accepts pay nothing for it. */
    if (!s->local_known && s->conn != NULL && gh_sock_local(s->conn->io.fd, &s->local) == 0)
        s->local_known = 1;
    return proxy__pp_write(version, &s->peer, s->local_known ? &s->local : NULL, s->conn, out, cap);
}
