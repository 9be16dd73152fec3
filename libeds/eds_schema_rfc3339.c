/*
 * eds_schema_rfc3339.c - the `format: "date-time"` check: RFC 3339,
 * section 5.6, "date-time", strictly:
 *
 *   full-date "T" full-time     e.g. 2026-11-24T10:00:00Z
 *   full-date = YYYY-MM-DD      (day valid for the month, leap years counted)
 *   full-time = hh:mm:ss[.frac] ("Z" / ("+" / "-") hh:mm)
 *
 * "T" and "Z" may be lower case (RFC 3339 5.6 NOTE). A space instead of
 * "T", a missing offset, or a field with the wrong number of digits is
 * refused. Second 60 (a leap second) is accepted only where one can occur:
 * at 23:59 UTC once the offset is applied.
 */
#include "eds_schema_util.h"

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month == 2 && (year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)))
        return 29;
    return days[month - 1];
}

bool eds_schema__rfc3339_valid(const char *s, size_t len)
{
    int year, month, day, hour, minute, second;
    /* "YYYY-MM-DDThh:mm:ss" is 19 bytes, and an offset needs at least 1 more. */
    if (len < 20)
        return false;
    if (!digits(s, 4, &year) || s[4] != '-' || !digits(s + 5, 2, &month) || s[7] != '-' ||
        !digits(s + 8, 2, &day))
        return false;
    if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
        return false;
    if (s[10] != 'T' && s[10] != 't')
        return false;
    if (!digits(s + 11, 2, &hour) || s[13] != ':' || !digits(s + 14, 2, &minute) || s[16] != ':' ||
        !digits(s + 17, 2, &second))
        return false;
    if (hour > 23 || minute > 59 || second > 60)
        return false;
    size_t i = 19;
    if (s[i] == '.') {
        size_t start = ++i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
    }
    if (i >= len)
        return false;
    int offset = 0; /* minutes east of UTC */
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int oh, om;
        if (len - i != 6 || !digits(s + i + 1, 2, &oh) || s[i + 3] != ':' ||
            !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return false;
        offset = (s[i] == '-' ? -1 : 1) * (oh * 60 + om);
        i += 6;
    } else {
        return false;
    }
    if (i != len)
        return false;
    if (second == 60) {
        int utc = ((hour * 60 + minute - offset) % 1440 + 1440) % 1440;
        if (utc != 23 * 60 + 59)
            return false;
    }
    return true;
}
