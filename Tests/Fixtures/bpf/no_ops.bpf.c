// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: an object with no ops table.
 *
 * Exercises: the loader's "no MMPOLICY_OPS" failure. The object has one valid
 * SEC("syscall") program but neither a .mmpolicy.header nor a .mmpolicy.ops
 * section, so it is a plain BPF object, not a policy.
 */
#include "mmpolicy/oom.bpf.h"

SEC("syscall")
int no_ops_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	ctx->victim_tgid = 0;
	return MMPOLICY_NO_DECISION;
}
