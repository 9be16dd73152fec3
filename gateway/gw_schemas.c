#include "gw_schemas.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

struct gw_schemas {
    eds_schema *fallback;
    size_t n;
    struct {
        char *pattern;
        eds_schema *schema;
    } rules[GW_MAX_SCHEMA_RULES];
};

void gw_schemas_destroy(gw_schemas *s)
{
    if (!s)
        return;
    eds_schema_destroy(s->fallback);
    for (size_t i = 0; i < s->n; i++) {
        free(s->rules[i].pattern);
        eds_schema_destroy(s->rules[i].schema);
    }
    free(s);
}

int gw_schemas_load(const gw_config *cfg, gw_schemas **out, eds_error *err)
{
    *out = NULL;
    gw_schemas *s = calloc(1, sizeof(*s));
    if (!s)
        return EDS_ERR_NOMEM;
    int rc = EDS_OK;
    if (cfg->schema)
        rc = eds_schema_load_file(cfg->schema, &s->fallback, err);
    for (size_t i = 0; rc == EDS_OK && i < cfg->n_schema_rules; i++) {
        s->rules[i].pattern = strdup(cfg->schema_rules[i].pattern);
        s->n = i + 1;
        if (!s->rules[i].pattern)
            rc = EDS_ERR_NOMEM;
        else
            rc = eds_schema_load_file(cfg->schema_rules[i].file, &s->rules[i].schema, err);
    }
    if (rc != EDS_OK) {
        gw_schemas_destroy(s);
        return rc;
    }
    *out = s;
    return EDS_OK;
}

const eds_schema *gw_schemas_for(const gw_schemas *s, const char *device)
{
    for (size_t i = 0; i < s->n; i++)
        if (fnmatch(s->rules[i].pattern, device, 0) == 0)
            return s->rules[i].schema;
    return s->fallback;
}
