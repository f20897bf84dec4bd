/*
 * saAis.h: the SA-Forum AIS common types, for programs written against the SA-Forum
 * Message Service (SAI-AIS-MSG-B.03.01) that link baton's libSaMsg.
 *
 * Written for baton from the specification's names and values (the names, types and
 * constants a program uses); see docs/c-api.md.
 */
#ifndef BATON_SA_AIS_H
#define BATON_SA_AIS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int8_t SaInt8T;
typedef int16_t SaInt16T;
typedef int32_t SaInt32T;
typedef int64_t SaInt64T;
typedef uint8_t SaUint8T;
typedef uint16_t SaUint16T;
typedef uint32_t SaUint32T;
typedef uint64_t SaUint64T;
typedef float SaFloatT;
typedef double SaDoubleT;
typedef char *SaStringT;

typedef enum { SA_FALSE = 0, SA_TRUE = 1 } SaBoolT;

/* Nanoseconds. */
typedef SaInt64T SaTimeT;
#define SA_TIME_END ((SaTimeT)0x7FFFFFFFFFFFFFFFLL)
#define SA_TIME_BEGIN ((SaTimeT)0)
#define SA_TIME_UNKNOWN ((SaTimeT)0x8000000000000000LL)
#define SA_TIME_MAX SA_TIME_END
#define SA_TIME_ONE_MICROSECOND ((SaTimeT)1000)
#define SA_TIME_ONE_MILLISECOND ((SaTimeT)1000000)
#define SA_TIME_ONE_SECOND ((SaTimeT)1000000000)
#define SA_TIME_ONE_MINUTE ((SaTimeT)60000000000LL)
#define SA_TIME_ONE_HOUR ((SaTimeT)3600000000000LL)
#define SA_TIME_ONE_DAY ((SaTimeT)86400000000000LL)

typedef SaUint64T SaSizeT;
typedef SaUint64T SaInvocationT;
typedef SaUint64T SaSelectionObjectT;

#define SA_MAX_NAME_LENGTH 256
typedef struct {
    SaUint16T length;
    SaUint8T value[SA_MAX_NAME_LENGTH];
} SaNameT;

typedef struct {
    SaUint8T releaseCode;
    SaUint8T majorVersion;
    SaUint8T minorVersion;
} SaVersionT;

#define SA_TRACK_CURRENT 0x01
#define SA_TRACK_CHANGES 0x02
#define SA_TRACK_CHANGES_ONLY 0x04

typedef enum {
    SA_DISPATCH_ONE = 1,
    SA_DISPATCH_ALL = 2,
    SA_DISPATCH_BLOCKING = 3
} SaDispatchFlagsT;

typedef union {
    SaInt64T int64Value;
    SaUint64T uint64Value;
    SaTimeT timeValue;
    SaFloatT floatValue;
    SaDoubleT doubleValue;
} SaLimitValueT;

typedef enum {
    SA_AIS_OK = 1,
    SA_AIS_ERR_LIBRARY = 2,
    SA_AIS_ERR_VERSION = 3,
    SA_AIS_ERR_INIT = 4,
    SA_AIS_ERR_TIMEOUT = 5,
    SA_AIS_ERR_TRY_AGAIN = 6,
    SA_AIS_ERR_INVALID_PARAM = 7,
    SA_AIS_ERR_NO_MEMORY = 8,
    SA_AIS_ERR_BAD_HANDLE = 9,
    SA_AIS_ERR_BUSY = 10,
    SA_AIS_ERR_ACCESS = 11,
    SA_AIS_ERR_NOT_EXIST = 12,
    SA_AIS_ERR_NAME_TOO_LONG = 13,
    SA_AIS_ERR_EXIST = 14,
    SA_AIS_ERR_NO_SPACE = 15,
    SA_AIS_ERR_INTERRUPT = 16,
    SA_AIS_ERR_NAME_NOT_FOUND = 17,
    SA_AIS_ERR_NO_RESOURCES = 18,
    SA_AIS_ERR_NOT_SUPPORTED = 19,
    SA_AIS_ERR_BAD_OPERATION = 20,
    SA_AIS_ERR_FAILED_OPERATION = 21,
    SA_AIS_ERR_MESSAGE_ERROR = 22,
    SA_AIS_ERR_QUEUE_FULL = 23,
    SA_AIS_ERR_QUEUE_NOT_AVAILABLE = 24,
    SA_AIS_ERR_BAD_FLAGS = 25,
    SA_AIS_ERR_TOO_BIG = 26,
    SA_AIS_ERR_NO_SECTIONS = 27,
    SA_AIS_ERR_NO_OP = 28,
    SA_AIS_ERR_REPAIR_PENDING = 29,
    SA_AIS_ERR_NO_BINDINGS = 30,
    SA_AIS_ERR_UNAVAILABLE = 31
} SaAisErrorT;

#ifdef __cplusplus
}
#endif

#endif /* BATON_SA_AIS_H */
