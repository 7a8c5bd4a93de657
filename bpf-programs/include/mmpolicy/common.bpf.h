/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The prelude of every mmpolicy BPF program: kernel types, libbpf helpers,
 * the ABI headers, MMPOLICY_OPS() and the helpers policies share (scope
 * membership, task walking, the kernel's OOM badness).
 */
#ifndef MMPOLICY_COMMON_BPF_H
#define MMPOLICY_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#include "abi_common.h"
#include "oom_common.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * MMPOLICY_OPS(kind) = { .callback = (void *)prog, .name = "..." };
 *
 * Declares the object's one ops table and its header (ABI version + kind).
 * The loader resolves each slot through the ELF relocations of
 * MMPOLICY_OPS_SECTION, the way libbpf resolves .struct_ops.
 */
#define MMPOLICY_OPS(kind_)                                                         \
	const struct mmpolicy_header __mmpolicy_header SEC(MMPOLICY_HEADER_SECTION) = { \
		.abi_version = MMPOLICY_ABI_VERSION,                                        \
		.kind = MMPOLICY_KIND_##kind_##_ID,                                         \
	};                                                                              \
	struct mmpolicy_##kind_##_ops __mmpolicy_ops_##kind_ SEC(MMPOLICY_OPS_SECTION)

#define MMPOLICY_KIND_oom_ID MMPOLICY_KIND_OOM
#define MMPOLICY_KIND_readahead_ID MMPOLICY_KIND_READAHEAD
#define MMPOLICY_KIND_ksm_ID MMPOLICY_KIND_KSM
#define MMPOLICY_KIND_tiering_ID MMPOLICY_KIND_TIERING
#define MMPOLICY_KIND_memnice_ID MMPOLICY_KIND_MEMNICE

/* kfuncs (bpftool 7.1's vmlinux.h does not declare them). */
extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task,
			     unsigned int flags) __weak __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_rcu_read_lock(void) __weak __ksym;
extern void bpf_rcu_read_unlock(void) __weak __ksym;

#define MMPOLICY_PAGE_SHIFT 12
#define MMPOLICY_PF_KTHREAD 0x00200000 /* include/linux/sched.h */
#define MMPOLICY_OOM_SCORE_ADJ_MIN (-1000)

/* for_each_process() for sleepable programs: walk every thread-group leader. */
#define mmpolicy_for_each_process(task, it)                                       \
	for (bpf_iter_task_new(&(it), NULL, BPF_TASK_ITER_ALL_PROCS);             \
	     ((task) = bpf_iter_task_next(&(it)));)

/* The cgroup that governs @task in @scope's hierarchy. */
static __always_inline struct cgroup *mmpolicy_task_cgroup(struct task_struct *task,
							   __u32 hierarchy)
{
	struct css_set *cset = task->cgroups;

	if (!cset)
		return NULL;
	if (hierarchy == MMPOLICY_HIERARCHY_V2)
		return cset->dfl_cgrp;
	return cset->subsys[bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id)]->cgroup;
}

/*
 * Is @task inside @scope's cgroup subtree? One comparison of the task's
 * cgroup ancestor at the scope's depth (cgroup->ancestors[]), no loop, so the
 * verifier's cost stays flat inside a task walk. Call under bpf_rcu_read_lock().
 */
static __always_inline bool mmpolicy_task_in_scope(struct task_struct *task,
						   const struct mmpolicy_scope *scope)
{
	struct cgroup *cgrp, *ancestor = NULL;
	__u64 slot;

	if (scope->hierarchy == MMPOLICY_HIERARCHY_SYSTEM)
		return true;
	cgrp = mmpolicy_task_cgroup(task, scope->hierarchy);
	if (!cgrp || cgrp->level < (int)scope->level)
		return false;
	slot = (__u64)cgrp + bpf_core_field_offset(struct cgroup, ancestors) +
	       (__u64)scope->level * sizeof(struct cgroup *);
	if (bpf_probe_read_kernel(&ancestor, sizeof(ancestor), (void *)slot) || !ancestor)
		return false;
	return BPF_CORE_READ(ancestor, kn, id) == scope->cgroup_id;
}

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
 * Resident + swapped-out memory of @mm, in pages (the kernel's get_mm_rss +
 * swap entries). Like the kernel, it reads the folded part of the percpu
 * counters. Branch-free on purpose: every branch inside a task walk multiplies
 * the states the verifier must explore.
 */
static __always_inline long mmpolicy_mm_pages(struct mm_struct *mm)
{
	return mm->rss_stat[MM_FILEPAGES].count + mm->rss_stat[MM_ANONPAGES].count +
	       mm->rss_stat[MM_SHMEMPAGES].count + mm->rss_stat[MM_SWAPENTS].count;
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

/*
 * A kernel-object argument of a global function that the verifier may trust
 * (kernel >= 6.8). Global functions are verified once, on their own; putting a
 * task walk's per-task body into one keeps load time flat however many
 * branches the body has (an inlined body multiplies verifier states).
 */
#define __mmpolicy_arg_trusted __attribute__((btf_decl_tag("arg:trusted")))

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
 * @task's badness if it is an OOM candidate of @w (killable, inside the
 * scope), else MMPOLICY_NOT_CANDIDATE. Call it from inside
 * mmpolicy_for_each_process() under bpf_rcu_read_lock().
 */
__noinline long mmpolicy_oom_points(struct task_struct *task __mmpolicy_arg_trusted,
				    const struct mmpolicy_oom_walk *w)
{
	if (!task || !w)
		return MMPOLICY_NOT_CANDIDATE;
	if (mmpolicy_oom_unkillable(task, w->daemon_tgid) || !mmpolicy_task_in_scope(task, &w->scope))
		return MMPOLICY_NOT_CANDIDATE;
	return mmpolicy_oom_badness(task, task->mm, w->total_pages);
}

#endif /* MMPOLICY_COMMON_BPF_H */
