/* policies_all.h - the built-in policy ops tables, for the registry (policy.c). */
#ifndef MS_POLICIES_ALL_H
#define MS_POLICIES_ALL_H

#include "policy.h"

extern const ms_policy_ops ms_policy_lru;
extern const ms_policy_ops ms_policy_lru_layer;
extern const ms_policy_ops ms_policy_lfu;
extern const ms_policy_ops ms_policy_lfu_decay;
extern const ms_policy_ops ms_policy_2q;
extern const ms_policy_ops ms_policy_tinylfu;
extern const ms_policy_ops ms_policy_pin;
extern const ms_policy_ops ms_policy_next_use;
extern const ms_policy_ops ms_policy_belady;
extern const ms_policy_ops ms_policy_eva_duel;

#endif
