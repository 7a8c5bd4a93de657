/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * mmpolicy ABI: the oom kind.
 *
 * An oom policy decides who dies when a scope runs out of memory. The daemon
 * fills the input half of struct mmpolicy_oom_ctx, runs select_victim with
 * BPF_PROG_RUN, checks the output half and carries it out.
 *
 * Included by oom.bpf.h (so by every oom policy) and by the Swift daemon
 * through the CMMPolicyABI module; same rules as abi_common.h.
 */
#ifndef MMPOLICY_OOM_COMMON_H
#define MMPOLICY_OOM_COMMON_H

#include "abi_common.h"

/* What made the daemon ask for a victim. */
enum mmpolicy_oom_trigger {
	MMPOLICY_OOM_TRIGGER_TEST = 0, /* an explicit run: tests, benchmarks, `verify` */
	MMPOLICY_OOM_TRIGGER_MEMCG_OOM = 1, /* the scope's memcg hit its limit */
	MMPOLICY_OOM_TRIGGER_PRESSURE = 2, /* PSI memory pressure crossed its trigger */
	MMPOLICY_OOM_TRIGGER_LOW_MEMORY = 3, /* MemAvailable/SwapFree below threshold */
};

/* Why the policy chose its victim: free for policies to extend above 1000. */
enum mmpolicy_oom_reason {
	MMPOLICY_OOM_REASON_NONE = 0,
	MMPOLICY_OOM_REASON_LARGEST = 1, /* highest badness (rss + swap + page tables) */
	MMPOLICY_OOM_REASON_FASTEST_GROWTH = 2, /* grew fastest over the recent window */
};

/* Decision flags. */
#define MMPOLICY_OOM_KILL_CGROUP (1u << 0) /* kill every task of victim_cgroup_id */

struct mmpolicy_oom_ctx {
	/* --- input, set by the daemon --- */
	__u32 abi_version; /* MMPOLICY_ABI_VERSION */
	__u32 trigger; /* enum mmpolicy_oom_trigger */
	struct mmpolicy_scope scope;
	__u64 limit_bytes; /* the scope's limit (memcg limit, or RAM + swap) */
	__u64 usage_bytes; /* the scope's usage when triggered */
	__u64 shortfall_bytes; /* how much should be freed; 0 if unknown */
	__u64 now_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) at the trigger */
	__u32 daemon_tgid; /* never a candidate */
	__u32 _pad0;
	/* --- output, set by select_victim --- */
	__u32 victim_tgid; /* process to kill; 0 = none */
	__u32 flags; /* MMPOLICY_OOM_* flags */
	__u64 victim_cgroup_id; /* with MMPOLICY_OOM_KILL_CGROUP: group to kill */
	__s64 score; /* the victim's score, in the policy's own unit */
	__u32 reason; /* enum mmpolicy_oom_reason or policy-specific */
	__u32 candidates; /* how many tasks the policy considered */
};

/* The oom ops table: bind each slot to a SEC("syscall") program. */
struct mmpolicy_oom_ops {
	void *select_victim; /* required: int (struct mmpolicy_oom_ctx *) */
	char name[MMPOLICY_NAME_LEN];
};

#endif /* MMPOLICY_OOM_COMMON_H */
