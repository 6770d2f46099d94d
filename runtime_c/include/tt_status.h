/*
 * tt_status.h - status codes returned by every tinytrain runtime function.
 *
 * The list below is the single source of truth: the enum and the strings returned by
 * tt_status_str() are both generated from it, so they cannot drift apart. Values are explicit
 * and stable (they may be stored or sent over a UART); append new codes, never renumber.
 */
#ifndef TT_STATUS_H
#define TT_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, description) */
#define TT_STATUS_LIST(X)                                                              \
    X(TT_OK,                   0, "ok")                                                \
    X(TT_ERR_ARG,              1, "invalid argument (NULL pointer or value out of range)") \
    X(TT_ERR_SHAPE,            2, "inconsistent tensor shape or kernel parameters")   \
    X(TT_ERR_NAN,              3, "non-finite value (NaN or Inf)")                     \
    X(TT_ERR_CHECKPOINT_CRC,   4, "checkpoint CRC mismatch")                           \
    X(TT_ERR_CHECKPOINT_SIZE,  5, "checkpoint size mismatch")

#define TT_STATUS_ENUM_ITEM_(name, value, text) name = value,

typedef enum tt_status {
    TT_STATUS_LIST(TT_STATUS_ENUM_ITEM_)
    TT_STATUS_COUNT_ /* one past the largest code; not a status */
} tt_status;

/* Human-readable text for a status; "unknown status" for values outside the list.
 * Never returns NULL. Defined in tt_util.c. */
const char *tt_status_str(tt_status s);

#ifdef __cplusplus
}
#endif

#endif /* TT_STATUS_H */
