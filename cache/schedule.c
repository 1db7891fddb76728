/* schedule.c - the acquisition schedule (see schedule.h). */
#include "schedule.h"

int ms_sched_union(const int *ids, int n, uint8_t *seen, int *out)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (!seen[ids[i]]) {
            seen[ids[i]] = 1;
            out[m++] = ids[i];
        }
    for (int i = 0; i < m; i++) seen[out[i]] = 0;
    return m;
}
