/*
 * The C test of libSaMsg: every function it implements, with bad handles, bad pointers, too
 * small buffers, timeouts, cancel, the selection object in poll() with saMsgDispatch, and
 * SendReceive/Reply between two processes. Run by crates/baton-ffi/tests/c_api.rs with
 * BATON_DOMAIN set to a domain of its own. Prints "ok <n> checks" and exits 0, or names the
 * first failed check and exits 1.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "asleep.h"
#include "saMsg.h"

static int checks;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        checks++;                                                                      \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

#define EXPECT(call, code)                                                             \
    do {                                                                               \
        SaAisErrorT rc_ = (call);                                                      \
        checks++;                                                                      \
        if (rc_ != (code)) {                                                           \
            fprintf(stderr, "%s:%d: %s returned %d, not %s (%d)\n", __FILE__, __LINE__, \
                    #call, (int)rc_, #code, (int)(code));                              \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static SaNameT name_of(const char *s) {
    SaNameT n;
    memset(&n, 0, sizeof n);
    n.length = (SaUint16T)strlen(s);
    memcpy(n.value, s, n.length);
    return n;
}

static SaMsgMessageT message_of(const char *text, SaUint8T priority) {
    SaMsgMessageT m;
    memset(&m, 0, sizeof m);
    m.type = 7;
    m.version = 2;
    m.size = strlen(text);
    m.data = (void *)text;
    m.priority = priority;
    return m;
}

static int received_calls;
static SaMsgQueueHandleT received_on;
static int delivered_calls;
static SaAisErrorT delivered_error;
static int opened_calls;
static SaMsgQueueHandleT opened_handle;

static void on_received(SaMsgQueueHandleT q) {
    received_calls++;
    received_on = q;
}
static void on_delivered(SaInvocationT inv, SaAisErrorT err) {
    CHECK(inv == 42);
    delivered_calls++;
    delivered_error = err;
}
static void on_opened(SaInvocationT inv, SaMsgQueueHandleT q, SaAisErrorT err) {
    CHECK(inv == 9);
    CHECK(err == SA_AIS_OK);
    opened_calls++;
    opened_handle = q;
}

static int track_calls;
static SaUint32T track_members, track_items;
static SaAisErrorT track_error;
static char track_group[64];
static char track_name[8][64];
static SaMsgQueueGroupChangesT track_change[8];
static void on_track(const SaNameT *group, const SaMsgQueueGroupNotificationBufferT *buf,
                     SaUint32T members, SaAisErrorT err) {
    track_calls++;
    track_members = members;
    track_error = err;
    snprintf(track_group, sizeof track_group, "%.*s", (int)group->length, group->value);
    track_items = err == SA_AIS_OK ? buf->numberOfItems : 0;
    for (SaUint32T i = 0; i < track_items && i < 8; i++) {
        const SaNameT *n = &buf->notification[i].member.queueName;
        snprintf(track_name[i], sizeof track_name[i], "%.*s", (int)n->length, n->value);
        track_change[i] = buf->notification[i].change;
    }
}

/* The change told for member `name` in the last track callback, or 0. */
static SaMsgQueueGroupChangesT told(const char *name) {
    for (SaUint32T i = 0; i < track_items && i < 8; i++)
        if (strcmp(track_name[i], name) == 0) return track_change[i];
    return 0;
}

/* A child process opens `queue` with `flags`, gets `expect`, and is killed with SIGKILL before
 * another get or a close; whether all that happened. */
static int killed_after_get(const SaNameT *queue, SaMsgQueueOpenFlagsT flags, const char *expect) {
    int got_one[2];
    if (pipe(got_one) != 0) return 0;
    pid_t getter = fork();
    if (getter == 0) {
        SaMsgHandleT gh;
        SaVersionT gv = {'B', 3, 1};
        if (saMsgInitialize(&gh, NULL, &gv) != SA_AIS_OK) _exit(2);
        SaMsgQueueHandleT gq;
        if (saMsgQueueOpen(gh, queue, NULL, flags, 5 * SA_TIME_ONE_SECOND, &gq) != SA_AIS_OK)
            _exit(3);
        char gb[16] = {0};
        SaMsgMessageT gm;
        memset(&gm, 0, sizeof gm);
        gm.data = gb;
        gm.size = sizeof gb - 1;
        if (saMsgMessageGet(gq, &gm, NULL, NULL, 5 * SA_TIME_ONE_SECOND) != SA_AIS_OK) _exit(4);
        if (strcmp(gb, expect) != 0) _exit(5);
        if (write(got_one[1], "g", 1) != 1) _exit(6);
        pause(); /* killed here, the message got */
        _exit(7);
    }
    char g;
    int ok = read(got_one[0], &g, 1) == 1;
    kill(getter, SIGKILL);
    int gs;
    ok = ok && waitpid(getter, &gs, 0) == getter && WIFSIGNALED(gs);
    close(got_one[0]);
    close(got_one[1]);
    return ok;
}

