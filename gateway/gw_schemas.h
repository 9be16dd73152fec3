/*
 * gw_schemas.h - which schema validates which device's records, and which
 * its downlink commands: a default schema plus `schema_for PATTERN FILE`
 * rules (fnmatch on the device id, first match wins); the same again for
 * commands with `cmd_schema` and `cmd_schema_for`. Loaded as one immutable set, so SIGHUP can build
 * a new set and swap it in whole, or keep the old one if any file is bad.
 */
#ifndef GW_SCHEMAS_H
#define GW_SCHEMAS_H

#include "eds_err.h"
#include "eds_schema.h"
#include "gw_config.h"

typedef struct gw_schemas gw_schemas;

/* Loads every schema the config names. EDS_OK, or the first load error in err. */
int gw_schemas_load(const gw_config *cfg, gw_schemas **out, eds_error *err);
void gw_schemas_destroy(gw_schemas *s); /* NULL ok */

/* The schema for device, or NULL when records of it are not validated. */
const eds_schema *gw_schemas_for(const gw_schemas *s, const char *device);

/* The schema for commands to device, or NULL when they are not validated. */
const eds_schema *gw_schemas_cmd_for(const gw_schemas *s, const char *device);

#endif
