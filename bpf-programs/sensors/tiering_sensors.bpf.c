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
 *   - tier_swapin (block:block_bio_queue, in the thread that sends the bio:
 *     the faulting thread, for a swap-in): a read of swap-backed memory
 *     (the bio's first page is PG_swapbacked: anonymous or shmem, not a
 *     file's page cache) is a swap-in: proc.swapins; and, if the thread's
 *     last user fault is the one being handled, that fault's region's
 *     swapins, plus refaults (region and proc) if the daemon demoted the
 *     region. One count per fault, however many bios its read-ahead sends.
 *
 * What it costs: a fault anywhere on the system runs tier_fault up to the
 * tgid lookup in tier_procs (one hash lookup); every bio runs tier_swapin up
 * to the same lookup. A tracked process's fault adds a region lookup, two
 * atomic adds and a task storage write; its swap-in a task storage read, a
 * region lookup and up to three atomic adds. Both are tp_btf programs: a
 * classic tracepoint program would first have the kernel build the event's
 * record, which cost 2-5 points more of a fault-only workload's time. Swap-ins
 * are seen at the bio, not at memcg:count_memcg_events (PGMAJFAULT) as in a
 * first version: that event fires twice on every fault (PGFAULT, and PGPGIN
 * on cgroup v1), a bio only on I/O, and the kernel's dispatch to a program
 * is most of what a sensor costs here (~40 ns a run). The daemon attaches the
 * programs only while a tiering policy is loaded (bench/README.md, "Tiering
 * sensors", has the figures).
 *
 * Where it falls short:
 *   - "Is the last user fault the one being handled?": the kernel counts a
 *     fault in the thread's min_flt/maj_flt when the fault completes
 *     (mm_account_fault), after any bio it sent. So if those are
 *     unchanged since the last page_fault_user, the swap-in belongs to
 *     it. A swap-in taken in kernel mode (copy_to_user into swapped-out
 *     memory) comes after the last user fault completed: counted in
 *     proc.swapins, in no region. A user fault that ends in SIGSEGV/SIGBUS
 *     is not counted by the kernel, so a kernel-mode swap-in right after
 *     one would be given to its region (rare, and it is the same process).
 *   - A swapped-out page that was all zeroes comes back without I/O (the
 *     swap's zero map): no bio, not counted (the kernel counts it as a
 *     major fault). Nor is a swap-in that finds the page still in the swap
 *     cache (the kernel counts that one as minor too).
 *   - A read bio is given to the thread that sends it: swap read-ahead for
 *     another process's pages (disk swap, not zram) sent by this thread
 *     counts here, once per fault.
 *   - Memory the process touched before it was tracked never faults again
 *     until it is paged out: it has no region entry (the daemon seeds them,
 *     MMPOLICY_TIER_WRITE_SEED).
 *   - A swap-in in a region evicted from the LRU map between the
 *     page_fault_user and the bio (microseconds) is counted in proc.swapins
 *     only.
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
	__u64 swapin_counted; /* that fault's swap-in is counted */
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
		note->swapin_counted = 0;
	}
	return 0;
}

#ifndef REQ_OP_MASK
#define REQ_OP_MASK ((1u << 8) - 1) /* include/linux/blk_types.h: REQ_OP_BITS 8 */
#endif

/* The first page of a bio: swap-backed (anonymous or shmem) memory? */
static __always_inline bool reads_swap(struct bio *bio)
{
	struct page *page;

	if ((bio->bi_opf & REQ_OP_MASK) != REQ_OP_READ || !bio->bi_vcnt)
		return false;
	page = bio->bi_io_vec->bv_page;
	return page && (page->flags.f & (1ul << bpf_core_enum_value(enum pageflags, PG_swapbacked)));
}

SEC("tp_btf/block_bio_queue")
int BPF_PROG(tier_swapin, struct bio *bio)
{
	struct mmpolicy_tier_region_key key = {};
	struct mmpolicy_tier_region *region;
	struct mmpolicy_tier_proc *proc;
	struct task_struct *task;
	struct fault_note *note;
	__u64 faults;
	__u32 tgid;

	tgid = bpf_get_current_pid_tgid() >> 32;
	proc = bpf_map_lookup_elem(&tier_procs, &tgid);
	if (!proc || !reads_swap(bio))
		return 0;

	task = bpf_get_current_task_btf();
	faults = thread_faults(task);
	note = bpf_task_storage_get(&last_fault, task, NULL, 0);
	if (note && note->thread_faults == faults) {
		/* During the thread's last user fault: once per fault, however many bios its read-ahead sends. */
		if (note->swapin_counted)
			return 0;
		note->swapin_counted = 1;
	}
	__sync_fetch_and_add(&proc->swapins, 1);
	if (!note || note->thread_faults != faults)
		return 0; /* a swap-in in kernel mode (copy_to_user, ...): no region */
	key.tgid = tgid;
	key.region = mmpolicy_tier_region_of(note->address);
	region = bpf_map_lookup_elem(&tier_regions, &key);
	if (!region)
		return 0;
	__sync_fetch_and_add(&region->swapins, 1);
	if (region->demoted_ns) {
		__sync_fetch_and_add(&region->refaults, 1);
		__sync_fetch_and_add(&proc->refaults, 1);
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
