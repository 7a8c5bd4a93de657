// SPDX-License-Identifier: GPL-2.0
/*
 * tiering_sensors: where, in each tracked process, memory is touched, and
 * what comes back from the slow tier. What tiering policies know about
 * memory (tiering_common.h: tier_procs, tier_regions) comes from here.
 *
 * What it counts, for processes the daemon tracks (an entry in tier_procs)
 * and nobody else:
 *   - tier_fault (exceptions:page_fault_user, in the faulting thread, before
 *     the fault is handled): proc.faults and the fault's 2 MiB region's
 *     faults (the entry is made on the region's first fault), their
 *     last_fault_ns; and, in the thread's task storage, the fault's address
 *     and the thread's fault count (min_flt + maj_flt) at that moment.
 *   - tier_major_fault (memcg:count_memcg_events with item PGMAJFAULT, in
 *     the thread that took the major fault, while the fault is handled):
 *     proc.swapins; and, if the thread's last user fault is the one being
 *     handled, that fault's region's swapins, plus refaults (region and
 *     proc) if the daemon demoted the region.
 *
 * What it costs: a fault anywhere on the system runs tier_fault up to the
 * tgid lookup in tier_procs (one hash lookup); every memcg event
 * (PGFAULT on each fault, PGPGIN/PGPGOUT on cgroup v1 charges, ...) runs
 * tier_major_fault up to one compare. A tracked process's fault adds a
 * region lookup, two atomic adds and a task storage write; its major fault
 * a task storage read, a region lookup and up to three atomic adds. Both
 * are tp_btf programs: a classic tracepoint program would first have the
 * kernel build the event's record, which cost 2-5 points more of a
 * fault-only workload's time. The daemon attaches the programs only while
 * a tiering policy is loaded (bench/README.md, "Tiering sensors", has the
 * figures: of a process that does nothing but fault, ~8 % untracked and
 * ~13-15 % tracked, of which ~5 % is the kernel dispatching three programs
 * per fault, whatever they do).
 *
 * Where it falls short:
 *   - "Is the last user fault the one being handled?": the kernel counts a
 *     fault in the thread's min_flt/maj_flt when the fault completes
 *     (mm_account_fault), after any PGMAJFAULT it raised. So if those are
 *     unchanged since the last page_fault_user, the major fault belongs to
 *     it. A major fault taken in kernel mode (copy_to_user into swapped-out
 *     memory) comes after the last user fault completed: counted in
 *     proc.swapins, in no region. A user fault that ends in SIGSEGV/SIGBUS
 *     is not counted by the kernel, so a kernel-mode major fault right after
 *     one would be given to its region (rare, and it is the same process).
 *   - PGMAJFAULT also counts file pages read from disk at fault time, so a
 *     file mapping's regions get "swap-ins" too.
 *   - Memory the process touched before it was tracked never faults again
 *     until it is paged out: it has no region entry (the daemon seeds them,
 *     MMPOLICY_TIER_WRITE_SEED).
 *   - A major fault in a region evicted from the LRU map between the
 *     page_fault_user and the PGMAJFAULT (microseconds) is counted in
 *     proc.swapins only.
 *   - No counts without the memory controller (count_memcg_events does not
 *     fire): faults still count, swap-ins do not.
 *
 * The daemon writes through tier_write (a SEC("syscall") program it runs
 * with BPF_PROG_RUN): it changes fields in place, so no count the sensors
 * add meanwhile is lost (see struct mmpolicy_tier_write).
 */
#include "mmpolicy/tiering.bpf.h"

/* A thread's last user fault. */
struct fault_note {
	__u64 address;
	__u64 thread_faults; /* the thread's min_flt + maj_flt when it took that fault */
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fault_note);
} last_fault SEC(".maps");

