/* csa104 without AMF: what clCompAppMain.c does on its work assignments (seeds/000), chosen on
 * the command line instead.
 *
 *   csa104 active                      open the queue (waiting, as a standby, while another
 *                                      process has it) and print each message received
 *   csa104 standby NAME [MS] [COUNT]   send "Msg    N from NAME" every MS milliseconds (the
 *                                      guide: 2000), COUNT messages (0: until killed)
 *
 * run.sh plays the guide's story: an active, a standby sending, the active killed, the next
 * active taking the queue over, and checks that every numbered message arrived. */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* usleep, getpid with -std=c11 */
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msgFns.h"

static volatile int standby;

struct sender {
    const char *name;
    int interval_ms;
    int count;
};

/* clCompAppMain.c's senderLoop, with the interval and count as arguments. */
static void* senderLoop(void* p)
{
    struct sender *s = p;
    int count =0;
    char msg[100];
    while (standby)
    {
        count++;
        snprintf(msg,99,"Msg %4d from %s",count,s->name);
        clprintf(CL_LOG_SEV_INFO,"csa104: Sending Message: %s",msg);
        msgSend(ACTIVE_COMP_QUEUE,msg,strlen(msg)+1);
        if (s->count && count >= s->count)
            break;
        usleep(s->interval_ms * 1000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t thr;
    if (argc >= 2 && strcmp(argv[1], "active") == 0)
    {
        msgInitialize();
        clprintf(CL_LOG_SEV_INFO,"csa104: ACTIVE state requested; activating message queue receiver service");
        if (msgOpen(ACTIVE_COMP_QUEUE,QUEUE_LENGTH) != SA_AIS_OK)
            return 1;
        clprintf(CL_LOG_SEV_INFO,"csa104: queue open, receiving");
        pthread_create(&thr,NULL,msgReceiverLoop,NULL);
        pthread_join(thr, NULL);
        return 1; /* the loop ends only on an error */
    }
    if (argc >= 3 && strcmp(argv[1], "standby") == 0)
    {
        struct sender s = {argv[2], argc >= 4 ? atoi(argv[3]) : 2000, argc >= 5 ? atoi(argv[4]) : 0};
        msgInitialize();
        clprintf(CL_LOG_SEV_INFO,"csa104: Standby state requested");
        standby = 1;
        pthread_create(&thr,NULL,senderLoop,&s);
        pthread_join(thr, NULL);
        return 0;
    }
    fprintf(stderr, "usage: csa104 active | csa104 standby NAME [INTERVAL_MS] [COUNT]\n");
    return 2;
}
