// SPDX-License-Identifier: GPL-2.0
/*
 * tier_senpai: proactive reclaim by pressure feedback, in the manner of
 * Meta's Senpai and TMO.
 *
 * What it does: it does not guess which pages are cold; it asks the
 * kernel's own reclaim (its LRU picks the pages) to take a little more of
 * the scope each plan, for as long as taking it hurts no one. "Hurts" is
 * two signals over the interval just past: the time tasks stalled on
 * memory (PSI some, in microseconds per second of the interval) and the
 * scope's refaults (swap-ins of its processes per second: anonymous
 * memory reclaim took and that was wanted again, from the sensors'
 * tier_procs). While both are under their targets it asks for
 * a reclaim target on the scope's cgroup of step_permille of the scope's
 * usage, scaled down as the worse signal nears its target, and doubles the
 * step each plan, up to max_step_permille. When either is over target it
 * backs off: nothing this plan, and the step starts small again. The
 * daemon carries the target out with memory.reclaim (cgroup v2) or a
 * brief, journaled lowering of memory.limit_in_bytes (v1).
 *
 * For the system scope there is no cgroup to reclaim: it demotes the 2 MiB
 * regions quiet the longest instead (from tier_regions, in power-of-two
 * buckets of quiet time), as many as the same controller's step, and
 * counts refaults of what the daemon demoted there.
 *
 * Where it falls short: on cgroup v1 PSI is the whole system's, so
 * another group's stalls hold it back (and its own stalls hold back
 * nobody else's policy); page cache that reclaim dropped and that is
 * read back is not counted as a refault (the sensors count swap-ins
 * only), though PSI sees the stall; it converges from below, a step at a
 * time, so a workload whose working set shrinks fast is reclaimed slowly
 * and one that grows fast meets a memcg already reclaimed to the bone
 * (the daemon keeps the v1 limit above what the group cannot give up,
 * and raises it back at once); v1 reclaim also holds the scope's
 * allocating tasks to the lowered limit for the moments it is down; it
 * looks at the scope's processes' faults, not at its page cache users; in
 * the system scope a region's quiet time is only time since its last
 * fault (or since the daemon began tracking its process), so resident hot
 * memory looks quiet until it is demoted and comes back, and a process
 * tracked a moment ago has every region equally quiet.
 */
#include "mmpolicy/tiering.bpf.h"

/* Memory stall allowed, in µs per second of the interval (1000 = 0.1 %, Senpai's default). */
const volatile __u64 stall_target_us_per_s = 1000;
/* Refaults (the scope's swap-ins) allowed per second. */
const volatile __u64 refault_target_per_s = 50;
/* The first step, per mille of the scope's usage; it doubles each plan under target. */
const volatile __u32 step_permille = 5;
/* The largest step, per mille of the scope's usage. */
const volatile __u32 max_step_permille = 50;

/* Across plans: the step, and the scope's faults at the previous plan. */
__u32 step;
__u64 faults_seen;
bool primed;
/*
 * The scope's faults now, summed by scope_faults(). A global, not a local:
 * the verifier would follow a local sum through every turn of the task walk.
 */
__u64 faults_now;

/* Sums the scope's refaults: swap-ins (reclaim) or refaults of demoted regions (demotion). */
static void scope_faults(struct mmpolicy_tiering_ctx *ctx, bool reclaiming)
{
	struct mmpolicy_scope scope = ctx->scope;
	struct mmpolicy_tier_proc *proc;
	struct task_struct *task;
	struct bpf_iter_task it;
	__u32 tgid;

	faults_now = 0;
	bpf_rcu_read_lock();
	mmpolicy_for_each_process(task, it) {
		if (!mmpolicy_task_in_scope(task, &scope))
			continue;
		tgid = task->tgid;
		proc = bpf_map_lookup_elem(&tier_procs, &tgid);
		if (proc)
			faults_now += reclaiming ? proc->swapins : proc->refaults;
	}
	bpf_iter_task_destroy(&it);
	bpf_rcu_read_unlock();
}

/* ---- the system scope: demote the regions quiet the longest ---- */

#define QUIET_BUCKETS 16 /* bucket b: quiet for [2^b, 2^(b+1)) s; 0 also holds < 1 s; 15 holds >= 2^15 s */

__u64 quiet_counts[QUIET_BUCKETS];
/*
 * The plan's cut, batch and picks, as globals: the verifier follows a
 * callback's writes to the stack value by value, and would then walk the
 * region loop below once for every count the walk could end with.
 */
__u32 cut_bucket;
__u32 regions_wanted;
__u32 picked;

struct choice {
	__u32 tgid;
	__u32 _pad;
	__u64 region;
};
struct choice chosen[MMPOLICY_TIER_MAX_ACTIONS];

struct walk {
	__u64 now;
	__u32 min_bucket; /* pick regions in this bucket or older */
	__u32 limit; /* regions to pick at most */
};

