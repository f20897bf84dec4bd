/* baton's own C API (baton.h): every function, its errors, a standby taking over from an owner
 * killed with SIGKILL (the message it had not acknowledged comes again, flagged), the fd in
 * poll(), and a close interrupting a receive blocked on another thread. Prints "ok N" (N
 * checks) and exits 0, or names each failed check and exits 1. */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "baton.h"

static int checks, failures;
#define CHECK(c)                                                              \
    do {                                                                      \
        checks++;                                                             \
        if (!(c)) {                                                           \
            failures++;                                                       \
            printf("FAILED line %d: %s (last error: %s)\n", __LINE__, #c,     \
                   baton_last_error());                                       \
        }                                                                     \
    } while (0)
#define EXPECT(call, status) CHECK((call) == (status))

static const char *domain;

static void *close_later(void *p) {
    usleep(100 * 1000);
    baton_receiver_close(*(BatonReceiver *)p);
    return NULL;
}

int main(void) {
    domain = getenv("BATON_DOMAIN");
    BatonQueue q = 0, q2;
    BatonReceiver rx = 0;
    char buf[64];
    size_t len = 0;
    BatonMessageInfo info;

    /* Attributes and creation; bad arguments name the problem. */
    BatonAttributes a;
    EXPECT(baton_attributes_default(&a), BATON_OK);
    CHECK(a.max_message == 4096 && a.retention_ns < 0 && a.mode == 0600);
    EXPECT(baton_attributes_default(NULL), BATON_INVALID_ARGUMENT);
    CHECK(strstr(baton_last_error(), "NULL") != NULL);
    a.max_message = 100;
    EXPECT(baton_queue_create(domain, "jobs", &a, &q), BATON_OK);
    EXPECT(baton_queue_create(domain, "jobs", NULL, &q2), BATON_EXISTS);
    CHECK(strstr(baton_last_error(), "max message") != NULL);
    EXPECT(baton_queue_create(domain, "bad/name", NULL, &q2), BATON_INVALID_ARGUMENT);
    EXPECT(baton_queue_create(domain, NULL, NULL, &q2), BATON_INVALID_ARGUMENT);
    EXPECT(baton_queue_create(domain, "x", NULL, NULL), BATON_INVALID_ARGUMENT);
    EXPECT(baton_queue_open(domain, "nowhere", &q2), BATON_NOT_FOUND);
    CHECK(strstr(baton_last_error(), "nowhere") != NULL);
    EXPECT(baton_queue_open(NULL, "jobs", &q2), BATON_OK); /* NULL: $BATON_DOMAIN */
    EXPECT(baton_queue_close(q2), BATON_OK);
    EXPECT(baton_queue_close(q2), BATON_BAD_HANDLE);

    /* Forged and stale handles. */
    EXPECT(baton_send(0, 0, 0, "x", 1, 0), BATON_BAD_HANDLE);
    EXPECT(baton_send(0x12345678deadULL, 0, 0, "x", 1, 0), BATON_BAD_HANDLE);
    EXPECT(baton_recv(q, buf, sizeof buf, &len, NULL, 0), BATON_BAD_HANDLE);
    EXPECT(baton_ack(77), BATON_BAD_HANDLE);
    EXPECT(baton_receiver_close(77), BATON_BAD_HANDLE);

    /* Send: priorities, types, sizes. */
    EXPECT(baton_send(q, 3, 7, "low", 3, 0), BATON_OK);
    EXPECT(baton_send(q, 0, 9, "high", 4, 0), BATON_OK);
    EXPECT(baton_send(q, 4, 0, "x", 1, 0), BATON_INVALID_ARGUMENT);
    char big[101] = {0};
    EXPECT(baton_send(q, 1, 0, big, sizeof big, 0), BATON_TOO_BIG);
    EXPECT(baton_send(q, 1, 0, NULL, 1, 0), BATON_INVALID_ARGUMENT);
    EXPECT(baton_send(q, 2, 0, NULL, 0, 0), BATON_OK); /* an empty message */

    /* Receive: highest priority first; a buffer too small keeps the message. */
    EXPECT(baton_receiver_open(q, 0, &rx), BATON_OK);
    BatonReceiver rx2;
    EXPECT(baton_receiver_open(q, 0, &rx2), BATON_BUSY);
    EXPECT(baton_recv(rx, buf, 2, &len, &info, 0), BATON_NO_SPACE);
    CHECK(len == 4);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, &info, 0), BATON_OK);
    CHECK(len == 4 && memcmp(buf, "high", 4) == 0 && info.priority == 0 && info.msg_type == 9);
    CHECK(info.sender_pid == (uint32_t)getpid() && !info.redelivered && info.sent_ns != 0);
    EXPECT(baton_recv(rx, NULL, 0, &len, NULL, 0), BATON_OK);
    CHECK(len == 0);
    EXPECT(baton_recv(rx, buf, sizeof buf, NULL, NULL, 0), BATON_INVALID_ARGUMENT);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, &info, 0), BATON_OK);
    CHECK(len == 3 && memcmp(buf, "low", 3) == 0 && info.msg_type == 7);
    EXPECT(baton_ack(rx), BATON_OK);
    EXPECT(baton_ack(rx), BATON_OK); /* nothing to acknowledge */
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, NULL, 0), BATON_TIMEOUT);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, NULL, 20 * 1000 * 1000), BATON_TIMEOUT);

    /* The fd, in poll(): quiet, readable with a message, quiet again once drained. */
    int fd = -1;
    EXPECT(baton_receiver_fd(rx, &fd), BATON_OK);
    EXPECT(baton_receiver_fd(rx, NULL), BATON_INVALID_ARGUMENT);
    struct pollfd p = {fd, POLLIN, 0};
    CHECK(poll(&p, 1, 50) == 0);
    EXPECT(baton_send(q, 1, 0, "ping", 4, 0), BATON_OK);
    CHECK(poll(&p, 1, 5000) == 1);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, NULL, 0), BATON_OK);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, NULL, 0), BATON_TIMEOUT);
    CHECK(poll(&p, 1, 50) == 0);

    /* Close interrupts a receive blocked for ever on another thread. */
    pthread_t t;
    pthread_create(&t, NULL, close_later, &rx);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, NULL, BATON_FOREVER), BATON_BAD_HANDLE);
    pthread_join(t, NULL);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, NULL, 0), BATON_BAD_HANDLE);

    /* Takeover: a child owns the queue, receives "one" without acknowledging it, and is
     * killed; the standby waiting here gets "one" again, flagged, then "two". */
    EXPECT(baton_send(q, 2, 0, "one", 3, 0), BATON_OK);
    EXPECT(baton_send(q, 2, 0, "two", 3, 0), BATON_OK);
    int ready[2];
    CHECK(pipe(ready) == 0);
    pid_t child = fork();
    if (child == 0) {
        BatonQueue cq;
        BatonReceiver crx;
        char cb[16];
        size_t cl;
        if (baton_queue_open(domain, "jobs", &cq) != BATON_OK) _exit(2);
        if (baton_receiver_open(cq, 0, &crx) != BATON_OK) _exit(3);
        if (baton_recv(crx, cb, sizeof cb, &cl, NULL, BATON_FOREVER) != BATON_OK) _exit(4);
        if (write(ready[1], "r", 1) != 1) _exit(5);
        pause(); /* killed here, "one" taken and not acknowledged */
        _exit(6);
    }
    char r;
    CHECK(read(ready[0], &r, 1) == 1);
    EXPECT(baton_receiver_open(q, 0, &rx), BATON_BUSY);
    kill(child, SIGKILL);
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status));
    EXPECT(baton_receiver_open(q, 5LL * 1000 * 1000 * 1000, &rx), BATON_OK);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, &info, BATON_FOREVER), BATON_OK);
    CHECK(len == 3 && memcmp(buf, "one", 3) == 0 && info.redelivered);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, &info, BATON_FOREVER), BATON_OK);
    CHECK(len == 3 && memcmp(buf, "two", 3) == 0 && !info.redelivered);

    /* Removal: every handle is told. */
    EXPECT(baton_queue_remove(domain, "jobs"), BATON_OK);
    EXPECT(baton_queue_remove(domain, "jobs"), BATON_NOT_FOUND);
    EXPECT(baton_send(q, 0, 0, "x", 1, 0), BATON_REMOVED);
    EXPECT(baton_recv(rx, buf, sizeof buf, &len, NULL, 0), BATON_REMOVED);
    EXPECT(baton_receiver_close(rx), BATON_OK);
    EXPECT(baton_queue_close(q), BATON_OK);

    if (failures) {
        printf("%d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("ok %d\n", checks);
    return 0;
}
