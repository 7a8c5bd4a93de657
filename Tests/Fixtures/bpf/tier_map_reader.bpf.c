// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: a tiering policy's view of the sensors' maps.
 *
 * Exercises: the shared maps of tiering.bpf.h. The test hands this object
 * the sensors' tier_procs and tier_regions (BPFMap.reuse(fd:)) before it
 * loads, as the daemon does for every tiering policy, then runs read_region
 * with BPF_PROG_RUN: it copies what a policy would read, the process's entry
 * and one region's, into its context, so the test can compare them with what
 * the sensors counted.
 */
#include "mmpolicy/tiering.bpf.h"

struct tier_read_ctx {
	__u32 tgid; /* in */
	__u32 found; /* out: bit 0 the process has an entry, bit 1 the region has one */
	__u64 region; /* in: address >> MMPOLICY_TIER_REGION_SHIFT */
	struct mmpolicy_tier_proc proc; /* out */
	struct mmpolicy_tier_region stats; /* out */
};

SEC("syscall")
int read_region(struct tier_read_ctx *ctx)
{
	struct mmpolicy_tier_region_key key = { .tgid = ctx->tgid, .region = ctx->region };
	struct mmpolicy_tier_region *region;
	struct mmpolicy_tier_proc *proc;
	__u32 tgid = ctx->tgid, found = 0;

	proc = bpf_map_lookup_elem(&tier_procs, &tgid);
	if (proc) {
		ctx->proc = *proc;
		found |= 1;
	}
	region = bpf_map_lookup_elem(&tier_regions, &key);
	if (region) {
		ctx->stats = *region;
		found |= 2;
	}
	ctx->found = found;
	return 0;
}
