/*
 * saMsg.h: the SA-Forum Message Service (SAI-AIS-MSG-B.03.01) C interface, implemented by
 * baton's libSaMsg over baton queues in shared memory (no daemon). Names, types, constants
 * and prototypes are the specification's; docs/c-api.md says what each does here and what
 * differs.
 */
#ifndef BATON_SA_MSG_H
#define BATON_SA_MSG_H

#include "saAis.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef SaUint64T SaMsgHandleT;
typedef SaUint64T SaMsgQueueHandleT;
typedef SaUint64T SaMsgSenderIdT;

#define SA_MSG_MESSAGE_DELIVERED_ACK 0x1
typedef SaUint32T SaMsgAckFlagsT;

#define SA_MSG_QUEUE_PERSISTENT 0x1
typedef SaUint32T SaMsgQueueCreationFlagsT;

#define SA_MSG_MESSAGE_HIGHEST_PRIORITY 0
#define SA_MSG_MESSAGE_LOWEST_PRIORITY 3

typedef struct {
    SaMsgQueueCreationFlagsT creationFlags;
    SaSizeT size[SA_MSG_MESSAGE_LOWEST_PRIORITY + 1];
    SaTimeT retentionTime;
} SaMsgQueueCreationAttributesT;

#define SA_MSG_QUEUE_CREATE 0x1
#define SA_MSG_QUEUE_RECEIVE_CALLBACK 0x2
#define SA_MSG_QUEUE_EMPTY 0x4
/* baton's extension, not the specification's: a message got stays in the queue, unacknowledged,
 * until the getting thread's next get on the handle or the handle's close; if the process dies
 * first, the queue's next opener gets it again (at least once). It keeps its space meanwhile. */
#define BATON_MSG_QUEUE_AT_LEAST_ONCE 0x100
typedef SaUint32T SaMsgQueueOpenFlagsT;

typedef struct {
    SaUint32T queueSize;
    SaSizeT queueUsed;
    SaUint32T numberOfMessages;
} SaMsgQueueUsageT;

typedef struct {
    SaMsgQueueCreationFlagsT creationFlags;
    SaTimeT retentionTime;
    SaTimeT closeTime;
    SaMsgQueueUsageT saMsgQueueUsage[SA_MSG_MESSAGE_LOWEST_PRIORITY + 1];
} SaMsgQueueStatusT;

typedef enum {
    SA_MSG_QUEUE_GROUP_ROUND_ROBIN = 1,
    SA_MSG_QUEUE_GROUP_LOCAL_ROUND_ROBIN = 2,
    SA_MSG_QUEUE_GROUP_LOCAL_BEST_QUEUE = 3,
    SA_MSG_QUEUE_GROUP_BROADCAST = 4
} SaMsgQueueGroupPolicyT;

typedef enum {
    SA_MSG_QUEUE_GROUP_NO_CHANGE = 1,
    SA_MSG_QUEUE_GROUP_ADDED = 2,
    SA_MSG_QUEUE_GROUP_REMOVED = 3,
    SA_MSG_QUEUE_GROUP_STATE_CHANGED = 4
} SaMsgQueueGroupChangesT;

typedef struct {
    SaNameT queueName;
} SaMsgQueueGroupMemberT;

typedef struct {
    SaMsgQueueGroupMemberT member;
    SaMsgQueueGroupChangesT change;
} SaMsgQueueGroupNotificationT;

typedef struct {
    SaUint32T numberOfItems;
    SaMsgQueueGroupNotificationT *notification;
    SaMsgQueueGroupPolicyT queueGroupPolicy;
} SaMsgQueueGroupNotificationBufferT;

typedef struct {
    SaUint32T type;
    SaUint32T version;
    SaSizeT size;
    SaNameT *senderName;
    void *data;
    SaUint8T priority;
} SaMsgMessageT;

typedef struct {
    SaSizeT capacityReached[SA_MSG_MESSAGE_LOWEST_PRIORITY + 1];
    SaSizeT capacityAvailable[SA_MSG_MESSAGE_LOWEST_PRIORITY + 1];
} SaMsgQueueThresholdsT;

typedef enum {
    SA_MSG_MAX_PRIORITY_AREA_SIZE_ID = 1,
    SA_MSG_MAX_QUEUE_SIZE_ID = 2,
    SA_MSG_MAX_NUM_QUEUES_ID = 3,
    SA_MSG_MAX_NUM_QUEUE_GROUPS_ID = 4,
    SA_MSG_MAX_NUM_QUEUES_PER_GROUP_ID = 5,
    SA_MSG_MAX_MESSAGE_SIZE_ID = 6,
    SA_MSG_MAX_REPLY_SIZE_ID = 7
} SaMsgLimitIdT;

typedef void (*SaMsgQueueOpenCallbackT)(SaInvocationT invocation,
                                        SaMsgQueueHandleT queueHandle,
                                        SaAisErrorT error);
typedef void (*SaMsgQueueGroupTrackCallbackT)(
    const SaNameT *queueGroupName,
    const SaMsgQueueGroupNotificationBufferT *notificationBuffer,
    SaUint32T numberOfMembers, SaAisErrorT error);
typedef void (*SaMsgMessageDeliveredCallbackT)(SaInvocationT invocation, SaAisErrorT error);
typedef void (*SaMsgMessageReceivedCallbackT)(SaMsgQueueHandleT queueHandle);

