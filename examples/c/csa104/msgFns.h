/* csa104's messaging module, as the SAFplus eval guide shows it (seeds/000), built against
 * baton's saMsg.h. Changes from the guide: the SAFplus log stream is gone (clprintf is printf),
 * and the component name the sender puts in its messages is a variable main sets. */
#ifndef MSGFNS_H
#define MSGFNS_H

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <saMsg.h>

void        msgInitialize(void);
SaAisErrorT msgOpen(const char* queuename,int bytesPerPriority);
SaAisErrorT msgSend(const char* queuename, void* buffer, int length);
void*       msgReceiverLoop(void * notused);

#define ACTIVE_COMP_QUEUE "csa104msgqueue"
#define QUEUE_LENGTH 2048

/* SAFplus: clAppLog(gEvalLogStream, severity, ...), one log record per call. Here: one line
 * on standard output, "(PID : SEVERITY) text", flushed at once. */
#define CL_LOG_SEV_ERROR "ERROR"
#define CL_LOG_SEV_INFO  "INFO"
#define clprintf(severity, ...) clLogLine(severity, __VA_ARGS__)

static inline void clLogLine(const char *severity, const char *format, ...)
{
    char text[1200];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '\r'))
        text[--n] = 0; /* the guide's formats end in "\n\r" or nothing: one line each */
    printf("(%d : %s) %s\n", (int)getpid(), severity, text);
    fflush(stdout);
    /* Tests only: stop (SIGSTOP) right after logging a line containing $CSA104_STOP_AT, so
     * that a kill lands while the message just received is in hand, before the next get. */
    const char *stop = getenv("CSA104_STOP_AT");
    if (stop && *stop && strstr(text, stop))
        raise(SIGSTOP);
}

#endif
