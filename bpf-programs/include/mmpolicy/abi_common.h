/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * mmpolicy ABI: the part every policy kind shares (object header, kind ids,
 * scopes, callback return values, the error report).
 *
 * Included by every kind's ABI header (<kind>_common.h), by common.bpf.h (so
 * by every BPF object) and by the Swift daemon through the CMMPolicyABI
 * module (Sources/CMMPolicyABI/include/CMMPolicyABI.h, after
 * <linux/types.h>). Being compiled on both sides, it must use only
 * __u8..__u64/__s32/__s64 and explicit padding, so that both see the same
 * layout. Each struct has a size check in Sources/CMMPolicyABI/abi_layout.c.
 *
 * Bump MMPOLICY_ABI_VERSION on any change to any *_common.h that objects
 * built before it would misread (a field moved or resized, a slot removed);
 * adding a struct, a map name, a kind or an enum value does not need a bump.
 */
#ifndef MMPOLICY_ABI_COMMON_H
#define MMPOLICY_ABI_COMMON_H

#define MMPOLICY_ABI_VERSION 1

/* ELF sections the loader reads; libbpf skips both. */
#define MMPOLICY_HEADER_SECTION ".mmpolicy.header"
#define MMPOLICY_OPS_SECTION ".mmpolicy.ops"

/* Longest policy name in an ops table, NUL included. */
#define MMPOLICY_NAME_LEN 32

/*
 * Policy kinds. Each kind's BPF header (e.g. oom.bpf.h) maps the name used in
 * MMPOLICY_OPS(name) to its id with `#define MMPOLICY_KIND_<name>_ID`.
 *
 * Ids 1..0x7fff are for in-tree kinds (6 and up: the next ones added here).
 * Ids MMPOLICY_KIND_TEST_FIRST..MMPOLICY_KIND_TEST_LAST are never given to an
 * in-tree kind: test fixtures and out-of-tree experiments take their ids
 * there, so that an object of such a kind is refused as an unknown kind
 * rather than misread as one mmpolicy runs.
 */
enum mmpolicy_kind {
	MMPOLICY_KIND_OOM = 1,
	MMPOLICY_KIND_READAHEAD = 2,
	MMPOLICY_KIND_KSM = 3,
	MMPOLICY_KIND_TIERING = 4,
	MMPOLICY_KIND_MEMNICE = 5,
	MMPOLICY_KIND_TEST_FIRST = 0x8000,
	MMPOLICY_KIND_TEST_LAST = 0xffff,
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
	 * `return mmpolicy_error(-EINVAL, "why: %d", x);` both returns the code
	 * and says why in struct mmpolicy_exit_info.
	 */
};

/*
 * Why a policy failed, as it said it (like sched_ext's exit info): element 0
 * of the single-entry array map MMPOLICY_EXIT_MAP (`mmpolicy_exit`), written
 * by mmpolicy_error() (common.bpf.h) from callbacks and sensors. Every object
 * built with common.bpf.h has the map, reporting or not (count 0); the daemon
 * reads it by name (MMPolicyCore's PolicyErrorReport) and may clear it by
 * writing zeros. Objects built before it have no such map: nothing to read.
 *
 * code, time_ns and message are the latest report's; count counts every
 * report since load (or since the daemon last cleared it). Two reports made at
 * once on two CPUs may leave one's code with the other's message; count stays
 * exact.
 */
#define MMPOLICY_EXIT_MAP "mmpolicy_exit"
#define MMPOLICY_EXIT_MSG_LEN 128

struct mmpolicy_exit_info {
	__s32 code; /* what the policy returned: a negative errno by convention */
	__u32 count; /* reports since load or the last clear; 0 = none */
	__u64 time_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) of the latest report */
	char message[MMPOLICY_EXIT_MSG_LEN]; /* NUL-terminated, truncated to fit */
};

#endif /* MMPOLICY_ABI_COMMON_H */
