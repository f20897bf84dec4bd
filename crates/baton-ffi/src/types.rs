//! The C types of `saAis.h` and `saMsg.h`, laid out as the headers declare them.

use std::os::raw::c_void;

/// `SaAisErrorT`.
pub type SaAisErrorT = u32;
pub const SA_AIS_OK: SaAisErrorT = 1;
pub const SA_AIS_ERR_LIBRARY: SaAisErrorT = 2;
pub const SA_AIS_ERR_VERSION: SaAisErrorT = 3;
pub const SA_AIS_ERR_INIT: SaAisErrorT = 4;
pub const SA_AIS_ERR_TIMEOUT: SaAisErrorT = 5;
pub const SA_AIS_ERR_TRY_AGAIN: SaAisErrorT = 6;
pub const SA_AIS_ERR_INVALID_PARAM: SaAisErrorT = 7;
pub const SA_AIS_ERR_NO_MEMORY: SaAisErrorT = 8;
pub const SA_AIS_ERR_BAD_HANDLE: SaAisErrorT = 9;
pub const SA_AIS_ERR_BUSY: SaAisErrorT = 10;
pub const SA_AIS_ERR_ACCESS: SaAisErrorT = 11;
pub const SA_AIS_ERR_NOT_EXIST: SaAisErrorT = 12;
pub const SA_AIS_ERR_NAME_TOO_LONG: SaAisErrorT = 13;
pub const SA_AIS_ERR_EXIST: SaAisErrorT = 14;
pub const SA_AIS_ERR_NO_SPACE: SaAisErrorT = 15;
pub const SA_AIS_ERR_INTERRUPT: SaAisErrorT = 16;
pub const SA_AIS_ERR_NO_RESOURCES: SaAisErrorT = 18;
pub const SA_AIS_ERR_NOT_SUPPORTED: SaAisErrorT = 19;
pub const SA_AIS_ERR_BAD_OPERATION: SaAisErrorT = 20;
pub const SA_AIS_ERR_QUEUE_FULL: SaAisErrorT = 23;
pub const SA_AIS_ERR_QUEUE_NOT_AVAILABLE: SaAisErrorT = 24;
pub const SA_AIS_ERR_BAD_FLAGS: SaAisErrorT = 25;
pub const SA_AIS_ERR_TOO_BIG: SaAisErrorT = 26;

pub type SaTimeT = i64;
pub const SA_TIME_END: SaTimeT = i64::MAX;
pub type SaSizeT = u64;
pub type SaInvocationT = u64;
pub type SaSelectionObjectT = u64;
pub type SaMsgHandleT = u64;
pub type SaMsgQueueHandleT = u64;
pub type SaMsgSenderIdT = u64;
pub type SaMsgAckFlagsT = u32;
pub type SaMsgQueueOpenFlagsT = u32;
pub type SaMsgQueueCreationFlagsT = u32;
pub type SaDispatchFlagsT = u32;
pub type SaMsgQueueGroupPolicyT = u32;

pub const SA_MSG_MESSAGE_DELIVERED_ACK: SaMsgAckFlagsT = 1;
pub const SA_MSG_QUEUE_PERSISTENT: SaMsgQueueCreationFlagsT = 1;
pub const SA_MSG_QUEUE_CREATE: SaMsgQueueOpenFlagsT = 1;
pub const SA_MSG_QUEUE_RECEIVE_CALLBACK: SaMsgQueueOpenFlagsT = 2;
pub const SA_MSG_QUEUE_EMPTY: SaMsgQueueOpenFlagsT = 4;
/// baton's extension (saMsg.h): gets acknowledge at the thread's next get or the close.
pub const BATON_MSG_QUEUE_AT_LEAST_ONCE: SaMsgQueueOpenFlagsT = 0x100;
pub const SA_DISPATCH_ONE: SaDispatchFlagsT = 1;
pub const SA_DISPATCH_ALL: SaDispatchFlagsT = 2;
pub const SA_DISPATCH_BLOCKING: SaDispatchFlagsT = 3;
pub const SA_TRACK_CURRENT: u8 = 1;
pub const SA_TRACK_CHANGES: u8 = 2;
pub const SA_TRACK_CHANGES_ONLY: u8 = 4;
pub const SA_MSG_QUEUE_GROUP_NO_CHANGE: u32 = 1;
pub const SA_MSG_QUEUE_GROUP_ADDED: u32 = 2;
pub const SA_MSG_QUEUE_GROUP_REMOVED: u32 = 3;

pub const SA_MAX_NAME_LENGTH: usize = 256;

/// `SaNameT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaNameT {
    pub length: u16,
    pub value: [u8; SA_MAX_NAME_LENGTH],
}

/// `SaVersionT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaVersionT {
    pub releaseCode: u8,
    pub majorVersion: u8,
    pub minorVersion: u8,
}

/// `SaMsgQueueCreationAttributesT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaMsgQueueCreationAttributesT {
    pub creationFlags: SaMsgQueueCreationFlagsT,
    pub size: [SaSizeT; 4],
    pub retentionTime: SaTimeT,
}

/// `SaMsgQueueUsageT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaMsgQueueUsageT {
    pub queueSize: u32,
    pub queueUsed: SaSizeT,
    pub numberOfMessages: u32,
}

/// `SaMsgQueueStatusT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaMsgQueueStatusT {
    pub creationFlags: SaMsgQueueCreationFlagsT,
    pub retentionTime: SaTimeT,
    pub closeTime: SaTimeT,
    pub saMsgQueueUsage: [SaMsgQueueUsageT; 4],
}

/// `SaMsgMessageT`.
#[repr(C)]
pub struct SaMsgMessageT {
    pub type_: u32,
    pub version: u32,
    pub size: SaSizeT,
    pub senderName: *mut SaNameT,
    pub data: *mut c_void,
    pub priority: u8,
}

/// `SaMsgQueueThresholdsT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaMsgQueueThresholdsT {
    pub capacityReached: [SaSizeT; 4],
    pub capacityAvailable: [SaSizeT; 4],
}

/// `SaMsgQueueGroupNotificationT`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SaMsgQueueGroupNotificationT {
    pub member: SaNameT,
    pub change: u32,
}

/// `SaMsgQueueGroupNotificationBufferT`.
#[repr(C)]
pub struct SaMsgQueueGroupNotificationBufferT {
    pub numberOfItems: u32,
    pub notification: *mut SaMsgQueueGroupNotificationT,
    pub queueGroupPolicy: SaMsgQueueGroupPolicyT,
}

pub type SaMsgQueueOpenCallbackT =
    Option<unsafe extern "C" fn(SaInvocationT, SaMsgQueueHandleT, SaAisErrorT)>;
pub type SaMsgQueueGroupTrackCallbackT = Option<
    unsafe extern "C" fn(
        *const SaNameT,
        *const SaMsgQueueGroupNotificationBufferT,
        u32,
        SaAisErrorT,
    ),
>;
pub type SaMsgMessageDeliveredCallbackT = Option<unsafe extern "C" fn(SaInvocationT, SaAisErrorT)>;
pub type SaMsgMessageReceivedCallbackT = Option<unsafe extern "C" fn(SaMsgQueueHandleT)>;

/// `SaMsgCallbacksT`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct SaMsgCallbacksT {
    pub saMsgQueueOpenCallback: SaMsgQueueOpenCallbackT,
    pub saMsgQueueGroupTrackCallback: SaMsgQueueGroupTrackCallbackT,
    pub saMsgMessageDeliveredCallback: SaMsgMessageDeliveredCallbackT,
    pub saMsgMessageReceivedCallback: SaMsgMessageReceivedCallbackT,
}