struct cancel_arg {
    SaMsgQueueHandleT q;
};
static SaAisErrorT blocking_rc = 0;
static volatile pid_t dispatcher;
static void *dispatch_blocking(void *p) {
    dispatcher = this_thread();
    blocking_rc = saMsgDispatch(*(SaMsgHandleT *)p, SA_DISPATCH_BLOCKING);
    return NULL;
}

/* Cancels once the main thread (the getter) sleeps in its get. */
static void *cancel_later(void *p) {
    struct cancel_arg *a = p;
    volatile pid_t getter = getpid();
    if (wait_asleep(&getter)) saMsgMessageCancel(a->q);
    return NULL;
}

int main(void) {
    alarm(120); /* a hang is a failure, not a stuck suite */
    SaMsgHandleT h;
    SaVersionT v = {'B', 3, 1};
    SaMsgCallbacksT cbs = {on_opened, NULL, on_delivered, on_received};

    /* Initialize: bad versions and pointers. */
    SaVersionT old = {'A', 1, 1};
    EXPECT(saMsgInitialize(&h, &cbs, &old), SA_AIS_ERR_VERSION);
    CHECK(old.releaseCode == 'B' && old.majorVersion == 3);
    EXPECT(saMsgInitialize(NULL, &cbs, &v), SA_AIS_ERR_INVALID_PARAM);
    EXPECT(saMsgInitialize(&h, &cbs, &v), SA_AIS_OK);

    /* Bad handles: zero, forged, and (below) finalized ones. */
    SaSelectionObjectT sel;
    EXPECT(saMsgSelectionObjectGet(0, &sel), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgSelectionObjectGet(h ^ 0x500000000ULL, &sel), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgDispatch(12345, SA_DISPATCH_ALL), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgQueueClose(777), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgMessageCancel(0), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgSelectionObjectGet(h, &sel), SA_AIS_OK);

    /* Open: create, not there, exists with other attributes, busy. */
    SaNameT qn = name_of("safMq=orders,safApp=test");
    /* Persistent: a queue with retention 0 would go at its close (as the specification has it). */
    SaMsgQueueCreationAttributesT attrs = {SA_MSG_QUEUE_PERSISTENT, {4096, 4096, 4096, 4096}, 0};
    SaMsgQueueHandleT q;
    EXPECT(saMsgQueueOpen(h, &qn, NULL, 0, 0, &q), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saMsgQueueOpen(h, &qn, &attrs, 0x80, 0, &q), SA_AIS_ERR_BAD_FLAGS);
    EXPECT(saMsgQueueOpen(h, &qn, &attrs, SA_MSG_QUEUE_CREATE, 0, NULL), SA_AIS_ERR_INVALID_PARAM);
    EXPECT(saMsgQueueOpen(h, NULL, &attrs, SA_MSG_QUEUE_CREATE, 0, &q), SA_AIS_ERR_INVALID_PARAM);
    EXPECT(saMsgQueueOpen(h, &qn, &attrs, SA_MSG_QUEUE_CREATE, 0, &q), SA_AIS_OK);
    SaMsgQueueHandleT q2;
    EXPECT(saMsgQueueOpen(h, &qn, NULL, 0, 0, &q2), SA_AIS_ERR_BUSY);
    SaMsgQueueCreationAttributesT other = {0, {8192, 8192, 8192, 8192}, 0};
    SaNameT qn_other = name_of("safMq=orders,safApp=test");
    EXPECT(saMsgQueueOpen(h, &qn_other, &other, SA_MSG_QUEUE_CREATE, 0, &q2), SA_AIS_ERR_EXIST);

    /* Send and get: the caller's buffer, one too small (the message stays), the library's. */
    SaMsgMessageT m = message_of("hello", 1);
    EXPECT(saMsgMessageSend(h, &qn, &m, SA_TIME_MAX), SA_AIS_OK);
    m.priority = 9;
    EXPECT(saMsgMessageSend(h, &qn, &m, SA_TIME_MAX), SA_AIS_ERR_INVALID_PARAM);
    EXPECT(saMsgMessageSend(h, &qn, NULL, SA_TIME_MAX), SA_AIS_ERR_INVALID_PARAM);
    SaNameT nowhere = name_of("nowhere");
    m.priority = 1;
    EXPECT(saMsgMessageSend(h, &nowhere, &m, SA_TIME_MAX), SA_AIS_ERR_NOT_EXIST);

    char small[2];
    SaMsgMessageT got;
    memset(&got, 0, sizeof got);
    got.data = small;
    got.size = sizeof small;
    SaTimeT sent_at = 0;
    SaMsgSenderIdT sender = 99;
    EXPECT(saMsgMessageGet(q, &got, &sent_at, &sender, 0), SA_AIS_ERR_NO_SPACE);
    CHECK(got.size == 5);
    char buf[64];
    got.data = buf;
    got.size = sizeof buf;
    EXPECT(saMsgMessageGet(q, &got, &sent_at, &sender, 0), SA_AIS_OK);
    CHECK(got.size == 5 && memcmp(buf, "hello", 5) == 0);
    CHECK(got.type == 7 && got.version == 2 && got.priority == 1);
    CHECK(sender == 0);
    CHECK(sent_at > 1600000000LL * SA_TIME_ONE_SECOND); /* an absolute time */
    EXPECT(saMsgMessageGet(q, &got, NULL, NULL, 0), SA_AIS_ERR_TIMEOUT);
    EXPECT(saMsgMessageGet(q, &got, NULL, NULL, 20 * SA_TIME_ONE_MILLISECOND), SA_AIS_ERR_TIMEOUT);

    m = message_of("allocated", 3);
    EXPECT(saMsgMessageSend(h, &qn, &m, 0), SA_AIS_OK);
    memset(&got, 0, sizeof got);
    EXPECT(saMsgMessageGet(q, &got, NULL, NULL, SA_TIME_MAX), SA_AIS_OK);
    CHECK(got.data != NULL && got.size == 9 && memcmp(got.data, "allocated", 9) == 0);
    EXPECT(saMsgMessageDataFree(h, got.data), SA_AIS_OK);
    EXPECT(saMsgMessageDataFree(h, NULL), SA_AIS_ERR_INVALID_PARAM);

    /* A full queue: QUEUE_FULL at once, and after a timeout. */
    static char big[1000];
    memset(big, 'x', sizeof big);
    SaMsgMessageT bm = message_of("", 0);
    bm.data = big;
    bm.size = sizeof big;
    int sent = 0;
    while (saMsgMessageSend(h, &qn, &bm, 0) == SA_AIS_OK) sent++;
    CHECK(sent >= 2);
    EXPECT(saMsgMessageSend(h, &qn, &bm, 0), SA_AIS_ERR_QUEUE_FULL);
    EXPECT(saMsgMessageSend(h, &qn, &bm, 10 * SA_TIME_ONE_MILLISECOND), SA_AIS_ERR_QUEUE_FULL);
    for (int i = 0; i < sent; i++) {
        got.data = NULL;
        EXPECT(saMsgMessageGet(q, &got, NULL, NULL, 0), SA_AIS_OK);
        saMsgMessageDataFree(h, got.data);
    }

    /* Cancel: a get blocked without a time limit returns INTERRUPT. */
    pthread_t t;
    struct cancel_arg ca = {q};
    pthread_create(&t, NULL, cancel_later, &ca);
    got.data = buf;
    got.size = sizeof buf;
    EXPECT(saMsgMessageGet(q, &got, NULL, NULL, SA_TIME_MAX), SA_AIS_ERR_INTERRUPT);
    pthread_join(t, NULL);

    /* Status. */
    SaMsgQueueStatusT st;
    m = message_of("counted", 2);
    EXPECT(saMsgMessageSend(h, &qn, &m, 0), SA_AIS_OK);
    EXPECT(saMsgQueueStatusGet(h, &qn, &st), SA_AIS_OK);
    CHECK(st.saMsgQueueUsage[2].numberOfMessages == 1);
    CHECK(st.saMsgQueueUsage[2].queueSize == 4096);
    CHECK(st.creationFlags == SA_MSG_QUEUE_PERSISTENT);
    EXPECT(saMsgQueueStatusGet(h, &nowhere, &st), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saMsgMessageGet(q, &got, NULL, NULL, 0), SA_AIS_OK);

    /* Thresholds. */
    SaMsgQueueThresholdsT th = {{2048, 2048, 2048, 2048}, {1024, 1024, 1024, 1024}};
    EXPECT(saMsgQueueCapacityThresholdsSet(q, &th), SA_AIS_OK);
    SaMsgQueueThresholdsT th2;
    memset(&th2, 0, sizeof th2);
    EXPECT(saMsgQueueCapacityThresholdsGet(q, &th2), SA_AIS_OK);
    CHECK(th2.capacityReached[1] == 2048 && th2.capacityAvailable[3] == 1024);
    SaMsgQueueThresholdsT bad = {{1024, 1024, 1024, 1024}, {2048, 2048, 2048, 2048}};
    EXPECT(saMsgQueueCapacityThresholdsSet(q, &bad), SA_AIS_ERR_INVALID_PARAM);
    /* Only priority 3 bad: none is changed. */
    SaMsgQueueThresholdsT last_bad = {{3072, 3072, 3072, 1024}, {512, 512, 512, 2048}};
    EXPECT(saMsgQueueCapacityThresholdsSet(q, &last_bad), SA_AIS_ERR_INVALID_PARAM);
    memset(&th2, 0, sizeof th2);
    EXPECT(saMsgQueueCapacityThresholdsGet(q, &th2), SA_AIS_OK);
    CHECK(th2.capacityReached[0] == 2048 && th2.capacityAvailable[0] == 1024);
    /* A persistent queue has no retention to set. */
    SaTimeT retention = SA_TIME_ONE_SECOND;
    EXPECT(saMsgQueueRetentionTimeSet(q, &retention), SA_AIS_ERR_BAD_OPERATION);
    EXPECT(saMsgQueueRetentionTimeSet(q, NULL), SA_AIS_ERR_INVALID_PARAM);
    EXPECT(saMsgQueueRetentionTimeSet(0, &retention), SA_AIS_ERR_BAD_HANDLE);

    /* A non-persistent queue with retention 0 goes when it is closed. */
    SaNameT tn = name_of("transient");
    SaMsgQueueCreationAttributesT transient = {0, {4096, 4096, 4096, 4096}, 0};
    SaMsgQueueHandleT tq;
    EXPECT(saMsgQueueOpen(h, &tn, &transient, SA_MSG_QUEUE_CREATE, 0, &tq), SA_AIS_OK);
    EXPECT(saMsgQueueClose(tq), SA_AIS_OK);
    EXPECT(saMsgQueueOpen(h, &tn, NULL, 0, 0, &tq), SA_AIS_ERR_NOT_EXIST);

    /* Its retention set: made with an hour, set to 0, it goes at close; status tells it. */
    SaMsgQueueCreationAttributesT hour = {0, {4096, 4096, 4096, 4096}, 3600 * SA_TIME_ONE_SECOND};
    EXPECT(saMsgQueueOpen(h, &tn, &hour, SA_MSG_QUEUE_CREATE, 0, &tq), SA_AIS_OK);
    retention = -1;
    EXPECT(saMsgQueueRetentionTimeSet(tq, &retention), SA_AIS_ERR_INVALID_PARAM);
    retention = 5 * SA_TIME_ONE_SECOND;
    EXPECT(saMsgQueueRetentionTimeSet(tq, &retention), SA_AIS_OK);
    EXPECT(saMsgQueueStatusGet(h, &tn, &st), SA_AIS_OK);
    CHECK(st.retentionTime == 5 * SA_TIME_ONE_SECOND && st.creationFlags == 0);
    retention = 0;
    EXPECT(saMsgQueueRetentionTimeSet(tq, &retention), SA_AIS_OK);
    EXPECT(saMsgQueueClose(tq), SA_AIS_OK);
    EXPECT(saMsgQueueOpen(h, &tn, NULL, 0, 0, &tq), SA_AIS_ERR_NOT_EXIST);

    /* Close, then the handle is dead; the queue is there, and another open takes it. */
    EXPECT(saMsgQueueClose(q), SA_AIS_OK);
    EXPECT(saMsgQueueClose(q), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgMessageGet(q, &got, NULL, NULL, 0), SA_AIS_ERR_BAD_HANDLE);

    /* The received callback, through the selection object in poll() and saMsgDispatch. */
    EXPECT(saMsgQueueOpen(h, &qn, NULL, SA_MSG_QUEUE_RECEIVE_CALLBACK, 0, &q), SA_AIS_OK);
    struct pollfd pfd = {(int)sel, POLLIN, 0};
    CHECK(poll(&pfd, 1, 50) == 0);
    m = message_of("callback", 0);
    EXPECT(saMsgMessageSend(h, &qn, &m, 0), SA_AIS_OK);
    CHECK(poll(&pfd, 1, 5000) == 1);
    EXPECT(saMsgDispatch(h, SA_DISPATCH_ONE), SA_AIS_OK);
    CHECK(received_calls == 1 && received_on == q);
    got.data = buf;
    got.size = sizeof buf;
    EXPECT(saMsgMessageGet(q, &got, NULL, NULL, 0), SA_AIS_OK);
    CHECK(got.size == 8 && memcmp(buf, "callback", 8) == 0);
    EXPECT(saMsgDispatch(h, SA_DISPATCH_ALL), SA_AIS_OK);
    CHECK(received_calls == 1);
    EXPECT(saMsgDispatch(h, 99), SA_AIS_ERR_INVALID_PARAM);

    /* SendAsync with the delivered callback; OpenAsync's callback. */
    m = message_of("async", 3);
    EXPECT(saMsgMessageSendAsync(h, 42, &qn, &m, SA_MSG_MESSAGE_DELIVERED_ACK), SA_AIS_OK);
    EXPECT(saMsgMessageSendAsync(h, 42, &qn, &m, 0x10), SA_AIS_ERR_BAD_FLAGS);
    /* The two callbacks come as their events do (the message's through the queue's helper
       thread): dispatch until both came, or 5 s. */
    for (int i = 0; i < 50 && (delivered_calls < 1 || received_calls < 2); i++) {
        poll(&pfd, 1, 100);
        EXPECT(saMsgDispatch(h, SA_DISPATCH_ALL), SA_AIS_OK);
    }
    CHECK(delivered_calls == 1 && delivered_error == SA_AIS_OK);
    CHECK(received_calls == 2);
    EXPECT(saMsgMessageGet(q, &got, NULL, NULL, 0), SA_AIS_OK);
    CHECK(got.size == 5 && memcmp(buf, "async", 5) == 0);

    SaNameT an = name_of("async-opened");
    EXPECT(saMsgQueueOpenAsync(h, 9, &an, &attrs, SA_MSG_QUEUE_CREATE), SA_AIS_OK);
    EXPECT(saMsgDispatch(h, SA_DISPATCH_ALL), SA_AIS_OK);
    CHECK(opened_calls == 1 && opened_handle != 0);
    EXPECT(saMsgQueueClose(opened_handle), SA_AIS_OK);
    EXPECT(saMsgQueueUnlink(h, &an), SA_AIS_OK);
    EXPECT(saMsgQueueUnlink(h, &an), SA_AIS_ERR_NOT_EXIST);

    /* Groups. */
    SaNameT gn = name_of("safMqg=workers");
    SaNameT w1 = name_of("worker1"), w2 = name_of("worker2");
    SaMsgQueueHandleT h1, h2;
    EXPECT(saMsgQueueOpen(h, &w1, &attrs, SA_MSG_QUEUE_CREATE, 0, &h1), SA_AIS_OK);
    EXPECT(saMsgQueueOpen(h, &w2, &attrs, SA_MSG_QUEUE_CREATE, 0, &h2), SA_AIS_OK);
    EXPECT(saMsgQueueGroupCreate(h, &gn, SA_MSG_QUEUE_GROUP_ROUND_ROBIN), SA_AIS_OK);
    EXPECT(saMsgQueueGroupCreate(h, &gn, SA_MSG_QUEUE_GROUP_BROADCAST), SA_AIS_ERR_EXIST);
    EXPECT(saMsgQueueGroupCreate(h, &an, 17), SA_AIS_ERR_INVALID_PARAM);
    m = message_of("nobody", 0);
    EXPECT(saMsgMessageSend(h, &gn, &m, 0), SA_AIS_ERR_QUEUE_NOT_AVAILABLE);
    EXPECT(saMsgQueueGroupInsert(h, &gn, &w1), SA_AIS_OK);
    EXPECT(saMsgQueueGroupInsert(h, &gn, &w2), SA_AIS_OK);
    EXPECT(saMsgQueueGroupInsert(h, &gn, &w2), SA_AIS_ERR_EXIST);
    EXPECT(saMsgQueueGroupInsert(h, &gn, &nowhere), SA_AIS_ERR_NOT_EXIST);
    SaMsgQueueGroupNotificationBufferT nb = {0, NULL, 0};
    EXPECT(saMsgQueueGroupTrack(h, &gn, SA_TRACK_CURRENT, &nb), SA_AIS_OK);
    CHECK(nb.numberOfItems == 2 && nb.queueGroupPolicy == SA_MSG_QUEUE_GROUP_ROUND_ROBIN);
    CHECK(nb.notification[0].member.queueName.length == 7);
    CHECK(memcmp(nb.notification[1].member.queueName.value, "worker2", 7) == 0);
    CHECK(nb.notification[0].change == SA_MSG_QUEUE_GROUP_NO_CHANGE);
    EXPECT(saMsgQueueGroupNotificationFree(h, nb.notification), SA_AIS_OK);
    SaMsgQueueGroupNotificationT one[1];
    SaMsgQueueGroupNotificationBufferT small_nb = {1, one, 0};
    EXPECT(saMsgQueueGroupTrack(h, &gn, SA_TRACK_CURRENT, &small_nb), SA_AIS_ERR_NO_SPACE);
    CHECK(small_nb.numberOfItems == 2);
    /* Tracking changes needs a track callback; flags are checked. */
    EXPECT(saMsgQueueGroupTrack(h, &gn, SA_TRACK_CHANGES, NULL), SA_AIS_ERR_INIT);
    EXPECT(saMsgQueueGroupTrack(h, &gn, SA_TRACK_CURRENT, NULL), SA_AIS_ERR_INIT);
    EXPECT(saMsgQueueGroupTrackStop(h, &gn), SA_AIS_ERR_NOT_EXIST);
    SaMsgHandleT trh;
    SaMsgCallbacksT tcbs = {NULL, on_track, NULL, NULL};
    EXPECT(saMsgInitialize(&trh, &tcbs, &v), SA_AIS_OK);
    EXPECT(saMsgQueueGroupTrack(trh, &gn, SA_TRACK_CHANGES | SA_TRACK_CHANGES_ONLY, NULL),
           SA_AIS_ERR_BAD_FLAGS);
    EXPECT(saMsgQueueGroupTrack(trh, &gn, 8, NULL), SA_AIS_ERR_BAD_FLAGS);
    EXPECT(saMsgQueueGroupTrack(trh, &nowhere, SA_TRACK_CHANGES, NULL), SA_AIS_ERR_NOT_EXIST);
    SaSelectionObjectT tsel;
    EXPECT(saMsgSelectionObjectGet(trh, &tsel), SA_AIS_OK);
    struct pollfd tpfd = {(int)tsel, POLLIN, 0};

    /* The current members through the callback (no buffer), then each change. */
    EXPECT(saMsgQueueGroupTrack(trh, &gn, SA_TRACK_CURRENT | SA_TRACK_CHANGES, NULL), SA_AIS_OK);
    CHECK(poll(&tpfd, 1, 5000) == 1);
    EXPECT(saMsgDispatch(trh, SA_DISPATCH_ALL), SA_AIS_OK);
    CHECK(track_calls == 1 && track_error == SA_AIS_OK && track_members == 2);
    CHECK(strcmp(track_group, "safMqg=workers") == 0);
    CHECK(told("worker1") == SA_MSG_QUEUE_GROUP_NO_CHANGE && told("worker2") != 0);
    CHECK(poll(&tpfd, 1, 50) == 0);
    EXPECT(saMsgQueueGroupRemove(h, &gn, &w2), SA_AIS_OK);
    CHECK(poll(&tpfd, 1, 5000) == 1);
    EXPECT(saMsgDispatch(trh, SA_DISPATCH_ALL), SA_AIS_OK);
    CHECK(track_calls == 2 && track_members == 1 && track_items == 2);
    CHECK(told("worker1") == SA_MSG_QUEUE_GROUP_NO_CHANGE);
    CHECK(told("worker2") == SA_MSG_QUEUE_GROUP_REMOVED);
    CHECK(poll(&tpfd, 1, 50) == 0);

    /* CHANGES_ONLY (new flags for a group tracked already), a change made by another process. */
    EXPECT(saMsgQueueGroupTrack(trh, &gn, SA_TRACK_CHANGES_ONLY, NULL), SA_AIS_OK);
    pid_t inserter = fork();
    if (inserter == 0) {
        SaMsgHandleT ih;
        SaVersionT iv = {'B', 3, 1};
        if (saMsgInitialize(&ih, NULL, &iv) != SA_AIS_OK) _exit(2);
        _exit(saMsgQueueGroupInsert(ih, &gn, &w2) == SA_AIS_OK ? 0 : 3);
    }
    int inserted;
    CHECK(waitpid(inserter, &inserted, 0) == inserter && WIFEXITED(inserted) &&
          WEXITSTATUS(inserted) == 0);
    CHECK(poll(&tpfd, 1, 5000) == 1);
    EXPECT(saMsgDispatch(trh, SA_DISPATCH_ONE), SA_AIS_OK);
    CHECK(track_calls == 3 && track_members == 2 && track_items == 1);
    CHECK(told("worker2") == SA_MSG_QUEUE_GROUP_ADDED);

    /* Stopped: no more callbacks; then tracked again, the group's removal is told as every
     * member removed, and tracking ends with it. */
    EXPECT(saMsgQueueGroupTrackStop(trh, &gn), SA_AIS_OK);
    EXPECT(saMsgQueueGroupTrackStop(trh, &gn), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saMsgQueueGroupRemove(h, &gn, &w2), SA_AIS_OK);
    CHECK(poll(&tpfd, 1, 100) == 0);
    EXPECT(saMsgDispatch(trh, SA_DISPATCH_ALL), SA_AIS_OK);
    CHECK(track_calls == 3);
    EXPECT(saMsgQueueGroupInsert(h, &gn, &w2), SA_AIS_OK);
    EXPECT(saMsgQueueGroupTrack(trh, &gn, SA_TRACK_CHANGES, NULL), SA_AIS_OK);
    m = message_of("turn", 0);
    EXPECT(saMsgMessageSend(h, &gn, &m, 0), SA_AIS_OK);
    EXPECT(saMsgMessageSend(h, &gn, &m, 0), SA_AIS_OK);
    EXPECT(saMsgMessageGet(h1, &got, NULL, NULL, 0), SA_AIS_OK);
    EXPECT(saMsgMessageGet(h2, &got, NULL, NULL, 0), SA_AIS_OK);
    EXPECT(saMsgQueueGroupRemove(h, &gn, &w2), SA_AIS_OK);
    EXPECT(saMsgQueueGroupRemove(h, &gn, &w2), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saMsgQueueGroupDelete(h, &gn), SA_AIS_OK);
    EXPECT(saMsgQueueGroupDelete(h, &gn), SA_AIS_ERR_NOT_EXIST);
    CHECK(poll(&tpfd, 1, 5000) == 1);
    EXPECT(saMsgDispatch(trh, SA_DISPATCH_ALL), SA_AIS_OK);
    /* One callback: the members last told (worker2's removal was not), all removed. */
    CHECK(track_calls == 4 && track_members == 0 && track_error == SA_AIS_OK);
    CHECK(told("worker1") == SA_MSG_QUEUE_GROUP_REMOVED && track_items == 2);
    CHECK(told("worker2") == SA_MSG_QUEUE_GROUP_REMOVED);
    EXPECT(saMsgQueueGroupTrackStop(trh, &gn), SA_AIS_ERR_NOT_EXIST);
    CHECK(poll(&tpfd, 1, 50) == 0);
    EXPECT(saMsgFinalize(trh), SA_AIS_OK);

    /* A got message is gone, as the specification has it: a getter killed before its next get
     * takes it along. With baton's BATON_MSG_QUEUE_AT_LEAST_ONCE it stays in hand until the
     * thread's next get or the close, and a getter killed first leaves it to the next opener. */
    SaNameT aln = name_of("atleast");
    SaMsgQueueHandleT alq;
    EXPECT(saMsgQueueOpen(h, &aln, &attrs, SA_MSG_QUEUE_CREATE, 0, &alq), SA_AIS_OK);
    EXPECT(saMsgQueueClose(alq), SA_AIS_OK);
    m = message_of("gone", 1);
    EXPECT(saMsgMessageSend(h, &aln, &m, 0), SA_AIS_OK);
    CHECK(killed_after_get(&aln, 0, "gone"));
    EXPECT(saMsgQueueOpen(h, &aln, NULL, 0, 5 * SA_TIME_ONE_SECOND, &alq), SA_AIS_OK);
    got.data = buf;
    got.size = sizeof buf;
    EXPECT(saMsgMessageGet(alq, &got, NULL, NULL, 0), SA_AIS_ERR_TIMEOUT);
    EXPECT(saMsgQueueClose(alq), SA_AIS_OK);
    m = message_of("kept", 1);
    EXPECT(saMsgMessageSend(h, &aln, &m, 0), SA_AIS_OK);
    CHECK(killed_after_get(&aln, BATON_MSG_QUEUE_AT_LEAST_ONCE, "kept"));
    EXPECT(saMsgQueueOpen(h, &aln, NULL, BATON_MSG_QUEUE_AT_LEAST_ONCE, 5 * SA_TIME_ONE_SECOND,
                          &alq), SA_AIS_OK);
    memset(buf, 0, sizeof buf);
    got.size = sizeof buf;
    EXPECT(saMsgMessageGet(alq, &got, NULL, NULL, 0), SA_AIS_OK);
    CHECK(memcmp(buf, "kept", 4) == 0); /* again: its getter died before it was done */
    got.size = sizeof buf;
    EXPECT(saMsgMessageGet(alq, &got, NULL, NULL, 0), SA_AIS_ERR_TIMEOUT); /* "kept" done */
    EXPECT(saMsgQueueClose(alq), SA_AIS_OK);
    EXPECT(saMsgQueueOpen(h, &aln, NULL, 0, 5 * SA_TIME_ONE_SECOND, &alq), SA_AIS_OK);
    EXPECT(saMsgMessageGet(alq, &got, NULL, NULL, 0), SA_AIS_ERR_TIMEOUT);
    EXPECT(saMsgQueueClose(alq), SA_AIS_OK);
    EXPECT(saMsgQueueUnlink(h, &aln), SA_AIS_OK);

    /* SendReceive and Reply between two processes. */
    SaNameT svc = name_of("service");
    SaMsgQueueHandleT sq;
    EXPECT(saMsgQueueOpen(h, &svc, &attrs, SA_MSG_QUEUE_CREATE, 0, &sq), SA_AIS_OK);
    EXPECT(saMsgQueueClose(sq), SA_AIS_OK);
    pid_t child = fork();
    if (child == 0) {
        SaMsgHandleT ch;
        SaVersionT cv = {'B', 3, 1};
        if (saMsgInitialize(&ch, NULL, &cv) != SA_AIS_OK) _exit(2);
        SaMsgQueueHandleT cq;
        if (saMsgQueueOpen(ch, &svc, NULL, 0, 5 * SA_TIME_ONE_SECOND, &cq) != SA_AIS_OK) _exit(3);
        char rb[64];
        SaMsgMessageT req;
        memset(&req, 0, sizeof req);
        req.data = rb;
        req.size = sizeof rb;
        SaMsgSenderIdT id = 0;
        if (saMsgMessageGet(cq, &req, NULL, &id, 5 * SA_TIME_ONE_SECOND) != SA_AIS_OK) _exit(4);
        if (id == 0) _exit(5);
        SaMsgMessageT rep = message_of("pong", 0);
        if (saMsgMessageReply(ch, &rep, &id, SA_TIME_MAX) != SA_AIS_OK) _exit(6);
        if (saMsgMessageReply(ch, &rep, &id, SA_TIME_MAX) != SA_AIS_ERR_NOT_EXIST) _exit(7);
        saMsgFinalize(ch);
        _exit(0);
    }
    SaMsgMessageT ask = message_of("ping", 0), answer;
    memset(&answer, 0, sizeof answer);
    SaTimeT reply_at = 0;
    EXPECT(saMsgMessageSendReceive(h, &svc, &ask, &answer, &reply_at, 10 * SA_TIME_ONE_SECOND),
           SA_AIS_OK);
    CHECK(answer.size == 4 && memcmp(answer.data, "pong", 4) == 0 && reply_at > 0);
    saMsgMessageDataFree(h, answer.data);
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    SaMsgSenderIdT forged = 12345;
    EXPECT(saMsgMessageReply(h, &ask, &forged, 0), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saMsgMessageReplyAsync(h, 42, &ask, &forged, 0), SA_AIS_ERR_NOT_EXIST);
    EXPECT(saMsgMessageReplyAsync(h, 42, &ask, &forged, 0x8), SA_AIS_ERR_BAD_FLAGS);
    delivered_calls = 0;
    EXPECT(saMsgMessageReplyAsync(h, 42, &ask, &forged, SA_MSG_MESSAGE_DELIVERED_ACK), SA_AIS_OK);
    EXPECT(saMsgDispatch(h, SA_DISPATCH_ALL), SA_AIS_OK);
    CHECK(delivered_calls == 1 && delivered_error == SA_AIS_ERR_NOT_EXIST);

    /* Limits and metadata. */
    SaUint32T meta = 0;
    EXPECT(saMsgMetadataSizeGet(h, &meta), SA_AIS_OK);
    CHECK(meta == 32);
    SaLimitValueT lim;
    EXPECT(saMsgLimitGet(h, SA_MSG_MAX_MESSAGE_SIZE_ID, &lim), SA_AIS_OK);
    CHECK(lim.uint64Value > 60000000);
    EXPECT(saMsgLimitGet(h, SA_MSG_MAX_NUM_QUEUES_PER_GROUP_ID, &lim), SA_AIS_OK);
    CHECK(lim.uint64Value == 64);
    EXPECT(saMsgLimitGet(h, SA_MSG_MAX_NUM_QUEUES_ID, &lim), SA_AIS_ERR_NOT_SUPPORTED);
    EXPECT(saMsgLimitGet(h, 99, &lim), SA_AIS_ERR_INVALID_PARAM);
    EXPECT(saMsgLimitGet(h, SA_MSG_MAX_MESSAGE_SIZE_ID, NULL), SA_AIS_ERR_INVALID_PARAM);

    /* Finalize: a blocking dispatch on another thread returns; every handle is dead. */
    pthread_t d;
    pthread_create(&d, NULL, dispatch_blocking, &h);
    CHECK(wait_asleep(&dispatcher));
    EXPECT(saMsgFinalize(h), SA_AIS_OK);
    pthread_join(d, NULL);
    CHECK(blocking_rc == SA_AIS_OK);
    EXPECT(saMsgFinalize(h), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgMessageGet(h1, &got, NULL, NULL, 0), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgMessageSend(h, &qn, &m, 0), SA_AIS_ERR_BAD_HANDLE);
    EXPECT(saMsgDispatch(h, SA_DISPATCH_ALL), SA_AIS_ERR_BAD_HANDLE);

    /* Clean up what this test made (a new handle). */
    EXPECT(saMsgInitialize(&h, NULL, &v), SA_AIS_OK);
    const char *made[] = {"safMq=orders,safApp=test", "worker1", "worker2", "service"};
    for (unsigned i = 0; i < sizeof made / sizeof *made; i++) {
        SaNameT n = name_of(made[i]);
        EXPECT(saMsgQueueUnlink(h, &n), SA_AIS_OK);
    }
    EXPECT(saMsgFinalize(h), SA_AIS_OK);
    printf("ok %d checks\n", checks);
    return 0;
}
