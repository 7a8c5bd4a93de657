// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: an oom policy that always names the same victim, whatever the
 * scope: `victim_pid` (set with --set victim_pid=N), or, with
 * `kill_cgroup_id` set, that whole cgroup.
 *
 * Exercises the daemon's validation: a victim outside the scope, a protected
 * one or a dead pid must be rejected (a strike) and the OOM handed to the
 * kernel. `decline` makes the callback decline instead (a fallback);
 * `return_error` makes it fail (returns -EINVAL: a decision error, reported
 * with mmpolicy_error() so the daemon can say why).
 */
#include "mmpolicy/oom.bpf.h"

const volatile __u32 victim_pid = 0;
const volatile __u64 kill_cgroup_id = 0;
const volatile __u32 decline = 0;
const volatile __u32 return_error = 0;

SEC("syscall")
int fixed_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	if (return_error)
		return mmpolicy_error(-EINVAL, "return_error is set (victim_pid %u)", victim_pid);
	if (decline)
		return MMPOLICY_NO_DECISION;
	if (kill_cgroup_id) {
		ctx->flags = MMPOLICY_OOM_KILL_CGROUP;
		ctx->victim_cgroup_id = kill_cgroup_id;
	}
	ctx->victim_tgid = victim_pid;
	ctx->score = 1;
	ctx->reason = 1001;
	ctx->candidates = 1;
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)fixed_select_victim,
	.name = "oom_fixed_victim",
};
