// SPDX-License-Identifier: GPL-2.0
/*
 * tier_cold: move each process's cold 2 MiB regions to the slow tier,
 * learning which are cold by trying.
 *
 * What it does: there are no access bits on this kernel (no idle page
 * tracking, soft-dirty or MGLRU), and memory that stays resident does not
 * fault, so a region's hotness can only be learned by moving it out and
 * watching whether it comes back. Every plan it walks the sensors' regions
 * (tier_regions: every region of every process in the scope, with its fault
 * and swap-in counts and what the daemon demoted there) and demotes a batch
 * of candidates: regions without a fault for cold_after_ms that were never
 * demoted, or that came back but have been quiet again for cold_after_ms
 * doubled per earlier demotion (exponential back-off on hot regions). The
 * batch starts at probe_regions and doubles after each plan in which nothing
 * it demoted came back, and falls back to probe_regions when something did:
 * a sample first, then the rest of what stays quiet. Regions that came back
 * max_demotions times are left resident for good. With skip_incompressible
 * (the default), a region the daemon sampled as incompressible
 * (MMPOLICY_TIER_REGION_INCOMPRESSIBLE: zram would store its pages whole)
 * is never chosen, so the batch goes to regions whose demotion frees
 * memory. The daemon samples a region only when a plan first demotes it
 * (and leaves it resident under [tiering] incompressible = "skip"), so
 * each incompressible region costs one pick of a batch, once.
 *
 * Where it falls short: its probes cost refaults (a hot region comes back 2
 * MiB at a time, once per back-off step); a region hot only now and then
 * (a nightly job's data) is moved out between uses and refaults each time;
 * it looks at regions, not pages, so a region with one hot page stays in;
 * compressibility is a yes/no per region from a few sampled pages (a region
 * half random and half zeros goes out, and saves half), and a region's flag
 * is from when it was last picked, not now; and the region map holds
 * 65,536 regions (128 GiB) of tracked memory.
 */
#include "mmpolicy/tiering.bpf.h"

/* A region with no fault for this long is a candidate. */
const volatile __u64 cold_after_ms = 4000;
/* The first batch of a plan, in regions; it doubles while probes stay out. */
const volatile __u32 probe_regions = 32;
/* A region that came back this many times stays resident. */
const volatile __u32 max_demotions = 4;
/* Never pick a region flagged MMPOLICY_TIER_REGION_INCOMPRESSIBLE (0: pick it like any other). */
const volatile __u32 skip_incompressible = 1;

/* Across plans: the batch size and the refaults seen so far. */
__u32 batch;
__u64 refaults_seen;

/* Chosen regions of one plan (filled by the map walk, then copied into ctx). */
struct choice {
	__u32 tgid;
	__u32 _pad;
	__u64 region;
};
struct choice chosen[MMPOLICY_TIER_MAX_ACTIONS];

struct walk {
	__u64 now;
	__u64 cold_after_ns;
	__u64 refaults; /* swap-ins in demoted regions, all regions together */
	__u32 limit; /* regions to choose at most */
	__u32 count; /* regions chosen */
};

static long visit(struct bpf_map *map, struct mmpolicy_tier_region_key *key, struct mmpolicy_tier_region *r,
		  struct walk *w)
{
	__u64 quiet_for, needed;
	__u32 i;

	w->refaults += r->refaults;
	/* Out, and it stayed out. */
	if (r->demoted_ns && !r->refaults)
		return 0;
	/* Came back too often: hot. */
	if (r->demotions >= max_demotions)
		return 0;
	/* zram would keep it whole: moving it frees nothing. */
	if (skip_incompressible && (r->flags & MMPOLICY_TIER_REGION_INCOMPRESSIBLE))
		return 0;
	needed = w->cold_after_ns << (r->demotions < 8 ? r->demotions : 8);
	quiet_for = w->now > r->last_fault_ns ? w->now - r->last_fault_ns : 0;
	if (quiet_for < needed)
		return 0;
	i = w->count;
	if (i >= w->limit || i >= MMPOLICY_TIER_MAX_ACTIONS)
		return 1; /* enough: stop the walk */
	chosen[i].tgid = key->tgid;
	chosen[i].region = key->region;
	w->count = i + 1;
	return 0;
}

SEC("syscall")
int tier_cold_plan(struct mmpolicy_tiering_ctx *ctx)
{
	struct walk w = {
		.now = ctx->now_ns,
		.cold_after_ns = cold_after_ms * 1000000ull,
	};
	__u32 limit, i;

	if (!batch)
		batch = probe_regions;
	limit = batch;
	/* No more than the daemon lets one plan move. */
	if (limit > ctx->max_demote_bytes / MMPOLICY_TIER_REGION_BYTES)
		limit = ctx->max_demote_bytes / MMPOLICY_TIER_REGION_BYTES;
	w.limit = limit;
	bpf_for_each_map_elem(&tier_regions, visit, &w, 0);

	/* Something we moved came back: start small again; else grow. */
	if (w.refaults > refaults_seen)
		batch = probe_regions;
	else if (batch < MMPOLICY_TIER_MAX_ACTIONS)
		batch *= 2;
	refaults_seen = w.refaults;

	for (i = 0; i < MMPOLICY_TIER_MAX_ACTIONS && i < w.count; i++)
		mmpolicy_tier_add_region(ctx, chosen[i].tgid, MMPOLICY_TIER_DEMOTE, chosen[i].region);
	return ctx->nr_actions ? MMPOLICY_DECIDED : MMPOLICY_NO_DECISION;
}

MMPOLICY_OPS(tiering) = {
	.plan = (void *)tier_cold_plan,
	.name = "tier_cold",
};
