/* Adversarial tests of libSaMsg, from a review: each case once failed. Each runs in a forked
 * child with an alarm (a hang is a failure); prints PASS or FAIL per case, and exits 1 if any
 * failed. Run by crates/baton-ffi/tests/c_api.rs with BATON_DOMAIN set. */
#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "saMsg.h"

static SaNameT name_of(const char *s) {
    SaNameT n; memset(&n, 0, sizeof n);
    n.length = (SaUint16T)strlen(s); memcpy(n.value, s, n.length); return n;
}
static SaMsgMessageT msg(const char *t) {
    SaMsgMessageT m; memset(&m, 0, sizeof m);
    m.size = strlen(t); m.data = (void *)t; return m;
}
static SaMsgQueueCreationAttributesT attrs(void) {
    SaMsgQueueCreationAttributesT a; memset(&a, 0, sizeof a);
    for (int i = 0; i < 4; i++) a.size[i] = 4096;
    a.retentionTime = 0; a.creationFlags = SA_MSG_QUEUE_PERSISTENT; return a;
}
static int received_calls;
static void on_received(SaMsgQueueHandleT q) { (void)q; received_calls++; }
static SaMsgHandleT init(void) {
    SaMsgHandleT h; SaVersionT v = {'B', 3, 1};
    SaMsgCallbacksT cb; memset(&cb, 0, sizeof cb);
    cb.saMsgMessageReceivedCallback = on_received;
    SaAisErrorT rc = saMsgInitialize(&h, &cb, &v);
    if (rc != SA_AIS_OK) { printf("init %d\n", rc); exit(2); }
    return h;
}
static SaMsgQueueHandleT open_q(SaMsgHandleT h, const char *name, SaMsgQueueOpenFlagsT f) {
    SaNameT n = name_of(name); SaMsgQueueCreationAttributesT a = attrs();
    SaMsgQueueHandleT q = 0;
    SaAisErrorT rc = saMsgQueueOpen(h, &n, &a, SA_MSG_QUEUE_CREATE | f, 0, &q);
    if (rc != SA_AIS_OK) { printf("open %s %d\n", name, rc); exit(2); }
    return q;
}
static void send_to(SaMsgHandleT h, const char *name, const char *text) {
    SaNameT n = name_of(name); SaMsgMessageT m = msg(text);
    SaAisErrorT rc = saMsgMessageSend(h, &n, &m, 0);
    if (rc != SA_AIS_OK) { printf("send %s %d\n", name, rc); exit(2); }
}
#define FAIL(...) do { printf("  FAIL: " __VA_ARGS__); printf("\n"); exit(1); } while (0)

/* ---- 1: close with two gets blocked on one queue: the second is never interrupted ---- */
struct getarg { SaMsgQueueHandleT q; volatile int done; SaAisErrorT rc; };
static void *getter(void *p) {
    struct getarg *g = p; char buf[64]; SaMsgMessageT m; memset(&m, 0, sizeof m);
    m.data = buf; m.size = sizeof buf;
    g->rc = saMsgMessageGet(g->q, &m, NULL, NULL, SA_TIME_END);
    g->done = 1; return NULL;
}
static void t_close_two_getters(void) {
    SaMsgHandleT h = init();
    struct getarg a = {open_q(h, "q1", 0), 0, 0}, b = a;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, getter, &a); pthread_create(&tb, NULL, getter, &b);
    usleep(200000);
    SaAisErrorT rc = saMsgQueueClose(a.q);
    usleep(500000);
    printf("  close rc=%d; getter A done=%d rc=%d; getter B done=%d rc=%d\n", rc, a.done, a.rc, b.done, b.rc);
    /* and the queue is still owned by the stuck getter: another handle cannot open it */
    SaMsgHandleT h2 = init(); SaNameT n = name_of("q1"); SaMsgQueueHandleT q2;
    SaAisErrorT orc = saMsgQueueOpen(h2, &n, NULL, 0, 0, &q2);
    printf("  open after close by another handle: rc=%d (1=OK, 10=BUSY)\n", orc);
    if (!(a.done && b.done)) FAIL("a get blocked on a closed queue handle never returns");
    if (orc != SA_AIS_OK) FAIL("queue still owned after close");
}

