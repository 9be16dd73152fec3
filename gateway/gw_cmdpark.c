#include "gw_cmdpark.h"

#include "eds_bytes.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a: ids are short, and an attacker choosing them only lengthens chains
 * of a table whose size the byte budget bounds anyway. */
static size_t hash(const char *s)
{
    return eds_fnv1a(s, strlen(s));
}

int gw_cmdpark_init(gw_cmdpark *p, unsigned bits)
{
    memset(p, 0, sizeof(*p));
    p->hsize = (size_t)1 << bits;
    p->htab = calloc(p->hsize, sizeof(*p->htab));
    return p->htab ? EDS_OK : EDS_ERR_NOMEM;
}

void gw_cmdpark_free(gw_cmdpark *p, size_t *budget)
{
    while (p->oldest) {
        gw_park_entry *e = p->oldest;
        gw_cmdq_clear(&e->q, budget);
        gw_cmdpark_remove(p, e, budget);
    }
    free(p->htab);
    memset(p, 0, sizeof(*p));
}

gw_park_entry *gw_cmdpark_find(const gw_cmdpark *p, const char *id)
{
    if (!p->htab)
        return NULL;
    for (gw_park_entry *e = p->htab[hash(id) & (p->hsize - 1)]; e; e = e->hnext)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

gw_park_entry *gw_cmdpark_get(gw_cmdpark *p, const char *id, size_t *budget)
{
    gw_park_entry *e = gw_cmdpark_find(p, id);
    if (e || strlen(id) > EDS_DEVICE_MAX)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    strcpy(e->id, id);
    size_t b = hash(id) & (p->hsize - 1);
    e->hnext = p->htab[b];
    p->htab[b] = e;
    e->older = p->newest;
    if (p->newest)
        p->newest->newer = e;
    else
        p->oldest = e;
    p->newest = e;
    p->n++;
    *budget += GW_PARK_ENTRY_SIZE;
    return e;
}

void gw_cmdpark_remove(gw_cmdpark *p, gw_park_entry *e, size_t *budget)
{
    gw_park_entry **pp = &p->htab[hash(e->id) & (p->hsize - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->older)
        e->older->newer = e->newer;
    else
        p->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        p->newest = e->older;
    p->n--;
    *budget -= GW_PARK_ENTRY_SIZE;
    free(e);
}
