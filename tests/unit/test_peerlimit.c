/* peerlimit: connections per client address summed over workers, given back once, a dead worker's dropped. */
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proxy/peerlimit.h"
#include "unit.h"

static void addr_of(uint8_t a[16], unsigned n)
{
    memset(a, 0, 16);
    a[10] = a[11] = 0xff; /* ::ffff:10.0.x.y */
    a[12] = 10;
    a[14] = (uint8_t)(n >> 8);
    a[15] = (uint8_t)n;
}

void suite_peerlimit(void)
{
    gh_peer_shm *shm = gh_peer_shm_new(64);
    uint8_t a[16], b[16];
    uint32_t held = 0;

    CHECK(shm != NULL);
    if (shm == NULL)
        return;
    addr_of(a, 1);
    addr_of(b, 2);

    unit_case("the limit is for all workers together");
    CHECK_INT(gh_peer_take(shm, a, 0, 0, 3, &held), 0);
    CHECK_INT(gh_peer_take(shm, a, 0, 1, 3, &held), 0);
    CHECK_INT(gh_peer_take(shm, a, 0, 1, 3, &held), 0);
    CHECK_INT(held, 2);
    CHECK_INT(gh_peer_take(shm, a, 0, 0, 3, &held), GH_PEER_OVER);
    CHECK_INT(gh_peer_take(shm, a, 0, 2, 3, &held), GH_PEER_OVER);
    CHECK_INT(held, 3);
    CHECK_INT(gh_peer_count(shm, a, 0), 3);

    unit_case("other addresses and other scopes count apart");
    CHECK_INT(gh_peer_take(shm, b, 0, 0, 1, &held), 0);
    CHECK_INT(gh_peer_take(shm, a, 7, 0, 1, &held), 0);
    CHECK_INT(gh_peer_take(shm, a, 7, 1, 1, &held), GH_PEER_OVER);
    CHECK_INT(gh_peer_count(shm, b, 0), 1);

    unit_case("a connection given back makes room, in whichever worker");
    gh_peer_put(shm, a, 0, 1);
    CHECK_INT(gh_peer_count(shm, a, 0), 2);
    CHECK_INT(gh_peer_take(shm, a, 0, 0, 3, &held), 0);
    CHECK_INT(gh_peer_count(shm, a, 0), 3);

    unit_case("a dead worker's connections stop counting; the others' stay");
    CHECK_INT((int)gh_peer_forget_worker(shm, 0), 4); /* worker 0 held a twice, b, and a in scope 7 */
    CHECK_INT(gh_peer_count(shm, a, 0), 1);           /* worker 1's */
    CHECK_INT(gh_peer_count(shm, b, 0), 0);
    CHECK_INT(gh_peer_count(shm, a, 7), 0);
    CHECK_INT((int)gh_peer_forget_worker(shm, 0), 0);

    unit_case("another process sees the same counts (shared memory)");
    {
        pid_t pid = fork();
        if (pid == 0) {
            uint32_t h;
            _exit(gh_peer_take(shm, a, 0, 5, 2, &h) == 0 && h == 1 ? 0 : 1);
        }
        int status = -1;
        CHECK(pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
        CHECK_INT(gh_peer_count(shm, a, 0), 2);
        CHECK_INT(gh_peer_take(shm, a, 0, 1, 2, &held), GH_PEER_OVER);
    }
    gh_peer_shm_free(shm);

    unit_case("a full set: the connection is not counted (GH_PEER_FULL), and one freed entry is reused");
    shm = gh_peer_shm_new(1);
    for (unsigned i = 0; i < GH_PEER_WAYS; i++) {
        addr_of(a, 100 + i);
        CHECK_INT(gh_peer_take(shm, a, 0, 0, 5, &held), 0);
    }
    addr_of(b, 999);
    CHECK_INT(gh_peer_take(shm, b, 0, 0, 5, &held), GH_PEER_FULL);
    CHECK_INT(gh_peer_count(shm, b, 0), 0);
    addr_of(a, 100);
    CHECK_INT(gh_peer_take(shm, a, 0, 0, 5, &held), 0);            /* an address already there still counts */
    CHECK_INT(gh_peer_take(shm, a, 0, 1, 5, &held), GH_PEER_FULL); /* in another worker it needs an entry */
    gh_peer_put(shm, a, 0, 0);
    gh_peer_put(shm, a, 0, 0);
    CHECK_INT(gh_peer_take(shm, b, 0, 0, 5, &held), 0);
    CHECK_INT(gh_peer_count(shm, b, 0), 1);
    gh_peer_shm_free(shm);
    CHECK(gh_peer_shm_new(3) == NULL); /* not a power of two */
    unit_case(NULL);
}
