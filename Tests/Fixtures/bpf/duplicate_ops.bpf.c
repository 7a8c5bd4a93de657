// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: two ops tables in one object.
 *
 * Exercises: the loader's "exactly one ops table" check. Besides the table
 * MMPOLICY_OPS() declares, a second struct mmpolicy_oom_ops is placed in
 * .mmpolicy.ops by hand, bound to another syscall program.
 */
#include "mmpolicy/oom.bpf.h"

SEC("syscall")
int first_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	return MMPOLICY_NO_DECISION;
}

SEC("syscall")
int second_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	return MMPOLICY_NO_DECISION;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)first_select_victim,
	.name = "duplicate_ops",
};

struct mmpolicy_oom_ops second_table SEC(MMPOLICY_OPS_SECTION) = {
	.select_victim = (void *)second_select_victim,
	.name = "duplicate_ops_second",
};
