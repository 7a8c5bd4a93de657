// SPDX-License-Identifier: GPL-2.0
/*
 * tier_fixed_target: a tiering policy for tests that asks, every plan, for
 * one action it is told: demote [target_start, target_start + target_len)
 * of process target_pid. The daemon must refuse it when the process is
 * outside the scope, protected, gone, or the range is not its anonymous
 * memory.
 */
#include "mmpolicy/tiering.bpf.h"

const volatile __u32 target_pid = 0;
const volatile __u64 target_start = 0;
const volatile __u64 target_len = MMPOLICY_TIER_REGION_BYTES;

SEC("syscall")
int fixed_target_plan(struct mmpolicy_tiering_ctx *ctx)
{
	if (!target_pid)
		return MMPOLICY_NO_DECISION;
	mmpolicy_tier_add_action(ctx, target_pid, MMPOLICY_TIER_DEMOTE, target_start, target_len);
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(tiering) = {
	.plan = (void *)fixed_target_plan,
	.name = "tier_fixed_target",
};
