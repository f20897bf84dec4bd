/* csa104's messaging functions, as the SAFplus eval guide shows them (seeds/000). Two changes,
 * each marked "baton:" below: the creation attributes set all four priorities (the guide's
 * loop stops before the lowest, leaving its size uninitialised), and the message version is
 * a number (SaUint32T in SA-AIS-MSG-B.03.01; the guide's SAFplus header had a SaVersionT). */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE /* usleep, getpid with -std=c11 */
#endif
#include <assert.h>
#include <string.h>
#include <unistd.h>

#include "msgFns.h"

static SaMsgHandleT msgLibraryHandle;
static SaMsgQueueHandleT msgQueueHandle;

void msgInitialize(void)
{
    SaAisErrorT Rc;
    SaMsgCallbacksT MsgCallbacks = {
        .saMsgQueueOpenCallback = (SaMsgQueueOpenCallbackT) 0,
        .saMsgQueueGroupTrackCallback = (SaMsgQueueGroupTrackCallbackT) 0,
        .saMsgMessageDeliveredCallback = (SaMsgMessageDeliveredCallbackT) 0,
        .saMsgMessageReceivedCallback = (SaMsgMessageReceivedCallbackT) 0,
    };
    SaVersionT Version = {
        .majorVersion = 1,
        .minorVersion = 1,
        .releaseCode = 'B',
    };
    Rc = saMsgInitialize (&msgLibraryHandle, &MsgCallbacks, &Version);
    if ( SA_AIS_OK != Rc)
    {
        clprintf ( CL_LOG_SEV_ERROR, "Init failed [0x%X]", Rc);
        assert(0);
    }
}

SaAisErrorT msgOpen(const char* queuename,int bytesPerPriority)
{
    SaAisErrorT rc;
    SaNameT saQueueName;
    SaMsgQueueCreationAttributesT CreationAttributes;
    saQueueName.length=strlen(queuename);
    memcpy(saQueueName.value,queuename,saQueueName.length+1);
    SaMsgQueueOpenFlagsT OpenFlags = SA_MSG_QUEUE_CREATE;
    CreationAttributes.creationFlags = 0;
    /* baton: `<=` (the guide has `<`, which leaves size[3] uninitialised) */
    for (int i=0;i<=SA_MSG_MESSAGE_LOWEST_PRIORITY;i++)
        CreationAttributes.size[i] = bytesPerPriority;
    CreationAttributes.retentionTime = 0;
    rc = saMsgQueueOpen (msgLibraryHandle, &saQueueName, & CreationAttributes, OpenFlags, SA_TIME_MAX, &msgQueueHandle);
    if (SA_AIS_OK != rc)
    {
        clprintf ( CL_LOG_SEV_ERROR, "Msg QueueOpen failed [0x%X]\n\r", rc);
    }
    return rc;
}

SaAisErrorT msgSend(const char* queuename, void* buffer, int length)
{
    SaAisErrorT rc;
    SaNameT saQueueName;
    SaMsgMessageT message;
    /* Load the SAF string */
    saQueueName.length=strlen(queuename);
    memcpy(saQueueName.value,queuename,saQueueName.length+1);
    /* Load the SAF message structure */
    message.type = 0;
    message.version = 0; /* baton: the guide sets version.releaseCode, .majorVersion, .minorVersion */
    message.senderName = 0; /* You could put a SaNameT* in here if you wanted to pass a reply queue (for example) */
    message.size = length;
    message.data = buffer;
    message.priority = SA_MSG_MESSAGE_HIGHEST_PRIORITY;
    rc = saMsgMessageSend (msgLibraryHandle, &saQueueName, &message, SA_TIME_MAX);
    if (SA_AIS_OK != rc)
    {
        /* Error 0xC here means that the queue has not yet been created.
           That is, the receiver is not yet listening. */
        clprintf ( CL_LOG_SEV_ERROR, "Msg saMsgMessageSend to queue [%s] failed [0x%X]", saQueueName.value,rc );
    }
    return rc;
}

void* msgReceiverLoop(void * notused)
{
    SaAisErrorT rc;
    SaNameT SenderName;
    char Data[1024];
    SaMsgSenderIdT SenderId;
    SaTimeT SendTime;
    (void)notused;
    while(1)
    {
        SaMsgMessageT message = {
            .size = 1024,
            .senderName = &SenderName,
            .data = Data,
        };
        rc = saMsgMessageGet (msgQueueHandle, &message, & SendTime, & SenderId, SA_TIME_MAX);
        if (SA_AIS_OK != rc)
        {
            clprintf ( CL_LOG_SEV_ERROR, "Msg saMsgMessageGet failed [0x%X]\n\r", rc );
            break;
        }
        if (message.senderName->length)
        {
            clprintf ( CL_LOG_SEV_INFO, "Sender Name : %s\n", message.senderName->value);
        }
        clprintf ( CL_LOG_SEV_INFO, "Received Message : %s\n", (char *)message.data);
    }
    rc = saMsgQueueClose (msgQueueHandle);
    if (SA_AIS_OK != rc)
    {
        clprintf ( CL_LOG_SEV_ERROR, "Msg Queue Close failed [0x%X]\n\r", rc );
    }
    return 0;
}
