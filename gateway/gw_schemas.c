#include "gw_schemas.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* A default schema plus PATTERN rules, first match wins. */
typedef struct schema_set {
    eds_schema *fallback;
    size_t n;
    struct {
        char *pattern;
        eds_schema *schema;
    } rules[GW_MAX_SCHEMA_RULES];
} schema_set;

struct gw_schemas {
    schema_set records, cmds;
};

static void set_free(schema_set *set)
{
    eds_schema_destroy(set->fallback);
    for (size_t i = 0; i < set->n; i++) {
        free(set->rules[i].pattern);
        eds_schema_destroy(set->rules[i].schema);
    }
}

static int set_load(schema_set *set, const char *fallback, const gw_schema_rule *rules, size_t n,
                    eds_error *err)
{
    int rc = EDS_OK;
    if (fallback)
        rc = eds_schema_load_file(fallback, &set->fallback, err);
    for (size_t i = 0; rc == EDS_OK && i < n; i++) {
        set->rules[i].pattern = strdup(rules[i].pattern);
        set->n = i + 1;
        if (!set->rules[i].pattern)
            rc = EDS_ERR_NOMEM;
        else
            rc = eds_schema_load_file(rules[i].file, &set->rules[i].schema, err);
    }
    return rc;
}

static const eds_schema *set_for(const schema_set *set, const char *device)
{
    for (size_t i = 0; i < set->n; i++)
        if (fnmatch(set->rules[i].pattern, device, 0) == 0)
            return set->rules[i].schema;
    return set->fallback;
}

void gw_schemas_destroy(gw_schemas *s)
{
    if (!s)
        return;
    set_free(&s->records);
    set_free(&s->cmds);
    free(s);
}

int gw_schemas_load(const gw_config *cfg, gw_schemas **out, eds_error *err)
{
    *out = NULL;
    gw_schemas *s = calloc(1, sizeof(*s));
    if (!s)
        return EDS_ERR_NOMEM;
    int rc = set_load(&s->records, cfg->schema, cfg->schema_rules, cfg->n_schema_rules, err);
    if (rc == EDS_OK)
        rc = set_load(&s->cmds, cfg->cmd_schema, cfg->cmd_schema_rules, cfg->n_cmd_schema_rules,
                      err);
    if (rc != EDS_OK) {
        gw_schemas_destroy(s);
        return rc;
    }
    *out = s;
    return EDS_OK;
}

const eds_schema *gw_schemas_for(const gw_schemas *s, const char *device)
{
    return set_for(&s->records, device);
}

const eds_schema *gw_schemas_cmd_for(const gw_schemas *s, const char *device)
{
    return set_for(&s->cmds, device);
}
