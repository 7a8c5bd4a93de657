/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * mmpolicy ABI: the daemon's own sensors (bpf-programs/sensors/).
 *
 * Unlike a policy's sensors, these are loaded by the daemon itself: they wake
 * it through a ring buffer the moment the kernel starts to struggle for
 * memory, so that system-scope OOM handling needs no fast poller.
 *
 * Included by sensor.bpf.h (so by every sensor object) and by the Swift daemon
 * through the CMMPolicyABI module; same rules as abi_common.h. The event
 * record is shared by every kind's sensors: a new kind adds event types here.
 */
#ifndef MMPOLICY_SENSOR_COMMON_H
#define MMPOLICY_SENSOR_COMMON_H

#include "abi_common.h"

#define MMPOLICY_SENSOR_COMM_LEN 16

enum mmpolicy_sensor_event_type {
	/* A task entered direct (global) reclaim: value = allocation order. */
	MMPOLICY_SENSOR_RECLAIM_DIRECT = 1,
	/* An allocation woke kswapd: value = allocation order. */
	MMPOLICY_SENSOR_KSWAPD_WAKE = 2,
	/* A task entered memcg reclaim: cgroup_id = its memory cgroup, value = order. */
	MMPOLICY_SENSOR_MEMCG_RECLAIM = 3,
	/* RSS grew by the armed budget: value = bytes accumulated since arming. */
	MMPOLICY_SENSOR_RSS_BUDGET = 4,
	/* The kernel OOM killer chose a victim: value = its anon + file + shmem rss, bytes. */
	MMPOLICY_SENSOR_MARK_VICTIM = 5,
};
#define MMPOLICY_SENSOR_EVENT_TYPES 6 /* largest type + 1 */

/*
 * Events a sensor could not write because the ring buffer was full (the
 * daemon is behind), per type: the __u64 array map MMPOLICY_SENSOR_DROPS_MAP
 * (`sensor_drops`, MMPOLICY_SENSOR_EVENT_TYPES entries) that sensor.bpf.h
 * declares. The daemon reads it and says when it grows.
 */
#define MMPOLICY_SENSOR_DROPS_MAP "sensor_drops"

/* One record of the sensors' `events` ring buffer. */
struct mmpolicy_sensor_event {
	__u32 type; /* enum mmpolicy_sensor_event_type */
	__u32 pid; /* process (tgid): the allocating task, or the OOM victim */
	__u64 time_ns; /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u64 value; /* per type, see above */
	__u64 cgroup_id; /* memory cgroup (kernfs id = directory inode) of that task */
	char comm[MMPOLICY_SENSOR_COMM_LEN];
};

/*
 * The RSS budget, element 0 of the array map `sensor_config`. User space arms it by
 * writing {budget, 0, 1}; the sensor adds every positive RSS change to
 * accumulated_bytes and, on the change that reaches budget_bytes, emits one
 * MMPOLICY_SENSOR_RSS_BUDGET event and clears armed.
 */
struct mmpolicy_sensor_config {
	__u64 budget_bytes;
	__u64 accumulated_bytes;
	__u32 armed;
	__u32 _pad;
};

#endif /* MMPOLICY_SENSOR_COMMON_H */