/* ---- 2: cancel with two gets blocked on one queue: only one is interrupted ---- */
static void t_cancel_two_getters(void) {
    SaMsgHandleT h = init();
    struct getarg a = {open_q(h, "q2", 0), 0, 0}, b = a;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, getter, &a); pthread_create(&tb, NULL, getter, &b);
    usleep(200000);
    SaAisErrorT rc = saMsgMessageCancel(a.q);
    usleep(500000);
    printf("  cancel rc=%d; A done=%d rc=%d; B done=%d rc=%d\n", rc, a.done, a.rc, b.done, b.rc);
    if (!(a.done && b.done)) FAIL("saMsgMessageCancel left a pending get blocked");
}

/* ---- 3: SA_DISPATCH_ONE swallows the other one-shot events of its epoll_wait ---- */
static void t_dispatch_one_loses(void) {
    SaMsgHandleT h = init();
    open_q(h, "qa", SA_MSG_QUEUE_RECEIVE_CALLBACK);
    open_q(h, "qb", SA_MSG_QUEUE_RECEIVE_CALLBACK);
    send_to(h, "qa", "x"); send_to(h, "qb", "y");
    usleep(200000); /* helper threads make the ready fds readable */
    saMsgDispatch(h, SA_DISPATCH_ONE);
    int after_one = received_calls;
    for (int i = 0; i < 5; i++) { saMsgDispatch(h, SA_DISPATCH_ALL); usleep(50000); }
    SaSelectionObjectT so; saMsgSelectionObjectGet(h, &so);
    struct pollfd p = {(int)so, POLLIN, 0};
    int pr = poll(&p, 1, 200);
    printf("  after ONE: %d callbacks; after ONE+ALL: %d (2 messages); selection readable=%d\n",
           after_one, received_calls, pr);
    if (received_calls != 2) FAIL("a message in a callback queue never gets its received callback");
}

/* ---- 4: names: "a,b" and "a.2Cb" are different SA names but one baton queue ---- */
static void t_name_collision(void) {
    SaMsgHandleT h = init();
    SaMsgQueueHandleT q = open_q(h, "a,b", 0); (void)q;
    SaNameT other = name_of("a.2Cb");
    SaMsgQueueStatusT st;
    SaAisErrorT rc = saMsgQueueStatusGet(h, &other, &st);
    printf("  status of never-created \"a.2Cb\": rc=%d (12=NOT_EXIST expected)\n", rc);
    if (rc != SA_AIS_ERR_NOT_EXIST) FAIL("a name never created has a status");
    SaMsgMessageT sm = msg("to the other name");
    rc = saMsgMessageSend(h, &other, &sm, 0);
    printf("  send to never-created \"a.2Cb\": rc=%d (12=NOT_EXIST expected)\n", rc);
    if (rc != SA_AIS_ERR_NOT_EXIST) FAIL("two different SA names are the same queue");
}

