// SPDX-License-Identifier: GPL-2.0
/*
 * tier_fixed_target: a tiering policy for tests that asks, every plan, for
 * what it is told: demote [target_start, target_start + target_len) of
 * process target_pid, and/or (reclaim_bytes > 0) reclaim reclaim_bytes from
 * memory cgroup reclaim_cgroup_id (0: the scope's own), in the first
 * reclaim_plans plans that ask (0: every plan). The daemon must refuse an
 * action when the process is outside the scope, protected, gone, or the
 * range is not its anonymous memory, and a reclaim target when the cgroup
 * is unknown, outside the scope or reaches a protected one.
 */
#include "mmpolicy/tiering.bpf.h"

const volatile __u32 target_pid = 0;
const volatile __u64 target_start = 0;
const volatile __u64 target_len = MMPOLICY_TIER_REGION_BYTES;
const volatile __u64 reclaim_cgroup_id = 0;
const volatile __u64 reclaim_bytes = 0;
const volatile __u32 reclaim_plans = 0;

__u32 reclaims_asked;

SEC("syscall")
int fixed_target_plan(struct mmpolicy_tiering_ctx *ctx)
{
	if (target_pid)
		mmpolicy_tier_add_action(ctx, target_pid, MMPOLICY_TIER_DEMOTE, target_start, target_len);
	if (reclaim_bytes && (!reclaim_plans || reclaims_asked < reclaim_plans)) {
		reclaims_asked++;
		mmpolicy_tier_add_target(ctx, reclaim_cgroup_id ? reclaim_cgroup_id : ctx->scope.cgroup_id, reclaim_bytes);
	}
	return ctx->nr_actions || ctx->nr_targets ? MMPOLICY_DECIDED : MMPOLICY_NO_DECISION;
}

MMPOLICY_OPS(tiering) = {
	.plan = (void *)fixed_target_plan,
	.name = "tier_fixed_target",
};
