// SPDX-License-Identifier: GPL-2.0
/*
 * tier_demote_all: a deliberately bad tiering policy for tests. Every plan
 * demotes every region of every tracked process, hot or not, up to the
 * plan's bound: the hot set goes out and comes straight back, which the
 * watchdog's refault guard must catch.
 */
#include "mmpolicy/tiering.bpf.h"

struct choice {
	__u32 tgid;
	__u32 _pad;
	__u64 region;
};
struct choice chosen[MMPOLICY_TIER_MAX_ACTIONS];

struct walk {
	__u32 limit;
	__u32 count;
};

static long visit(struct bpf_map *map, struct mmpolicy_tier_region_key *key, struct mmpolicy_tier_region *r,
		  struct walk *w)
{
	__u32 i = w->count;

	if (i >= w->limit || i >= MMPOLICY_TIER_MAX_ACTIONS)
		return 1;
	chosen[i].tgid = key->tgid;
	chosen[i].region = key->region;
	w->count = i + 1;
	return 0;
}

SEC("syscall")
int demote_all_plan(struct mmpolicy_tiering_ctx *ctx)
{
	struct walk w = { .limit = ctx->max_demote_bytes / MMPOLICY_TIER_REGION_BYTES };
	__u32 i;

	bpf_for_each_map_elem(&tier_regions, visit, &w, 0);
	for (i = 0; i < MMPOLICY_TIER_MAX_ACTIONS && i < w.count; i++)
		mmpolicy_tier_add_region(ctx, chosen[i].tgid, MMPOLICY_TIER_DEMOTE, chosen[i].region);
	return ctx->nr_actions ? MMPOLICY_DECIDED : MMPOLICY_NO_DECISION;
}

MMPOLICY_OPS(tiering) = {
	.plan = (void *)demote_all_plan,
	.name = "tier_demote_all",
};
