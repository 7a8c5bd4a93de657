/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * mmpolicy ABI: the tiering kind.
 *
 * A tiering policy decides which memory of which process moves to the slow
 * tier (zram, zswap or disk swap) and back. Every interval (and on
 * pressure) the daemon fills the input half of struct mmpolicy_tiering_ctx
 * and runs the policy's `plan` callback with BPF_PROG_RUN; the callback
 * returns (in its tier_plan map, see below) a bounded list of actions (a process, an address range, demote /
 * mark cold / promote) and optional per-cgroup reclaim targets. The daemon
 * checks each action against the policy's scope and bounds, then carries it
 * out with process_madvise(2) (or the cgroup's own reclaim).
 *
 * What a policy knows about memory comes from the daemon's tiering sensors
 * (bpf-programs/sensors/tiering_sensors.bpf.c), whose maps every tiering
 * policy shares by name (the loader hands the sensors' maps to the policy
 * before it loads): per process (MMPOLICY_TIER_PROCS_MAP) and per 2 MiB
 * region of a process (MMPOLICY_TIER_REGIONS_MAP), faults and, separately,
 * swap-ins, and what the daemon demoted there and when. tiering.bpf.h
 * declares the maps and helpers for policies.
 *
 * Included by tiering.bpf.h (so by every tiering policy and the tiering
 * sensors) and by the Swift daemon through the CMMPolicyABI module; same
 * rules as abi_common.h.
 */
#ifndef MMPOLICY_TIERING_COMMON_H
#define MMPOLICY_TIERING_COMMON_H

#include "abi_common.h"

/* Regions are 2 MiB (a huge page): region = address >> MMPOLICY_TIER_REGION_SHIFT. */
#define MMPOLICY_TIER_REGION_SHIFT 21
#define MMPOLICY_TIER_REGION_BYTES (1ull << MMPOLICY_TIER_REGION_SHIFT)

/* The most actions and targets one plan may return. */
#define MMPOLICY_TIER_MAX_ACTIONS 64
#define MMPOLICY_TIER_MAX_TARGETS 8

/* What made the daemon ask for a plan. */
enum mmpolicy_tier_trigger {
	MMPOLICY_TIER_TRIGGER_TEST = 0, /* an explicit run: tests, benchmarks, `verify` */
	MMPOLICY_TIER_TRIGGER_PERIODIC = 1, /* the interval passed */
	MMPOLICY_TIER_TRIGGER_PRESSURE = 2, /* a PSI trigger fired */
};

/* What to do with a range of a process's memory. */
enum mmpolicy_tier_action_kind {
	MMPOLICY_TIER_DEMOTE = 1, /* page it out to the slow tier now (MADV_PAGEOUT) */
	MMPOLICY_TIER_COLD = 2, /* deactivate it: reclaim takes it first (MADV_COLD) */
	MMPOLICY_TIER_PROMOTE = 3, /* bring it back from the slow tier (MADV_WILLNEED) */
};

/* One action of a plan. */
struct mmpolicy_tier_action {
	__u32 tgid; /* the process */
	__u32 kind; /* enum mmpolicy_tier_action_kind */
	__u64 start; /* first byte (rounded down to a page by the daemon) */
	__u64 len; /* bytes; the daemon clips the range to the process's anonymous mappings */
};

/* Reclaim `bytes` from a memory cgroup in scope by the kernel's own reclaim (its LRU picks the pages). */
struct mmpolicy_tier_target {
	__u64 cgroup_id;
	__u64 bytes;
};

/* The slow tier: every active swap device together. */
struct mmpolicy_tier_state {
	__u64 swap_total_bytes;
	__u64 swap_free_bytes;
	/* zram devices in use as swap (0 when the tier is disk or zswap): */
	__u64 stored_bytes; /* data stored (orig_data_size) */
	__u64 compressed_bytes; /* what it takes once compressed (compr_data_size) */
	__u64 used_bytes; /* memory zram uses for it, overhead included (mem_used_total) */
};

struct mmpolicy_tiering_ctx {
	/* --- input, set by the daemon --- */
	__u32 abi_version; /* MMPOLICY_ABI_VERSION */
	__u32 trigger; /* enum mmpolicy_tier_trigger */
	struct mmpolicy_scope scope;
	__u64 now_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 interval_ns; /* since the previous plan (the manifest's interval on the first) */
	/* memory pressure: PSI (the scope's on cgroup v2, else the system's), % x 100 */
	__u32 psi_some_avg10; /* e.g. 1234 = 12.34 % */
	__u32 psi_full_avg10;
	__u64 psi_some_total_delta_us; /* stall time since the previous plan */
	__u64 psi_full_total_delta_us;
	__u64 mem_total_bytes;
	__u64 mem_available_bytes;
	__u64 scope_usage_bytes; /* the scope's memory use (system: total - available) */
	__u64 scope_limit_bytes; /* the scope's limit (0: none) */
	struct mmpolicy_tier_state tier;
	/* bounds from the manifest; actions beyond them are refused */
	__u64 max_demote_bytes; /* per plan, all processes together */
	__u64 max_promote_bytes;
	__u32 daemon_tgid; /* never a target */
	__u32 _pad0;
	/* --- output, set by plan --- */
	__u32 nr_actions; /* entries of the plan map's actions in use, <= MMPOLICY_TIER_MAX_ACTIONS */
	__u32 nr_targets; /* entries of its targets in use, <= MMPOLICY_TIER_MAX_TARGETS */
};

/*
 * The plan's lists: element 0 of the policy's own single-entry array map
 * MMPOLICY_TIER_PLAN_MAP (`tier_plan`, declared by tiering.bpf.h). Not in the
 * context because a BPF program may not index its context with a variable
 * ("dereference of modified ctx ptr"); a map value it may. The daemon reads
 * the first nr_actions / nr_targets entries after each run.
 */
#define MMPOLICY_TIER_PLAN_MAP "tier_plan"

struct mmpolicy_tier_plan {
	struct mmpolicy_tier_action actions[MMPOLICY_TIER_MAX_ACTIONS];
	struct mmpolicy_tier_target targets[MMPOLICY_TIER_MAX_TARGETS];
};

/* The tiering ops table: bind each slot to a SEC("syscall") program. */
struct mmpolicy_tiering_ops {
	void *plan; /* required: int (struct mmpolicy_tiering_ctx *) */
	char name[MMPOLICY_NAME_LEN];
};

/* ---- the sensors' maps, shared with every tiering policy ---- */

/*
 * Per process: MMPOLICY_TIER_PROCS_MAP, a BPF_MAP_TYPE_HASH of
 * MMPOLICY_TIER_MAX_PROCS entries keyed by tgid (__u32). The daemon inserts
 * an entry (zeroed, cgroup_id set) for each process in a tiering scope and
 * deletes it when the process leaves; the sensors count only processes that
 * have an entry, so a fault anywhere else costs one hash lookup.
 */
#define MMPOLICY_TIER_PROCS_MAP "tier_procs"
#define MMPOLICY_TIER_MAX_PROCS 4096

struct mmpolicy_tier_proc {
	__u64 cgroup_id; /* set by the daemon: the memory cgroup the process is in */
	__u64 faults; /* user page faults (user mode), first touches and swap-ins alike */
	/*
	 * swap-ins in the process's threads (a read of swap-backed memory from
	 * the slow tier, once per fault); also those taken in kernel mode (a
	 * write(2) from swapped-out memory), which no region gets
	 */
	__u64 swapins;
	__u64 anon_pages; /* set by the daemon each interval: resident anonymous pages (RssAnon) */
	__u64 swap_pages; /* set by the daemon each interval: swapped-out pages (VmSwap) */
	__u64 demoted_bytes; /* set by the daemon: bytes it paged out, in total */
	__u64 refaults; /* swap-ins in regions the daemon demoted (the regions' refaults, summed) */
	__u64 last_fault_ns; /* bpf_ktime_get_ns() of the last user fault */
};

/*
 * Per region of a tracked process: MMPOLICY_TIER_REGIONS_MAP, a
 * BPF_MAP_TYPE_LRU_HASH of MMPOLICY_TIER_MAX_REGIONS entries. Made by the
 * sensors on a region's first fault, evicted least recently used when full
 * (4 GiB of faulting memory per 2,048 entries; a region without entry has not
 * faulted since it was evicted: cold).
 */
#define MMPOLICY_TIER_REGIONS_MAP "tier_regions"
#define MMPOLICY_TIER_MAX_REGIONS 65536

struct mmpolicy_tier_region_key {
	__u32 tgid;
	__u32 _pad;
	__u64 region; /* address >> MMPOLICY_TIER_REGION_SHIFT */
};

/* Region flags, set by the daemon. */
#define MMPOLICY_TIER_REGION_INCOMPRESSIBLE (1u << 0) /* sampled: compressed_permille > MMPOLICY_TIER_INCOMPRESSIBLE_PERMILLE */

/*
 * A region is incompressible when zram would keep more than this many
 * thousandths of it. zram stores a page whose compressed size reaches
 * zsmalloc's huge class (3,625 of 4,096 bytes here: 885 per mille) whole,
 * so a page past that line frees nothing; a region whose sampled pages
 * average past it frees less than the least a page that zram does compress
 * frees. compressed_permille already counts whole-stored pages at 1000.
 */
#define MMPOLICY_TIER_INCOMPRESSIBLE_PERMILLE 885

struct mmpolicy_tier_region {
	__u64 faults; /* user page faults in the region */
	__u64 swapins; /* of which swap-ins (reads of swap-backed memory from the slow tier) */
	__u64 first_fault_ns; /* when the sensors made the entry; 0 if the daemon did (seeded, demoted) */
	__u64 last_fault_ns; /* the last fault; for a seeded entry, when it was seeded */
	__u64 demoted_ns; /* set by the daemon when it paged the region out; 0 = never */
	__u64 demotions; /* set by the daemon: how many times */
	__u64 refaults; /* swap-ins since the last demotion (sensors; the daemon zeroes it on demotion) */
	__u32 flags; /* MMPOLICY_TIER_REGION_* */
	/*
	 * set by the daemon before it demotes the region (and again when it
	 * demotes it a while later): what zram would keep of the sampled pages
	 * per 1000 bytes, a page past zram's huge-page line counted whole;
	 * 0 = not sampled
	 */
	__u32 compressed_permille;
};

/*
 * The daemon's writes into the sensors' maps. The sensors count with atomic
 * adds into map values in place; a write from user space
 * (bpf_map_update_elem) would replace the whole value and lose what they add
 * meanwhile. So the daemon writes through the sensors' own SEC("syscall")
 * program `tier_write` (MMPOLICY_TIER_WRITE_PROG), run with BPF_PROG_RUN on a
 * struct mmpolicy_tier_write: it changes only the fields its op names, in
 * place. Only the sensors object has the program; policies only read.
 */
#define MMPOLICY_TIER_WRITE_PROG "tier_write"

enum mmpolicy_tier_write_op {
	/* procs[tgid]: made zeroed with cgroup_id = value; if it exists, only cgroup_id = value */
	MMPOLICY_TIER_WRITE_TRACK = 1,
	/* procs[tgid]: anon_pages = value, swap_pages = value2 */
	MMPOLICY_TIER_WRITE_RESIDENCY = 2,
	/* procs[tgid]: demoted_bytes += value */
	MMPOLICY_TIER_WRITE_ADD_DEMOTED = 3,
	/* regions[tgid, region]: demoted_ns = value, demotions += 1, refaults = 0 (made if missing) */
	MMPOLICY_TIER_WRITE_DEMOTED = 4,
	/* regions[tgid, region]: made with last_fault_ns = value if missing, else left alone */
	MMPOLICY_TIER_WRITE_SEED = 5,
	/*
	 * regions[tgid, region]: compressed_permille = value, and
	 * MMPOLICY_TIER_REGION_INCOMPRESSIBLE set if value > MMPOLICY_TIER_INCOMPRESSIBLE_PERMILLE,
	 * else cleared (made if missing)
	 */
	MMPOLICY_TIER_WRITE_COMPRESSIBILITY = 6,
};

struct mmpolicy_tier_write {
	__u32 op; /* enum mmpolicy_tier_write_op */
	__u32 tgid;
	__u64 region; /* for region ops: address >> MMPOLICY_TIER_REGION_SHIFT */
	__u64 value;
	__u64 value2;
	/*
	 * Output: 0 done; 1 nothing to do (SEED: the region had an entry);
	 * -ENOENT the process is not tracked (process ops); -E2BIG the procs map
	 * is full (TRACK); -EINVAL unknown op; another -errno from the map.
	 */
	__s32 result;
	__u32 _pad;
};

#endif /* MMPOLICY_TIERING_COMMON_H */
