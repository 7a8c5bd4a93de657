// SPDX-License-Identifier: GPL-2.0
/*
 * oom_largest: the kernel's OOM victim selection, as an mmpolicy.
 *
 * What it does: walks every process in the scope with the task-iterator
 * kfuncs and picks the one with the highest oom_badness(): resident + swapped
 * pages + page tables, shifted by oom_score_adj per mille of the scope's
 * limit. Kernel threads, init, the daemon and oom_score_adj=-1000 tasks are
 * never candidates. It is the baseline the other oom policies are judged
 * against: if it disagrees with the kernel's own choice, the ABI is wrong.
 *
 * Where it falls short: like the kernel, it kills the biggest process, which
 * is often the important database rather than the small process leaking into
 * it (see oom_growth). It reads the folded part of the percpu RSS counters,
 * so tasks within a few per-CPU batches of each other can tie in the wrong
 * order, and it does not count a process's page cache or kernel memory.
 */
#include "mmpolicy/oom.bpf.h"

MMPOLICY_OOM_POINTS_FN();

/* Processes whose badness is at most this many pages are never picked. */
const volatile __s64 min_points = 0;

SEC("syscall")
int largest_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	struct mmpolicy_oom_walk walk = mmpolicy_oom_walk_of(ctx);
	long best_points = min_points;
	__u32 best_tgid = 0, candidates = 0;
	struct task_struct *task;
	struct bpf_iter_task it;

	bpf_rcu_read_lock();
	mmpolicy_for_each_process(task, it) {
		long points = mmpolicy_oom_points(task, &walk);

		if (points == MMPOLICY_NOT_CANDIDATE)
			continue;
		candidates++;
		if (points > best_points) {
			best_points = points;
			best_tgid = task->tgid;
		}
	}
	bpf_iter_task_destroy(&it);
	bpf_rcu_read_unlock();

	ctx->candidates = candidates;
	if (!best_tgid)
		return MMPOLICY_NO_DECISION;
	ctx->victim_tgid = best_tgid;
	ctx->score = best_points;
	ctx->reason = MMPOLICY_OOM_REASON_LARGEST;
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)largest_select_victim,
	.name = "oom_largest",
};
