/* Session ticket keys: rotation by period with an injected clock, shared across processes. */
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tls/tickets.h"
#include "unit.h"

#define P 3600

static int same(const gh_ticket_key *a, const gh_ticket_key *b)
{
    return a->period == b->period && memcmp(a->name, b->name, 16) == 0 && memcmp(a->aes, b->aes, 32) == 0 &&
           memcmp(a->hmac, b->hmac, 32) == 0;
}

/* ticket_root_secret_never_changes (issue 6 A12): each period a fresh key; the previous decrypts one more period. */
static void ticket_root_secret_never_changes(void)
{
    gh_tickets *t = gh_tickets_new(P);
    gh_ticket_key k1, k1b, k2, k3, got;
    int64_t t0 = 1000 * (int64_t)P + 10;

    CHECK(t != NULL);
    if (t == NULL)
        return;
    unit_case("one key for a whole period");
    CHECK_INT(gh_tickets_encrypt_key(t, t0, &k1), 0);
    CHECK_INT(gh_tickets_encrypt_key(t, t0 + P - 11, &k1b), 0);
    CHECK(same(&k1, &k1b));
    CHECK_INT(k1.period, 1000);
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + 5, k1.name, &got), 1);
    CHECK(same(&got, &k1));

    unit_case("the next period: a new random key encrypts, the previous one still decrypts (renew)");
    CHECK_INT(gh_tickets_encrypt_key(t, t0 + P, &k2), 0);
    CHECK_INT(k2.period, 1001);
    CHECK(memcmp(k2.name, k1.name, 16) != 0 && memcmp(k2.aes, k1.aes, 32) != 0 && memcmp(k2.hmac, k1.hmac, 32) != 0);
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + P, k2.name, &got), 1);
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + P + 1, k1.name, &got), 2);
    CHECK(same(&got, &k1));

    unit_case("two periods on: the first key is gone");
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + 2 * P, k1.name, &got), 0);
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + 2 * P, k2.name, &got), 2);
    CHECK_INT(gh_tickets_encrypt_key(t, t0 + 2 * P, &k3), 0);
    CHECK(!same(&k3, &k2) && !same(&k3, &k1));
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + 2 * P, k1.name, &got), 0); /* and not back after a rotation */

    unit_case("idle for many periods: no old key survives, not even as the previous one");
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + 10 * P, k3.name, &got), 0);
    CHECK_INT(gh_tickets_encrypt_key(t, t0 + 10 * P, &got), 0);
    CHECK(!same(&got, &k3));
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + 10 * P, k3.name, &got), 0);

    unit_case("a name never issued is refused");
    static const unsigned char zero[16];
    CHECK_INT(gh_tickets_decrypt_key(t, t0 + 10 * P, zero, &got), 0);

    unit_case("the clock going back does not bring an old key back");
    CHECK_INT(gh_tickets_decrypt_key(t, t0, k1.name, &got), 0);
    gh_tickets_free(t);
}

/* A key made by one process is the key of every other one (workers forked from the master). */
static void tickets_shared_across_processes(void)
{
    gh_tickets *t = gh_tickets_new(P);
    gh_ticket_key mine, theirs;
    int64_t now = 2000 * (int64_t)P;
    int pipefd[2], status = 0;
    pid_t pid;

    unit_case("a key made in a child is the parent's key, and the parent's old one is its previous");
    CHECK(t != NULL && pipe(pipefd) == 0);
    if (t == NULL)
        return;
    CHECK_INT(gh_tickets_encrypt_key(t, now, &mine), 0);
    pid = fork();
    if (pid == 0) {
        gh_ticket_key k;
        int ok = gh_tickets_encrypt_key(t, now + P, &k) == 0;
        ok = ok && write(pipefd[1], &k, sizeof(k)) == (ssize_t)sizeof(k);
        _exit(ok ? 0 : 1);
    }
    CHECK(pid > 0);
    CHECK(read(pipefd[0], &theirs, sizeof(theirs)) == (ssize_t)sizeof(theirs));
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    {
        gh_ticket_key k;
        CHECK_INT(gh_tickets_encrypt_key(t, now + P, &k), 0);
        CHECK(same(&k, &theirs)); /* no second rotation: the child's key is the period's key */
        CHECK_INT(gh_tickets_decrypt_key(t, now + P, mine.name, &k), 2);
    }
    close(pipefd[0]);
    close(pipefd[1]);
    gh_tickets_free(t);
}

/*
 * A writer killed while it rotates (SIGKILL at a random moment, maybe between claim and release)
 * never stops the others: once it is reaped, the next process takes the claim over and rotates.
 */
static void tickets_writer_killed_mid_rotation(void)
{
    gh_tickets *t = gh_tickets_new(1);
    int failures = 0;

    unit_case("a writer killed at any moment: the survivor still gets a fresh key and decrypts with it");
    CHECK(t != NULL);
    if (t == NULL)
        return;
    for (int round = 0; round < 200; round++) {
        int64_t base = (int64_t)round * 1000000;
        pid_t pid = fork();
        gh_ticket_key k, got;

        if (pid == 0) {
            for (int64_t now = base;; now++) /* one rotation per call: a new period each time */
                gh_tickets_encrypt_key(t, now, &k);
        }
        CHECK(pid > 0);
        usleep((useconds_t)(200 + (round * 37) % 900));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        if (gh_tickets_encrypt_key(t, base + 999999, &k) < 0 || k.period != base + 999999 ||
            gh_tickets_decrypt_key(t, base + 999999, k.name, &got) != 1)
            failures++;
    }
    CHECK_INT(failures, 0);
    gh_tickets_free(t);
}

void suite_tickets(void)
{
    ticket_root_secret_never_changes();
    tickets_shared_across_processes();
    tickets_writer_killed_mid_rotation();
    unit_case(NULL);
}
