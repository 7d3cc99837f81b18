#include "conf/quickstart.h"

#include <string.h>
#include <unistd.h>

#include "core/log.h"

void gh_conf_defaults(gh_conf *c)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(c, 0, sizeof(*c));
    /* One worker per core: each is single-threaded, so this uses every core and no more. */
    c->workers = cores >= 1 ? (int)cores : 1;
    c->access_log = NULL;
    c->log_level = GH_LOG_INFO;
    c->handshake_timeout = 10 * 1000;
    c->header_timeout = 10 * 1000;
    c->keepalive_timeout = 60 * 1000;
    c->body_timeout = 60 * 1000;
    c->send_timeout = 60 * 1000;
    c->connect_timeout = 5 * 1000;
    c->response_timeout = 60 * 1000;
    c->upstream_idle_timeout = 30 * 1000;
    c->shutdown_timeout = 30 * 1000;
    c->config_file = NULL;
    c->test_only = 0;
    c->workers_given = 0;
}
