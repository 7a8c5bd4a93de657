/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The kind-agnostic prelude of every mmpolicy BPF object: kernel types,
 * libbpf helpers, errno values, the shared ABI (abi_common.h), the license,
 * MMPOLICY_OPS(), kfunc declarations, scope membership, task walking and
 * mmpolicy_error().
 *
 * Who includes it: every kind's BPF header (oom.bpf.h, ...) and sensor.bpf.h
 * include it first; a policy includes its kind's header, not this one. Objects
 * that are neither policies nor sensors (benchmark and test helpers) may
 * include it directly.
 *
 * Everything here is a macro, a declaration or `static`, except two globals
 * every object has once: LICENSE and the __weak map mmpolicy_exit. No
 * function here is global (see __mmpolicy_arg_trusted).
 */
#ifndef MMPOLICY_COMMON_BPF_H
#define MMPOLICY_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
/* errno values only (vmlinux.h has no macros); arch-independent, no libc. */
#include <asm-generic/errno.h>

#include "abi_common.h"

char LICENSE[] SEC("license") = "GPL";

/*
 * MMPOLICY_OPS(kind) = { .callback = (void *)prog, .name = "..." };
 *
 * Declares the object's one ops table, a struct mmpolicy_<kind>_ops, and its
 * header (ABI version + kind id). The kind's header supplies both: the struct,
 * and the id as `#define MMPOLICY_KIND_<kind>_ID` (a test or out-of-tree kind
 * takes an id from MMPOLICY_KIND_TEST_FIRST..LAST, see abi_common.h). The
 * loader resolves each slot through the ELF relocations of
 * MMPOLICY_OPS_SECTION, the way libbpf resolves .struct_ops.
 */
#define MMPOLICY_OPS(kind_)                                                         \
	const struct mmpolicy_header __mmpolicy_header SEC(MMPOLICY_HEADER_SECTION) = { \
		.abi_version = MMPOLICY_ABI_VERSION,                                        \
		.kind = MMPOLICY_KIND_##kind_##_ID,                                         \
	};                                                                              \
	struct mmpolicy_##kind_##_ops __mmpolicy_ops_##kind_ SEC(MMPOLICY_OPS_SECTION)

/* kfuncs (bpftool 7.1's vmlinux.h does not declare them). */
extern int bpf_iter_task_new(struct bpf_iter_task *it, struct task_struct *task,
			     unsigned int flags) __weak __ksym;
extern struct task_struct *bpf_iter_task_next(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_iter_task_destroy(struct bpf_iter_task *it) __weak __ksym;
extern void bpf_rcu_read_lock(void) __weak __ksym;
extern void bpf_rcu_read_unlock(void) __weak __ksym;

#define MMPOLICY_PAGE_SHIFT 12
#define MMPOLICY_PF_KTHREAD 0x00200000 /* include/linux/sched.h */

/*
 * A kernel-object argument of a global function that the verifier may trust
 * (kernel >= 6.8). Global functions are verified once, on their own; putting a
 * task walk's per-task body into one keeps load time flat however many
 * branches the body has (an inlined body multiplies verifier states).
 * A header must not define a global function (two objects linked together, or
 * two headers, would clash): a kind header offers such a function as a macro
 * its policies expand once, e.g. MMPOLICY_OOM_POINTS_FN() in oom.bpf.h.
 */
#define __mmpolicy_arg_trusted __attribute__((btf_decl_tag("arg:trusted")))

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

/*
 * Resident + swapped-out memory of @mm, in pages (the kernel's get_mm_rss +
 * swap entries). Like the kernel, it reads the folded part of the percpu
 * counters, which can lag the real figure by the per-CPU batches. Branch-free
 * on purpose: every branch inside a task walk multiplies the states the
 * verifier must explore.
 */
static __always_inline long mmpolicy_mm_pages(struct mm_struct *mm)
{
	return mm->rss_stat[MM_FILEPAGES].count + mm->rss_stat[MM_ANONPAGES].count +
	       mm->rss_stat[MM_SHMEMPAGES].count + mm->rss_stat[MM_SWAPENTS].count;
}

/*
 * The error report (struct mmpolicy_exit_info in abi_common.h), element 0.
 * In every object that includes this prelude, used or not: libbpf 1.1 refuses
 * `static` maps ("unsupported map linkage static"), which would have let
 * clang drop it from objects that never report. So every policy can report
 * and the daemon finds the map in every policy built against this ABI (an
 * array of one 144-byte value). __weak, so that objects linked together with
 * `bpftool gen object` share one map instead of clashing.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mmpolicy_exit_info);
} mmpolicy_exit SEC(".maps") __weak;

/*
 * Records a report in mmpolicy_exit and returns @code. Use mmpolicy_error(),
 * which builds @fmt and @args. The count is bumped atomically; code, time and
 * message are plain stores, so two reports at once on two CPUs may mix (the
 * daemon reads the latest one anyway).
 */
static __always_inline int __mmpolicy_error(int code, const char *fmt, __u64 *args,
					    __u32 args_size)
{
	struct mmpolicy_exit_info *info;
	__u32 zero = 0;

	info = bpf_map_lookup_elem(&mmpolicy_exit, &zero);
	if (!info)
		return code;
	__sync_fetch_and_add(&info->count, 1);
	info->code = code;
	info->time_ns = bpf_ktime_get_ns();
	bpf_snprintf(info->message, sizeof(info->message), fmt, args, args_size);
	return code;
}

/*
 * return mmpolicy_error(-EINVAL, "scope level %u is too deep", level);
 *
 * Says why a callback or sensor failed, like sched_ext's scx_bpf_error():
 * formats @fmt with bpf_snprintf() (at most 12 arguments: integers with
 * %d/%u/%x/%ld/%lld..., kernel strings with %s; MMPOLICY_EXIT_MSG_LEN - 1
 * bytes kept) into the object's `mmpolicy_exit` map with @code, the time and
 * a count the daemon reads back. Evaluates to @code, so one line both reports
 * and returns. It does not stop anything by itself: the daemon treats the
 * returned code as a failed decision, and a sensor goes on running.
 */
#define mmpolicy_error(code, fmt, args...)                                          \
	({                                                                          \
		static const char ___fmt[] = fmt;                                   \
		unsigned long long ___param[___bpf_narg(args)];                     \
                                                                                    \
		_Pragma("GCC diagnostic push")                                      \
		_Pragma("GCC diagnostic ignored \"-Wint-conversion\"")              \
		___bpf_fill(___param, args);                                        \
		_Pragma("GCC diagnostic pop")                                       \
		__mmpolicy_error((code), ___fmt, ___param, sizeof(___param));       \
	})

#endif /* MMPOLICY_COMMON_BPF_H */
