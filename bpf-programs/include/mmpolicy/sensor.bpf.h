/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The BPF side of the daemon's sensors: how a sensor writes a struct
 * mmpolicy_sensor_event (sensor_common.h) into its ring buffer, and the
 * per-type rate limit sensors share.
 *
 * Who includes it: the daemon's sensor objects (bpf-programs/sensors/),
 * of any kind, as their only mmpolicy include. It includes common.bpf.h and
 * sensor_common.h. A policy's own sensors (e.g. oom_growth's rss_stat
 * program) keep their telemetry in maps and do not need it.
 */
#ifndef MMPOLICY_SENSOR_BPF_H
#define MMPOLICY_SENSOR_BPF_H

#include "common.bpf.h"
#include "sensor_common.h"

/* Events lost to a full ring buffer, per type (see sensor_common.h). __weak: one per object. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MMPOLICY_SENSOR_EVENT_TYPES);
	__type(key, __u32);
	__type(value, __u64);
} sensor_drops SEC(".maps") __weak;

/*
 * The memory cgroup of @task: its kernfs id, i.e. the directory inode of the
 * cgroup whose memory controller governs the task (on v2, the nearest
 * ancestor with memory enabled). 0 if it cannot be read. Probe reads, so
 * @task need not be trusted.
 */
static __always_inline __u64 mmpolicy_task_memcg_id(struct task_struct *task)
{
	int memory = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);

	return BPF_CORE_READ(task, cgroups, subsys[memory], cgroup, kn, id);
}

/*
 * True for at most one caller per @interval_ns, across CPUs: the caller that
 * moves *@last_ns from its old value to @now wins. Give each event type (or
 * whatever is limited) its own slot, e.g. a global __u64 array indexed by
 * type. A caller that loses the race to another CPU is refused even if the
 * winner's event is then lost to a full ring buffer.
 */
static __always_inline bool mmpolicy_rate_limit_pass(__u64 *last_ns, __u64 interval_ns, __u64 now)
{
	__u64 last = *last_ns;

	if (now - last < interval_ns)
		return false;
	return __sync_val_compare_and_swap(last_ns, last, now) == last;
}

/*
 * Writes one event into @ringbuf (a BPF_MAP_TYPE_RINGBUF map of the sensor
 * object): reserve, fill, submit. @task is the process the event is about;
 * NULL means the current task (cheaper: no probe reads). pid is its tgid,
 * comm its name, time_ns now; @value and @cgroup_id are the type's (see
 * enum mmpolicy_sensor_event_type; mmpolicy_task_memcg_id() gives the
 * cgroup). Returns false if the ring buffer is full: the event is lost (and
 * counted in sensor_drops), the consumer is behind.
 */
static __always_inline bool mmpolicy_sensor_emit(void *ringbuf, __u32 type, struct task_struct *task,
						 __u64 value, __u64 cgroup_id)
{
	struct mmpolicy_sensor_event *e;

	e = bpf_ringbuf_reserve(ringbuf, sizeof(*e), 0);
	if (!e) {
		__u64 *drops = bpf_map_lookup_elem(&sensor_drops, &type);

		if (drops)
			__sync_fetch_and_add(drops, 1);
		return false;
	}
	e->type = type;
	e->time_ns = bpf_ktime_get_ns();
	e->value = value;
	e->cgroup_id = cgroup_id;
	if (task) {
		e->pid = BPF_CORE_READ(task, tgid);
		BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	} else {
		e->pid = bpf_get_current_pid_tgid() >> 32;
		bpf_get_current_comm(e->comm, sizeof(e->comm));
	}
	bpf_ringbuf_submit(e, 0);
	return true;
}

#endif /* MMPOLICY_SENSOR_BPF_H */
