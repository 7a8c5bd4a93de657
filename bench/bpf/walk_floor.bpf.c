// SPDX-License-Identifier: GPL-2.0
/*
 * walk_floor: the cost floor of any policy that walks every process.
 *
 * Benchmark-only. select_victim iterates every process with the task
 * iterator kfuncs and reads nothing but the pid, so its run time is what the
 * kernel's iterator alone costs; a real policy's time minus this is what its
 * own per-task work costs. (The return value is constant on purpose: making
 * it depend on a loop-carried counter stops the verifier from converging.)
 */
#include "mmpolicy/oom.bpf.h"

SEC("syscall")
int walk_floor_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	struct task_struct *task;
	struct bpf_iter_task it;
	__u32 last = 0;

	bpf_rcu_read_lock();
	mmpolicy_for_each_process(task, it)
		last = task->tgid;
	bpf_iter_task_destroy(&it);
	bpf_rcu_read_unlock();
	ctx->victim_tgid = last;
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)walk_floor_select_victim,
	.name = "walk_floor",
};
