/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * mmpolicy ABI: the part every policy kind shares.
 *
 * This header is compiled twice: into BPF objects (after vmlinux.h, through
 * common.bpf.h) and into the Swift daemon (through the CMMPolicyABI module,
 * after <linux/types.h>). It must therefore use only __u8..__u64/__s64 and
 * explicit padding, so that both sides see the same layout. Each struct has a
 * size check in Sources/CMMPolicyABI/abi_layout.c.
 *
 * Bump MMPOLICY_ABI_VERSION on any incompatible change to any *_common.h.
 */
#ifndef MMPOLICY_ABI_COMMON_H
#define MMPOLICY_ABI_COMMON_H

#define MMPOLICY_ABI_VERSION 1

/* ELF sections the loader reads; libbpf skips both. */
#define MMPOLICY_HEADER_SECTION ".mmpolicy.header"
#define MMPOLICY_OPS_SECTION ".mmpolicy.ops"

/* Longest policy name in an ops table, NUL included. */
#define MMPOLICY_NAME_LEN 32

enum mmpolicy_kind {
	MMPOLICY_KIND_OOM = 1,
	MMPOLICY_KIND_READAHEAD = 2,
	MMPOLICY_KIND_KSM = 3,
	MMPOLICY_KIND_TIERING = 4,
	MMPOLICY_KIND_MEMNICE = 5,
};

/* Written once per object by MMPOLICY_OPS(): which ABI and kind it targets. */
struct mmpolicy_header {
	__u32 abi_version;
	__u32 kind; /* enum mmpolicy_kind */
};

/* Which cgroup hierarchy a scope's cgroup id refers to. */
enum mmpolicy_hierarchy {
	MMPOLICY_HIERARCHY_SYSTEM = 0, /* no cgroup: every task is in scope */
	MMPOLICY_HIERARCHY_V1_MEMORY = 1, /* cgroup v1 memory controller */
	MMPOLICY_HIERARCHY_V2 = 2, /* the unified (v2) hierarchy */
};

/*
 * Where a policy applies: a cgroup subtree (or the whole system). cgroup_id
 * is the cgroup directory's inode number (kernfs id); level its depth below
 * the hierarchy's root (root = 0).
 */
struct mmpolicy_scope {
	__u64 cgroup_id;
	__u32 hierarchy; /* enum mmpolicy_hierarchy */
	__u32 level;
};

/* What a callback returns (its BPF program's return value). */
enum mmpolicy_status {
	MMPOLICY_DECIDED = 0, /* the decision fields of the context are set */
	MMPOLICY_NO_DECISION = 1, /* the policy declines; the daemon falls back */
	/*
	 * Any other return value (by convention a negative errno) means the
	 * callback failed: the daemon falls back and counts a decision error
	 * against the policy (a watchdog guard ejects a policy that keeps failing).
	 */
};

#endif /* MMPOLICY_ABI_COMMON_H */
