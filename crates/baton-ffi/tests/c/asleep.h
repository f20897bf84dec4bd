/* For the C tests: waiting until another thread of this process is blocked in the call it was
 * started to make (asleep, state S in /proc), rather than for a fixed time a loaded machine
 * may not keep to. */
#ifndef ASLEEP_H
#define ASLEEP_H
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

/* This thread's id (what /proc/self/task/ names it by). */
static pid_t this_thread(void) { return (pid_t)syscall(SYS_gettid); }

/* Waits, at most about 10 s, until thread `*tid` exists (a nonzero id, stored by the thread
 * itself) and sleeps; returns whether it did. */
static int wait_asleep(volatile pid_t *tid) {
    for (int tries = 0; tries < 10000; tries++, usleep(1000)) {
        if (*tid == 0) continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)*tid);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        const char *end = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
        if (end && end[1] == ' ' && end[2] == 'S') return 1;
    }
    return 0;
}
#endif