typedef struct {
    SaMsgQueueOpenCallbackT saMsgQueueOpenCallback;
    SaMsgQueueGroupTrackCallbackT saMsgQueueGroupTrackCallback;
    SaMsgMessageDeliveredCallbackT saMsgMessageDeliveredCallback;
    SaMsgMessageReceivedCallbackT saMsgMessageReceivedCallback;
} SaMsgCallbacksT;

SaAisErrorT saMsgInitialize(SaMsgHandleT *msgHandle, const SaMsgCallbacksT *msgCallbacks,
                            SaVersionT *version);
SaAisErrorT saMsgSelectionObjectGet(SaMsgHandleT msgHandle,
                                    SaSelectionObjectT *selectionObject);
SaAisErrorT saMsgDispatch(SaMsgHandleT msgHandle, SaDispatchFlagsT dispatchFlags);
SaAisErrorT saMsgFinalize(SaMsgHandleT msgHandle);

SaAisErrorT saMsgQueueOpen(SaMsgHandleT msgHandle, const SaNameT *queueName,
                           const SaMsgQueueCreationAttributesT *creationAttributes,
                           SaMsgQueueOpenFlagsT openFlags, SaTimeT timeout,
                           SaMsgQueueHandleT *queueHandle);
SaAisErrorT saMsgQueueOpenAsync(SaMsgHandleT msgHandle, SaInvocationT invocation,
                                const SaNameT *queueName,
                                const SaMsgQueueCreationAttributesT *creationAttributes,
                                SaMsgQueueOpenFlagsT openFlags);
SaAisErrorT saMsgQueueClose(SaMsgQueueHandleT queueHandle);
SaAisErrorT saMsgQueueStatusGet(SaMsgHandleT msgHandle, const SaNameT *queueName,
                                SaMsgQueueStatusT *queueStatus);
SaAisErrorT saMsgQueueRetentionTimeSet(SaMsgQueueHandleT queueHandle, SaTimeT *retentionTime);
SaAisErrorT saMsgQueueUnlink(SaMsgHandleT msgHandle, const SaNameT *queueName);

SaAisErrorT saMsgQueueGroupCreate(SaMsgHandleT msgHandle, const SaNameT *queueGroupName,
                                  SaMsgQueueGroupPolicyT queueGroupPolicy);
SaAisErrorT saMsgQueueGroupDelete(SaMsgHandleT msgHandle, const SaNameT *queueGroupName);
SaAisErrorT saMsgQueueGroupInsert(SaMsgHandleT msgHandle, const SaNameT *queueGroupName,
                                  const SaNameT *queueName);
SaAisErrorT saMsgQueueGroupRemove(SaMsgHandleT msgHandle, const SaNameT *queueGroupName,
                                  const SaNameT *queueName);
SaAisErrorT saMsgQueueGroupTrack(SaMsgHandleT msgHandle, const SaNameT *queueGroupName,
                                 SaUint8T trackFlags,
                                 SaMsgQueueGroupNotificationBufferT *notificationBuffer);
SaAisErrorT saMsgQueueGroupTrackStop(SaMsgHandleT msgHandle, const SaNameT *queueGroupName);
SaAisErrorT saMsgQueueGroupNotificationFree(SaMsgHandleT msgHandle,
                                            SaMsgQueueGroupNotificationT *notification);

SaAisErrorT saMsgMessageSend(SaMsgHandleT msgHandle, const SaNameT *destination,
                             const SaMsgMessageT *message, SaTimeT timeout);
SaAisErrorT saMsgMessageSendAsync(SaMsgHandleT msgHandle, SaInvocationT invocation,
                                  const SaNameT *destination, const SaMsgMessageT *message,
                                  SaMsgAckFlagsT ackFlags);
SaAisErrorT saMsgMessageGet(SaMsgQueueHandleT queueHandle, SaMsgMessageT *message,
                            SaTimeT *sendTime, SaMsgSenderIdT *senderId, SaTimeT timeout);
SaAisErrorT saMsgMessageDataFree(SaMsgHandleT msgHandle, void *data);
SaAisErrorT saMsgMessageCancel(SaMsgQueueHandleT queueHandle);
SaAisErrorT saMsgMessageSendReceive(SaMsgHandleT msgHandle, const SaNameT *destination,
                                    const SaMsgMessageT *sendMessage,
                                    SaMsgMessageT *receiveMessage, SaTimeT *replySendTime,
                                    SaTimeT timeout);
SaAisErrorT saMsgMessageReply(SaMsgHandleT msgHandle, const SaMsgMessageT *replyMessage,
                              const SaMsgSenderIdT *senderId, SaTimeT timeout);

SaAisErrorT saMsgMessageReplyAsync(SaMsgHandleT msgHandle, SaInvocationT invocation,
                                   const SaMsgMessageT *replyMessage,
                                   const SaMsgSenderIdT *senderId, SaMsgAckFlagsT ackFlags);
SaAisErrorT saMsgMetadataSizeGet(SaMsgHandleT msgHandle, SaUint32T *metadataSize);
SaAisErrorT saMsgLimitGet(SaMsgHandleT msgHandle, SaMsgLimitIdT limitId,
                          SaLimitValueT *limitValue);

SaAisErrorT saMsgQueueCapacityThresholdsSet(SaMsgQueueHandleT queueHandle,
                                            const SaMsgQueueThresholdsT *thresholds);
SaAisErrorT saMsgQueueCapacityThresholdsGet(SaMsgQueueHandleT queueHandle,
                                            SaMsgQueueThresholdsT *thresholds);

#ifdef __cplusplus
}
#endif

#endif /* BATON_SA_MSG_H */
