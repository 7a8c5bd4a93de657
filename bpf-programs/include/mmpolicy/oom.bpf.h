/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The oom kind's BPF header: its ABI (oom_common.h), its kind id for
 * MMPOLICY_OPS(oom), and the helpers OOM victim selection shares (who may be
 * killed, the kernel's badness, the per-task candidate check).
 *
 * Who includes it: oom policies (bpf-programs/oom_*.bpf.c), oom test
 * fixtures and the oom benchmark helpers, as their only mmpolicy include. It
 * includes common.bpf.h. Other kinds do not include it.
 */
#ifndef MMPOLICY_OOM_BPF_H
#define MMPOLICY_OOM_BPF_H

#include "common.bpf.h"
#include "oom_common.h"

#define MMPOLICY_KIND_oom_ID MMPOLICY_KIND_OOM

#define MMPOLICY_OOM_SCORE_ADJ_MIN (-1000)

/* Tasks no OOM policy may pick: kernel threads, init, exiting or unkillable ones. */
static __always_inline bool mmpolicy_oom_unkillable(struct task_struct *task, __u32 daemon_tgid)
{
	if (task->flags & MMPOLICY_PF_KTHREAD)
		return true;
	if (task->tgid == 1 || task->tgid == daemon_tgid)
		return true;
	if (!task->mm)
		return true;
	return task->signal->oom_score_adj == MMPOLICY_OOM_SCORE_ADJ_MIN;
}

/*
 * The kernel's oom_badness() (mm/oom_kill.c): rss + swap + page tables, in
 * pages, shifted by oom_score_adj per mille of @total_pages. Unlike the
 * kernel it may return <= 0 for a task that a negative oom_score_adj hides;
 * callers compare against a floor of 0.
 */
static __always_inline long mmpolicy_oom_badness(struct task_struct *task, struct mm_struct *mm,
						 __u64 total_pages)
{
	return mmpolicy_mm_pages(mm) + (mm->pgtables_bytes.counter >> MMPOLICY_PAGE_SHIFT) +
	       task->signal->oom_score_adj * (long)(total_pages / 1000);
}

/* What mmpolicy_oom_points() needs to know about the OOM being resolved. */
struct mmpolicy_oom_walk {
	struct mmpolicy_scope scope;
	__u64 total_pages; /* the scope's limit in pages: scales oom_score_adj */
	__u32 daemon_tgid;
	__u32 _pad;
};

#define MMPOLICY_NOT_CANDIDATE (-0x7fffffffffffffffL - 1)

static __always_inline struct mmpolicy_oom_walk mmpolicy_oom_walk_of(const struct mmpolicy_oom_ctx *ctx)
{
	struct mmpolicy_oom_walk w = {
		.scope = ctx->scope,
		.total_pages = ctx->limit_bytes >> MMPOLICY_PAGE_SHIFT,
		.daemon_tgid = ctx->daemon_tgid,
	};
	return w;
}

/*
 * The body of mmpolicy_oom_points(): @task's badness if it is an OOM
 * candidate of @w (killable, inside the scope), else MMPOLICY_NOT_CANDIDATE.
 * Inlined into a task walk it costs the verifier one pass per walk state; call
 * it through mmpolicy_oom_points() instead.
 */
static __always_inline long __mmpolicy_oom_points(struct task_struct *task,
						  const struct mmpolicy_oom_walk *w)
{
	if (!task || !w)
		return MMPOLICY_NOT_CANDIDATE;
	if (mmpolicy_oom_unkillable(task, w->daemon_tgid) || !mmpolicy_task_in_scope(task, &w->scope))
		return MMPOLICY_NOT_CANDIDATE;
	return mmpolicy_oom_badness(task, task->mm, w->total_pages);
}

/*
 * MMPOLICY_OOM_POINTS_FN();  (once, at file scope, before the first call)
 *
 * Defines `long mmpolicy_oom_points(struct task_struct *task, const struct
 * mmpolicy_oom_walk *w)`: __mmpolicy_oom_points() as a global function, which
 * the verifier checks once, on its own, with @task trusted (arg:trusted),
 * instead of once per state of the caller's task walk. Call it from inside
 * mmpolicy_for_each_process() under bpf_rcu_read_lock().
 *
 * A macro rather than a definition here because a header must not define a
 * global: the policy's .c file expands it, so the object has exactly one.
 * Calling mmpolicy_oom_points() without expanding it fails to compile
 * ("call to undeclared function").
 */
#define MMPOLICY_OOM_POINTS_FN()                                                          \
	__noinline long mmpolicy_oom_points(struct task_struct *task __mmpolicy_arg_trusted, \
					    const struct mmpolicy_oom_walk *w)               \
	{                                                                                 \
		return __mmpolicy_oom_points(task, w);                                    \
	}

#endif /* MMPOLICY_OOM_BPF_H */
