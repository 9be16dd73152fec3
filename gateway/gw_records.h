/*
 * gw_records.h - what an agent's line becomes on the way to the broker: the
 * record of a data message (its data object as the agent wrote it, or the
 * rejected-topic document and the nack line when the schema refuses it),
 * and the rejected-topic document of a line that is not a valid message.
 * Pure: no I/O, no state.
 */
#ifndef GW_RECORDS_H
#define GW_RECORDS_H

#include <stddef.h>

#include "eds_proto.h"
#include "eds_schema.h"
#include "gw_window.h"

/* Lines longer than this are cut in the rejected-topic document. */
#define GW_REJECTED_LINE_MAX 1024

/*
 * Validates the data message m against schema (NULL: any object) and fills
 * r's kind, payload, reply and len: GW_REC_DATA with the data object as the
 * agent wrote it (m's raw span) minus white space, or GW_REC_REJECT with
 * {"seq":N,"errors":{...},"data":{...}} and the nack line. r->seq and
 * r->state are left alone. EDS_OK, or EDS_ERR_NOMEM (nothing allocated).
 * The caller owns payload and reply.
 */
int gw_record_build(gw_record *r, const eds_schema *schema, const eds_msg *m);

/* Bytes gw_reject_line_doc may need for a line of len bytes and reason. */
size_t gw_reject_line_cap(size_t len, const char *reason);

/*
 * Writes {"error":CODE,"line":"...","reason":"..."} for a refused line into
 * buf (cap from gw_reject_line_cap): the line cut at GW_REJECTED_LINE_MAX
 * and written with eds_json_append_text (control characters escaped; if the
 * cut line is not valid UTF-8, also a character cut by the limit, its bytes
 * from 0x80 up as \u00XX), so the document stays valid JSON. Returns its
 * length.
 */
size_t gw_reject_line_doc(char *buf, size_t cap, eds_proto_error code, const char *line, size_t len,
                          const char *reason);

#endif
