/* schedule.h - the acquisition schedule: in which order, and in which groups,
 * the experts of one forward pass are acquired from the cache. ONE definition
 * used by the runtime's MoE block (src/arch/moe.c), the expert cache
 * (max_acquire) and the simulator (cache/sim.c), so a trace replayed by
 * `simulate` meets exactly the calls the runtime made.
 *
 *   per MoE layer of a pass over n tokens (top_k experts each):
 *     order  = the distinct experts in order of first appearance
 *              (token order, then the router's rank; for one token: the
 *              router's order)
 *     groups = consecutive waves of at most ms_sched_wave(slots, top_k)
 *              experts, each acquired (pinned) together, computed, released
 *   wave = max(top_k, slots - top_k): what the smallest size class can pin at
 *   once while leaving top_k slots of headroom for prefetches still loading.
 */
#ifndef MS_SCHEDULE_H
#define MS_SCHEDULE_H

#include <stdint.h>

/* Largest group one acquire may hold, for a cache whose smallest size class
 * has `slots` slots. */
static inline int ms_sched_wave(int64_t slots, int top_k)
{
    int64_t w = slots - top_k;
    return w > top_k ? (int)(w > INT32_MAX ? INT32_MAX : w) : top_k;
}

/* The distinct values of ids[0..n) in order of first appearance into out[]
 * (room for n); returns how many. seen[] has one byte per possible id, all zero
 * on entry and on return. */
int ms_sched_union(const int *ids, int n, uint8_t *seen, int *out);

#endif