static __always_inline __u64 thread_faults(struct task_struct *task)
{
	return task->min_flt + task->maj_flt;
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(tier_fault, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct mmpolicy_tier_region_key key = { .tgid = tgid };
	struct mmpolicy_tier_region *region;
	struct mmpolicy_tier_proc *proc;
	struct task_struct *task;
	struct fault_note *note;
	__u64 now;

	proc = bpf_map_lookup_elem(&tier_procs, &tgid);
	if (!proc)
		return 0;
	now = bpf_ktime_get_ns();
	__sync_fetch_and_add(&proc->faults, 1);
	proc->last_fault_ns = now;

	key.region = mmpolicy_tier_region_of(address);
	region = bpf_map_lookup_elem(&tier_regions, &key);
	if (region) {
		__sync_fetch_and_add(&region->faults, 1);
		region->last_fault_ns = now;
	} else {
		struct mmpolicy_tier_region fresh = { .faults = 1, .first_fault_ns = now, .last_fault_ns = now };

		/* Another thread may have made it meanwhile: then count into its entry. */
		if (bpf_map_update_elem(&tier_regions, &key, &fresh, BPF_NOEXIST)) {
			region = bpf_map_lookup_elem(&tier_regions, &key);
			if (region)
				__sync_fetch_and_add(&region->faults, 1);
		}
	}

	task = bpf_get_current_task_btf();
	note = bpf_task_storage_get(&last_fault, task, NULL, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (note) {
		note->address = address;
		note->thread_faults = thread_faults(task);
	}
	return 0;
}

SEC("tp_btf/count_memcg_events")
int BPF_PROG(tier_major_fault, struct mem_cgroup *memcg, int item, unsigned long val)
{
	struct mmpolicy_tier_region_key key = {};
	struct mmpolicy_tier_region *region;
	struct mmpolicy_tier_proc *proc;
	struct task_struct *task;
	struct fault_note *note;
	__u32 tgid;

	if (item != bpf_core_enum_value(enum vm_event_item, PGMAJFAULT) || !val)
		return 0;
	tgid = bpf_get_current_pid_tgid() >> 32;
	proc = bpf_map_lookup_elem(&tier_procs, &tgid);
	if (!proc)
		return 0;
	__sync_fetch_and_add(&proc->swapins, val);

	task = bpf_get_current_task_btf();
	note = bpf_task_storage_get(&last_fault, task, NULL, 0);
	if (!note || note->thread_faults != thread_faults(task))
		return 0; /* not during the thread's last user fault */
	key.tgid = tgid;
	key.region = mmpolicy_tier_region_of(note->address);
	region = bpf_map_lookup_elem(&tier_regions, &key);
	if (!region)
		return 0;
	__sync_fetch_and_add(&region->swapins, val);
	if (region->demoted_ns) {
		__sync_fetch_and_add(&region->refaults, val);
		__sync_fetch_and_add(&proc->refaults, val);
	}
	return 0;
}

/* ---- the daemon's writes (struct mmpolicy_tier_write), run with BPF_PROG_RUN ---- */

static __always_inline int write_proc(struct mmpolicy_tier_write *w)
{
	__u32 tgid = w->tgid;
	struct mmpolicy_tier_proc *proc;

	if (w->op == MMPOLICY_TIER_WRITE_TRACK) {
		struct mmpolicy_tier_proc fresh = { .cgroup_id = w->value };
		long err = bpf_map_update_elem(&tier_procs, &tgid, &fresh, BPF_NOEXIST);

		if (err != -EEXIST)
			return err;
	}
	proc = bpf_map_lookup_elem(&tier_procs, &tgid);
	if (!proc)
		return -ENOENT;
	switch (w->op) {
	case MMPOLICY_TIER_WRITE_TRACK:
		proc->cgroup_id = w->value;
		break;
	case MMPOLICY_TIER_WRITE_RESIDENCY:
		proc->anon_pages = w->value;
		proc->swap_pages = w->value2;
		break;
	case MMPOLICY_TIER_WRITE_ADD_DEMOTED:
		__sync_fetch_and_add(&proc->demoted_bytes, w->value);
		break;
	}
	return 0;
}

static __always_inline int write_region(struct mmpolicy_tier_write *w)
{
	struct mmpolicy_tier_region_key key = { .tgid = w->tgid, .region = w->region };
	struct mmpolicy_tier_region fresh = {}, *region;
	long err;

	if (w->op == MMPOLICY_TIER_WRITE_SEED)
		fresh.last_fault_ns = w->value;
	err = bpf_map_update_elem(&tier_regions, &key, &fresh, BPF_NOEXIST);
	if (err && err != -EEXIST)
		return err;
	if (w->op == MMPOLICY_TIER_WRITE_SEED)
		return err ? 1 : 0;
	region = bpf_map_lookup_elem(&tier_regions, &key);
	if (!region)
		return -ENOENT; /* evicted at once by other processes' faults */
	if (w->op == MMPOLICY_TIER_WRITE_DEMOTED) {
		region->demoted_ns = w->value;
		__sync_fetch_and_add(&region->demotions, 1);
		region->refaults = 0;
	} else {
		region->compressed_permille = w->value;
		if (w->value > MMPOLICY_TIER_INCOMPRESSIBLE_PERMILLE)
			__sync_fetch_and_or(&region->flags, MMPOLICY_TIER_REGION_INCOMPRESSIBLE);
		else
			__sync_fetch_and_and(&region->flags, ~MMPOLICY_TIER_REGION_INCOMPRESSIBLE);
	}
	return 0;
}

SEC("syscall")
int tier_write(struct mmpolicy_tier_write *ctx)
{
	struct mmpolicy_tier_write w = *ctx;

	switch (w.op) {
	case MMPOLICY_TIER_WRITE_TRACK:
	case MMPOLICY_TIER_WRITE_RESIDENCY:
	case MMPOLICY_TIER_WRITE_ADD_DEMOTED:
		ctx->result = write_proc(&w);
		break;
	case MMPOLICY_TIER_WRITE_DEMOTED:
	case MMPOLICY_TIER_WRITE_SEED:
	case MMPOLICY_TIER_WRITE_COMPRESSIBILITY:
		ctx->result = write_region(&w);
		break;
	default:
		ctx->result = -EINVAL;
	}
	return 0;
}
