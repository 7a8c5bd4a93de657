// SPDX-License-Identifier: GPL-2.0
/*
 * oom_sensors: wake the daemon the moment the kernel starts to struggle.
 *
 * What it does: writes a struct mmpolicy_sensor_event into the ring buffer
 * `events` when
 *   - a task enters direct reclaim (vmscan:mm_vmscan_direct_reclaim_begin),
 *   - an allocation wakes kswapd (vmscan:mm_vmscan_wakeup_kswapd),
 *   - a task enters memcg reclaim (vmscan:mm_vmscan_memcg_reclaim_begin),
 *     tagged with that task's memory cgroup,
 *   - RSS, summed over every process, grew by the budget user space armed in
 *     `sensor_config` (kmem:rss_stat; one event, then it disarms),
 *   - the kernel OOM killer marks a victim (tp_btf/mark_victim, whose typed
 *     argument is the victim task, so its memory cgroup can be read).
 * The three reclaim events are rate-limited: at most one per type every
 * `min_interval_ns`, so a reclaim storm costs user space one wake-up per
 * interval.
 *
 * Where it falls short: the memcg reclaim tracepoint does not say which memcg
 * is reclaimed, so the event names the cgroup of the task that triggered it;
 * that is an ancestor's limit being hit when the limit is higher up, and the
 * writer's cgroup for reclaim forced through memory.reclaim or a lowered
 * limit. The rate limit is per type, not per cgroup: reclaim in one memcg
 * hides reclaim in another within the interval. RSS growth is read from
 * rss_stat, which reports the folded part of per-CPU counters, so growth is
 * seen in batches and shrinkage is ignored (the budget measures allocation,
 * not net use); the first change of a counter seen for the first time is not
 * counted. Page cache that no process maps is not RSS and is not counted.
 */
#include "mmpolicy/sensor.bpf.h"

/* Shortest gap between two reclaim events of one type. */
const volatile __u64 min_interval_ns = 10000000;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mmpolicy_sensor_config);
} sensor_config SEC(".maps");

/* The last size rss_stat reported for one counter of one mm. */
struct rss_key {
	__u32 mm_id;
	__s32 member;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct rss_key);
	__type(value, __s64);
} rss_last SEC(".maps");

/* When each event type was last emitted (rate limit). */
__u64 last_emit_ns[MMPOLICY_SENSOR_EVENT_TYPES];

/* A reclaim event about the current task, if its type's rate limit lets it through. */
static __always_inline void reclaim_event(__u32 type, int order, bool with_memcg)
{
	if (type >= MMPOLICY_SENSOR_EVENT_TYPES ||
	    !mmpolicy_rate_limit_pass(&last_emit_ns[type], min_interval_ns, bpf_ktime_get_ns()))
		return;
	mmpolicy_sensor_emit(&events, type, NULL, order,
			     with_memcg ? mmpolicy_task_memcg_id(bpf_get_current_task_btf()) : 0);
}

SEC("tracepoint/vmscan/mm_vmscan_direct_reclaim_begin")
int sensor_direct_reclaim(struct trace_event_raw_mm_vmscan_direct_reclaim_begin_template *tp)
{
	reclaim_event(MMPOLICY_SENSOR_RECLAIM_DIRECT, tp->order, false);
	return 0;
}

SEC("tracepoint/vmscan/mm_vmscan_wakeup_kswapd")
int sensor_kswapd_wake(struct trace_event_raw_mm_vmscan_wakeup_kswapd *tp)
{
	reclaim_event(MMPOLICY_SENSOR_KSWAPD_WAKE, tp->order, false);
	return 0;
}

SEC("tracepoint/vmscan/mm_vmscan_memcg_reclaim_begin")
int sensor_memcg_reclaim(struct trace_event_raw_mm_vmscan_direct_reclaim_begin_template *tp)
{
	reclaim_event(MMPOLICY_SENSOR_MEMCG_RECLAIM, tp->order, true);
	return 0;
}

SEC("tracepoint/kmem/rss_stat")
int sensor_rss_stat(struct trace_event_raw_rss_stat *tp)
{
	struct rss_key key = { .mm_id = tp->mm_id, .member = tp->member };
	struct mmpolicy_sensor_config *cfg;
	__s64 size = tp->size, *last;
	__u64 growth, before;
	__u32 zero = 0;

	last = bpf_map_lookup_elem(&rss_last, &key);
	if (!last) {
		bpf_map_update_elem(&rss_last, &key, &size, BPF_ANY);
		return 0;
	}
	growth = size > *last ? size - *last : 0;
	*last = size;
	cfg = bpf_map_lookup_elem(&sensor_config, &zero);
	if (!growth || !cfg || !cfg->armed)
		return 0;
	before = __sync_fetch_and_add(&cfg->accumulated_bytes, growth);
	/* Exactly one change crosses the budget: it reports and disarms. */
	if (before >= cfg->budget_bytes || before + growth < cfg->budget_bytes)
		return 0;
	cfg->armed = 0;
	mmpolicy_sensor_emit(&events, MMPOLICY_SENSOR_RSS_BUDGET, NULL, before + growth,
			     mmpolicy_task_memcg_id(bpf_get_current_task_btf()));
	return 0;
}

SEC("tp_btf/mark_victim")
int BPF_PROG(sensor_mark_victim, struct task_struct *task, uid_t uid)
{
	struct mm_struct *mm = task->mm;
	__u64 rss_bytes = 0;

	if (mm) {
		/* The kernel's own figure: get_mm_counter(), the folded counters. */
		__s64 pages = BPF_CORE_READ(mm, rss_stat[MM_ANONPAGES].count) +
			      BPF_CORE_READ(mm, rss_stat[MM_FILEPAGES].count) +
			      BPF_CORE_READ(mm, rss_stat[MM_SHMEMPAGES].count);

		rss_bytes = pages > 0 ? (__u64)pages << MMPOLICY_PAGE_SHIFT : 0;
	}
	mmpolicy_sensor_emit(&events, MMPOLICY_SENSOR_MARK_VICTIM, task, rss_bytes,
			     mmpolicy_task_memcg_id(task));
	return 0;
}