/* ---- 5: a blocked get holds the queue's state lock: dispatch (all queues) stalls ---- */
static void t_dispatch_behind_get(void) {
    SaMsgHandleT h = init();
    struct getarg a = {open_q(h, "qc", SA_MSG_QUEUE_RECEIVE_CALLBACK), 0, 0};
    open_q(h, "qd", SA_MSG_QUEUE_RECEIVE_CALLBACK);
    /* a message on qc fires its ready fd; a getter takes it and blocks again */
    send_to(h, "qc", "1");
    usleep(200000);
    pthread_t t;
    a.done = 0; pthread_create(&t, NULL, getter, &a); usleep(100000); /* took "1" */
    pthread_join(t, NULL);
    a.done = 0; pthread_create(&t, NULL, getter, &a); usleep(100000); /* blocked now, lock held */
    send_to(h, "qd", "2");
    usleep(200000);
    alarm(3);
    struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    /* dispatch in a child-of-test thread would be cleaner; SIGALRM kills us if it hangs */
    saMsgDispatch(h, SA_DISPATCH_ALL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("  dispatch ALL returned after %.2fs, qd callbacks=%d\n", took, received_calls);
    if (took > 1.0 || received_calls < 1) FAIL("a dispatch stalled behind a get on another queue");
}

/* ---- 6: unlinked callback queue: does a BLOCKING dispatch spin? ---- */
static void *blocking_dispatch(void *p) { saMsgDispatch(*(SaMsgHandleT *)p, SA_DISPATCH_BLOCKING); return NULL; }
static void t_unlink_spin(void) {
    SaMsgHandleT h = init();
    open_q(h, "qe", SA_MSG_QUEUE_RECEIVE_CALLBACK);
    SaNameT n = name_of("qe");
    pthread_t t; pthread_create(&t, NULL, blocking_dispatch, &h);
    usleep(200000);
    printf("  unlink rc=%d\n", saMsgQueueUnlink(h, &n));
    clock_t c0 = clock(); usleep(1000000); clock_t c1 = clock();
    double cpu = (double)(c1 - c0) / CLOCKS_PER_SEC;
    printf("  process CPU in 1s of BLOCKING dispatch after unlink: %.2fs\n", cpu);
    if (cpu > 0.3) FAIL("BLOCKING dispatch spins");
}

/* ---- 7: fork: the child shares the parent's epoll; its close unregisters the parent's fd ---- */
static void t_fork_close(void) {
    SaMsgHandleT h = init();
    SaMsgQueueHandleT q = open_q(h, "qf", SA_MSG_QUEUE_RECEIVE_CALLBACK);
    pid_t c = fork();
    if (c == 0) { printf("  child close rc=%d\n", saMsgQueueClose(q)); fflush(stdout); _exit(0); }
    waitpid(c, NULL, 0);
    send_to(h, "qf", "m");
    usleep(200000);
    for (int i = 0; i < 3; i++) { saMsgDispatch(h, SA_DISPATCH_ALL); usleep(50000); }
    printf("  parent callbacks after child's close: %d (1 expected)\n", received_calls);
    if (received_calls != 1) FAIL("a forked child's close silenced the parent's received callbacks");
}
static void t_fork_dispatch(void) {
    SaMsgHandleT h = init();
    open_q(h, "qg", SA_MSG_QUEUE_RECEIVE_CALLBACK);
    pid_t c = fork();
    if (c == 0) {
        pthread_t t; pthread_create(&t, NULL, blocking_dispatch, &h);
        sleep(5); _exit(0);
    }
    usleep(200000);
    send_to(h, "qg", "m");
    usleep(300000);
    /* child CPU */
    char path[64]; snprintf(path, sizeof path, "/proc/%d/stat", c);
    FILE *f = fopen(path, "r"); unsigned long ut = 0, st = 0;
    if (f) { if (fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) ut = st = 0; fclose(f); }
    usleep(1000000);
    f = fopen(path, "r"); unsigned long ut2 = 0, st2 = 0;
    if (f) { if (fscanf(f, "%*d %*s %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut2, &st2) != 2) ut2 = st2 = 0; fclose(f); }
    for (int i = 0; i < 3; i++) { saMsgDispatch(h, SA_DISPATCH_ALL); usleep(50000); }
    kill(c, SIGKILL); waitpid(c, NULL, 0);
    printf("  child's CPU ticks in 1s: %lu; parent callbacks: %d (1 expected)\n", (ut2 + st2) - (ut + st), received_calls);
    if (received_calls != 1 || (ut2 + st2) - (ut + st) > 30) FAIL("forked child's dispatch steals/spins");
}

/* ---- 8: finalize while an open waits as standby: the open then succeeds on a finalized handle ---- */
struct openarg { SaMsgHandleT h; SaMsgQueueHandleT q; volatile int done; SaAisErrorT rc; };
static void *opener(void *p) {
    struct openarg *o = p; SaNameT n = name_of("qh");
    o->rc = saMsgQueueOpen(o->h, &n, NULL, 0, 5 * SA_TIME_ONE_SECOND, &o->q);
    o->done = 1; return NULL;
}
static void t_finalize_vs_open(void) {
    SaMsgHandleT h1 = init();
    SaMsgQueueHandleT q1 = open_q(h1, "qh", 0);
    pid_t c = fork();
    if (c == 0) {
        SaMsgHandleT h2 = init();
        struct openarg o = {h2, 0, 0, 0};
        pthread_t t; pthread_create(&t, NULL, opener, &o);
        usleep(300000);
        printf("  child: finalize rc=%d while the open waits (done=%d)\n", saMsgFinalize(h2), o.done);
        pthread_join(t, NULL);
        printf("  child: open on the finalized handle returned %d, queue handle %llx\n", o.rc, (unsigned long long)o.q);
        fflush(stdout);
        _exit(o.rc == SA_AIS_OK ? 1 : 0);
    }
    usleep(600000);
    saMsgQueueClose(q1); /* the standby gets it */
    int st; waitpid(c, &st, 0);
    (void)h1;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 1) FAIL("open completed after finalize: queue taken by a dead handle");
}

static int failures;
/* ---- 9: a blocking dispatch keeps giving another queue's callbacks while a get loops ---- */
static volatile int qd_calls; static SaMsgQueueHandleT race_qc, race_qd;
static void on_race(SaMsgQueueHandleT q) {
    if (q == race_qd) { char b[16]; SaMsgMessageT m; memset(&m, 0, sizeof m); m.data = b; m.size = 16; saMsgMessageGet(q, &m, NULL, NULL, 0); qd_calls++; }
}
static void *getloop(void *p) { (void)p; for (;;) { char b[16]; SaMsgMessageT m; memset(&m, 0, sizeof m); m.data = b; m.size = 16; if (saMsgMessageGet(race_qc, &m, NULL, NULL, SA_TIME_END) != SA_AIS_OK) return NULL; } }
static SaMsgHandleT race_h;
static void *disp(void *p) { (void)p; saMsgDispatch(race_h, SA_DISPATCH_BLOCKING); return NULL; }
static void t_dispatch_beside_looping_get(void) {
    SaVersionT v = {'B', 3, 1}; SaMsgCallbacksT cb; memset(&cb, 0, sizeof cb); cb.saMsgMessageReceivedCallback = on_race;
    if (saMsgInitialize(&race_h, &cb, &v) != SA_AIS_OK) FAIL("init");
    SaMsgQueueCreationAttributesT a; memset(&a, 0, sizeof a); for (int i = 0; i < 4; i++) a.size[i] = 65536;
    SaNameT nc = name_of("rc"), nd = name_of("rd");
    saMsgQueueOpen(race_h, &nc, &a, SA_MSG_QUEUE_CREATE | SA_MSG_QUEUE_RECEIVE_CALLBACK, 0, &race_qc);
    saMsgQueueOpen(race_h, &nd, &a, SA_MSG_QUEUE_CREATE | SA_MSG_QUEUE_RECEIVE_CALLBACK, 0, &race_qd);
    pthread_t g, d; pthread_create(&g, NULL, getloop, NULL); pthread_create(&d, NULL, disp, NULL);
    SaMsgMessageT m; memset(&m, 0, sizeof m); m.data = "x"; m.size = 1;
    int stalls = 0;
    for (int i = 0; i < 40; i++) {
        saMsgMessageSend(race_h, &nc, &m, SA_TIME_ONE_SECOND);
        usleep(2000);
        int before = qd_calls;
        saMsgMessageSend(race_h, &nd, &m, SA_TIME_ONE_SECOND);
        int w = 0; while (qd_calls == before && w < 100) { usleep(1000); w++; }
        if (qd_calls == before) stalls++;
    }
    printf("  qd callbacks %d of 40; rounds where qd's callback took >0.1s: %d\n", qd_calls, stalls);
    if (stalls > 0) FAIL("another queue's callbacks stalled behind a get");
}

static void run(const char *name, void (*f)(void)) {
    printf("%s\n", name); fflush(stdout);
    pid_t c = fork();
    if (c == 0) { alarm(8); f(); printf("  PASS\n"); fflush(stdout); _exit(0); }
    int st; waitpid(c, &st, 0);
    if (WIFSIGNALED(st)) printf("  FAIL (killed by signal %d: hung)\n", WTERMSIG(st));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failures++;
    fflush(stdout);
}
int main(int argc, char **argv) {
    struct { const char *n; void (*f)(void); } ts[] = {
        {"close_two_getters", t_close_two_getters}, {"cancel_two_getters", t_cancel_two_getters},
        {"dispatch_one_loses", t_dispatch_one_loses}, {"name_collision", t_name_collision},
        {"dispatch_behind_get", t_dispatch_behind_get}, {"unlink_spin", t_unlink_spin},
        {"fork_close", t_fork_close}, {"fork_dispatch", t_fork_dispatch},
        {"finalize_vs_open", t_finalize_vs_open},
        {"dispatch_beside_looping_get", t_dispatch_beside_looping_get},
    };
    for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++)
        if (argc < 2 || strcmp(argv[1], ts[i].n) == 0) run(ts[i].n, ts[i].f);
    printf("%s: %d failed\n", failures ? "FAILED" : "ok", failures);
    return failures ? 1 : 0;
}
