/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The tiering kind's BPF header: its ABI (tiering_common.h), its kind id for
 * MMPOLICY_OPS(tiering), the sensors' shared maps, and small helpers for
 * writing a plan.
 *
 * Who includes it: tiering policies (bpf-programs/tier_*.bpf.c), tiering
 * test fixtures, and the daemon's tiering sensors
 * (bpf-programs/sensors/tiering_sensors.bpf.c), as their only mmpolicy
 * include. It includes common.bpf.h. Other kinds do not include it.
 *
 * The maps tier_procs and tier_regions are defined here, __weak, with the
 * exact definition the sensors use: the daemon loads the sensors once and
 * hands their maps to every tiering policy before it loads
 * (bpf_map__reuse_fd), so a policy reads what the sensors counted, and what
 * the daemon wrote there about its demotions. A policy must not change
 * these definitions; it may add maps of its own.
 */
#ifndef MMPOLICY_TIERING_BPF_H
#define MMPOLICY_TIERING_BPF_H

#include "common.bpf.h"
#include "tiering_common.h"

#define MMPOLICY_KIND_tiering_ID MMPOLICY_KIND_TIERING

/* Per tracked process (the daemon inserts and deletes entries; see tiering_common.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MMPOLICY_TIER_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct mmpolicy_tier_proc);
} tier_procs SEC(".maps") __weak;

/* Per 2 MiB region of a tracked process that has faulted (see tiering_common.h). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MMPOLICY_TIER_MAX_REGIONS);
	__type(key, struct mmpolicy_tier_region_key);
	__type(value, struct mmpolicy_tier_region);
} tier_regions SEC(".maps") __weak;

/* This policy's plan lists (its own map: not shared), see tiering_common.h. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mmpolicy_tier_plan);
} tier_plan SEC(".maps") __weak;

/* The region an address falls in. */
static __always_inline __u64 mmpolicy_tier_region_of(__u64 address)
{
	return address >> MMPOLICY_TIER_REGION_SHIFT;
}

/*
 * Appends an action to @ctx's plan; false if the plan is full
 * (MMPOLICY_TIER_MAX_ACTIONS). The daemon checks every action anyway: a
 * process outside the scope, a range outside its anonymous mappings or past
 * the plan's byte bounds is refused or trimmed, not carried out as asked.
 */
static __always_inline bool mmpolicy_tier_add_action(struct mmpolicy_tiering_ctx *ctx, __u32 tgid, __u32 kind,
						     __u64 start, __u64 len)
{
	struct mmpolicy_tier_plan *plan;
	__u32 zero = 0, i = ctx->nr_actions;

	if (i >= MMPOLICY_TIER_MAX_ACTIONS)
		return false;
	plan = bpf_map_lookup_elem(&tier_plan, &zero);
	if (!plan)
		return false;
	plan->actions[i].tgid = tgid;
	plan->actions[i].kind = kind;
	plan->actions[i].start = start;
	plan->actions[i].len = len;
	ctx->nr_actions = i + 1;
	return true;
}

/* Appends a whole region (2 MiB) of @tgid to @ctx's plan. */
static __always_inline bool mmpolicy_tier_add_region(struct mmpolicy_tiering_ctx *ctx, __u32 tgid, __u32 kind,
						     __u64 region)
{
	return mmpolicy_tier_add_action(ctx, tgid, kind, region << MMPOLICY_TIER_REGION_SHIFT,
					MMPOLICY_TIER_REGION_BYTES);
}

/*
 * Appends a reclaim target (the kernel's own reclaim of memory cgroup
 * @cgroup_id, @bytes); false if the plan has MMPOLICY_TIER_MAX_TARGETS.
 * @cgroup_id is the group's id as BPF sees it (its directory's inode number;
 * ctx->scope.cgroup_id for the scope's own). The daemon refuses a group
 * outside the scope or reaching a [protect] cgroup, and takes the bytes out
 * of the plan's demote bound (v2: memory.reclaim; v1: a brief, journaled
 * lowering of memory.limit_in_bytes; see docs/kinds/tiering.md).
 */
static __always_inline bool mmpolicy_tier_add_target(struct mmpolicy_tiering_ctx *ctx, __u64 cgroup_id, __u64 bytes)
{
	struct mmpolicy_tier_plan *plan;
	__u32 zero = 0, i = ctx->nr_targets;

	if (i >= MMPOLICY_TIER_MAX_TARGETS)
		return false;
	plan = bpf_map_lookup_elem(&tier_plan, &zero);
	if (!plan)
		return false;
	plan->targets[i].cgroup_id = cgroup_id;
	plan->targets[i].bytes = bytes;
	ctx->nr_targets = i + 1;
	return true;
}

#endif /* MMPOLICY_TIERING_BPF_H */