static __u32 quiet_bucket(__u64 now, struct mmpolicy_tier_region *r)
{
	__u64 seconds = now > r->last_fault_ns ? (now - r->last_fault_ns) / 1000000000ull : 0;
	__u32 b = 0;

	while (b < QUIET_BUCKETS - 1 && (seconds >> (b + 1)))
		b++;
	return b;
}

/* Out and still out: nothing to demote. */
static bool is_out(struct mmpolicy_tier_region *r)
{
	return r->demoted_ns && !r->refaults;
}

static long count_quiet(struct bpf_map *map, struct mmpolicy_tier_region_key *key, struct mmpolicy_tier_region *r,
			struct walk *w)
{
	__u32 b;

	if (is_out(r))
		return 0;
	b = quiet_bucket(w->now, r);
	if (b < QUIET_BUCKETS)
		quiet_counts[b]++;
	return 0;
}

static long pick_quiet(struct bpf_map *map, struct mmpolicy_tier_region_key *key, struct mmpolicy_tier_region *r,
		       struct walk *w)
{
	__u32 i = picked;

	if (is_out(r) || quiet_bucket(w->now, r) < w->min_bucket)
		return 0;
	if (i >= w->limit || i >= MMPOLICY_TIER_MAX_ACTIONS)
		return 1;
	chosen[i].tgid = key->tgid;
	chosen[i].region = key->region;
	picked = i + 1;
	return 0;
}


/* The oldest buckets first, down to the one that holds regions_wanted. */
static void choose_cut(void)
{
	__u64 found = 0;
	__u32 b;

	cut_bucket = 0;
	for (b = QUIET_BUCKETS; b > 0; b--) {
		found += quiet_counts[b - 1];
		if (found >= regions_wanted) {
			cut_bucket = b - 1;
			break;
		}
	}
}

static void demote_quietest(struct mmpolicy_tiering_ctx *ctx, __u64 bytes)
{
	struct walk w = { .now = ctx->now_ns };
	__u64 wanted = (bytes + MMPOLICY_TIER_REGION_BYTES - 1) / MMPOLICY_TIER_REGION_BYTES;
	__u32 b, i;

	regions_wanted = wanted < MMPOLICY_TIER_MAX_ACTIONS ? wanted : MMPOLICY_TIER_MAX_ACTIONS;
	for (b = 0; b < QUIET_BUCKETS; b++)
		quiet_counts[b] = 0;
	bpf_for_each_map_elem(&tier_regions, count_quiet, &w, 0);
	choose_cut();
	w.min_bucket = cut_bucket;
	w.limit = regions_wanted;
	picked = 0;
	bpf_for_each_map_elem(&tier_regions, pick_quiet, &w, 0);
	for (i = 0; i < MMPOLICY_TIER_MAX_ACTIONS && i < picked; i++)
		mmpolicy_tier_add_region(ctx, chosen[i].tgid, MMPOLICY_TIER_DEMOTE, chosen[i].region);
}

/* ---- the controller ---- */

/* @value per second of @interval_ms, relative to @target per second: 1000 = at target. */
static __u64 load_permille(__u64 value, __u64 interval_ms, __u64 target)
{
	return value * 1000 * 1000 / (interval_ms * (target ? target : 1));
}

SEC("syscall")
int senpai_plan(struct mmpolicy_tiering_ctx *ctx)
{
	bool reclaiming = ctx->scope.hierarchy != MMPOLICY_HIERARCHY_SYSTEM;
	__u64 interval_ms = ctx->interval_ns / 1000000, faults, refaults, stall, load, bytes;

	scope_faults(ctx, reclaiming);
	faults = faults_now;
	refaults = faults > faults_seen ? faults - faults_seen : 0;
	faults_seen = faults;
	if (!primed || !interval_ms) {
		/* The first plan has no interval behind it to judge. */
		primed = true;
		step = step_permille;
		return MMPOLICY_NO_DECISION;
	}

	stall = load_permille(ctx->psi_some_total_delta_us, interval_ms, stall_target_us_per_s);
	load = load_permille(refaults, interval_ms, refault_target_per_s);
	if (stall > load)
		load = stall;
	if (load >= 1000) {
		/* Over target: back off. */
		step = step_permille;
		return MMPOLICY_NO_DECISION;
	}

	/* Under target: a step of the usage, smaller the nearer the target. */
	bytes = ctx->scope_usage_bytes / 1000 * step / 1000 * (1000 - load);
	step = step * 2 < max_step_permille ? step * 2 : max_step_permille;
	if (!bytes)
		return MMPOLICY_NO_DECISION;
	if (reclaiming)
		mmpolicy_tier_add_target(ctx, ctx->scope.cgroup_id, bytes);
	else
		demote_quietest(ctx, bytes);
	return ctx->nr_actions || ctx->nr_targets ? MMPOLICY_DECIDED : MMPOLICY_NO_DECISION;
}

MMPOLICY_OPS(tiering) = {
	.plan = (void *)senpai_plan,
	.name = "tier_senpai",
};
