// SPDX-License-Identifier: GPL-2.0
/*
 * oom_growth: kill the leaker, not the biggest.
 *
 * What it does: a sensor on kmem:rss_stat (which fires whenever a process's
 * RSS counters change in its own context) keeps, per process, its current
 * footprint (file + anon + shmem + swap) and how much it grew over the
 * current and the previous window of `window_ms`. select_victim picks the
 * process in scope with the highest growth rate: the previous window's rate,
 * or the current window's growth spread over at least one whole window, so a
 * process that starts leaking now is seen at once without one burst looking
 * like a torrent. A process whose RSS did not change for a whole window is
 * not growing, whatever it did before. If nothing in scope grew by at least
 * `min_growth_kb` per second, it falls back to the largest process
 * (oom_largest's badness).
 *
 * Where it falls short: growth is only seen while a process itself faults
 * memory in; memory taken by other contexts (a driver, reclaim) is not
 * attributed. A process forked after the sensor attached is tracked from its
 * first fault; one that grew before the policy was loaded looks flat. The
 * sensor runs on every RSS change, which costs a hash update per fault batch.
 */
#include "mmpolicy/oom.bpf.h"

MMPOLICY_OOM_POINTS_FN();

/* Length of a growth window. */
const volatile __u64 window_ms = 1000;
/* Below this rate a process is not considered growing. */
const volatile __u64 min_growth_kb = 1024;

struct growth {
	__u32 mm_id; /* the tracepoint's hashed mm id: a new mm resets the record */
	__u32 _pad;
	__s64 member_bytes[NR_MM_COUNTERS];
	__s64 window_start_bytes;
	__u64 window_start_ns;
	__s64 last_rate; /* bytes per second over the previous whole window */
	__u64 last_event_ns; /* the process's latest RSS change */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32); /* tgid */
	__type(value, struct growth);
} growth_by_tgid SEC(".maps");

/* Signed bytes per second: BPF ISA v3 has no signed division. */
static __always_inline __s64 rate_per_sec(__s64 delta_bytes, __u64 elapsed_ns)
{
	__u64 magnitude = (delta_bytes < 0 ? -delta_bytes : delta_bytes) * 1000000000ULL / elapsed_ns;

	return delta_bytes < 0 ? -(__s64)magnitude : (__s64)magnitude;
}

static __always_inline __s64 total_bytes(const struct growth *g)
{
	return g->member_bytes[0] + g->member_bytes[1] + g->member_bytes[2] + g->member_bytes[3];
}

SEC("tracepoint/kmem/rss_stat")
int growth_rss_stat(struct trace_event_raw_rss_stat *tp)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 now = bpf_ktime_get_ns(), window_ns = window_ms * 1000000ULL;
	int member = tp->member;
	struct growth *g, fresh = {};

	/* Only changes made by the process itself can be attributed to it. */
	if (!tp->curr || member < 0 || member >= NR_MM_COUNTERS)
		return 0;
	g = bpf_map_lookup_elem(&growth_by_tgid, &tgid);
	if (!g || g->mm_id != tp->mm_id) {
		fresh.mm_id = tp->mm_id;
		fresh.member_bytes[member] = tp->size;
		fresh.window_start_ns = now;
		fresh.last_event_ns = now;
		bpf_map_update_elem(&growth_by_tgid, &tgid, &fresh, BPF_ANY);
		return 0;
	}
	g->member_bytes[member] = tp->size;
	g->last_event_ns = now;
	if (now - g->window_start_ns >= window_ns) {
		__s64 total = total_bytes(g);

		g->last_rate = rate_per_sec(total - g->window_start_bytes, now - g->window_start_ns);
		g->window_start_bytes = total;
		g->window_start_ns = now;
	}
	return 0;
}

/*
 * Bytes per second @tgid is growing at, as select_victim sees it at @now: the
 * previous whole window's rate or the current window's growth spread over at
 * least one window, whichever is higher. 0 for a process never seen, or one
 * whose RSS has not changed for a whole window: it is not growing now, however
 * much it grew before.
 */
__noinline __s64 growth_rate(__u32 tgid, __u64 now)
{
	__u64 window_ns = window_ms * 1000000ULL, elapsed;
	struct growth *g = bpf_map_lookup_elem(&growth_by_tgid, &tgid);
	__s64 current;

	if (!g || now - g->last_event_ns > window_ns)
		return 0;
	elapsed = now > g->window_start_ns ? now - g->window_start_ns : 0;
	if (elapsed < window_ns)
		elapsed = window_ns;
	current = rate_per_sec(total_bytes(g) - g->window_start_bytes, elapsed);
	return current > g->last_rate ? current : g->last_rate;
}

SEC("syscall")
int growth_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	struct mmpolicy_oom_walk walk = mmpolicy_oom_walk_of(ctx);
	__u64 now = bpf_ktime_get_ns();
	__s64 best_rate = (__s64)min_growth_kb * 1024 - 1;
	long best_points = 0;
	__u32 rate_tgid = 0, largest_tgid = 0, candidates = 0;
	struct task_struct *task;
	struct bpf_iter_task it;

	bpf_rcu_read_lock();
	mmpolicy_for_each_process(task, it) {
		long points = mmpolicy_oom_points(task, &walk);
		__s64 rate;

		if (points == MMPOLICY_NOT_CANDIDATE)
			continue;
		candidates++;
		rate = growth_rate(task->tgid, now);
		if (rate > best_rate) {
			best_rate = rate;
			rate_tgid = task->tgid;
		}
		if (points > best_points) {
			best_points = points;
			largest_tgid = task->tgid;
		}
	}
	bpf_iter_task_destroy(&it);
	bpf_rcu_read_unlock();

	ctx->candidates = candidates;
	if (rate_tgid) {
		ctx->victim_tgid = rate_tgid;
		ctx->score = best_rate;
		ctx->reason = MMPOLICY_OOM_REASON_FASTEST_GROWTH;
		return MMPOLICY_DECIDED;
	}
	if (largest_tgid) {
		ctx->victim_tgid = largest_tgid;
		ctx->score = best_points;
		ctx->reason = MMPOLICY_OOM_REASON_LARGEST;
		return MMPOLICY_DECIDED;
	}
	return MMPOLICY_NO_DECISION;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)growth_select_victim,
	.name = "oom_growth",
};
