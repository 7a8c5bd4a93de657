// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: one program of each attachable type BPFKit supports (tracepoint,
 * raw_tp, tp_btf, iter/task), each counting its runs in `hits`, so tests can
 * prove that attaching really wires the program to the kernel.
 */
#include "mmpolicy/common.bpf.h"

enum { HIT_TRACEPOINT, HIT_RAW_TP, HIT_TP_BTF, HIT_ITER, HIT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HIT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

/* Only count events of this process, so other activity cannot fake a hit. */
const volatile __u32 target_tgid = 0;

static __always_inline void hit(__u32 which)
{
	__u64 *count = bpf_map_lookup_elem(&hits, &which);

	if (count)
		__sync_fetch_and_add(count, 1);
}

static __always_inline bool is_target(void)
{
	return (bpf_get_current_pid_tgid() >> 32) == target_tgid;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int count_tracepoint(void *ctx)
{
	if (is_target())
		hit(HIT_TRACEPOINT);
	return 0;
}

SEC("raw_tp/sys_enter")
int count_raw_tp(void *ctx)
{
	if (is_target())
		hit(HIT_RAW_TP);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(count_tp_btf, struct pt_regs *regs, long id)
{
	if (is_target())
		hit(HIT_TP_BTF);
	return 0;
}

SEC("iter/task")
int count_iter(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;

	if (!task)
		return 0;
	if (task->tgid == target_tgid && task->pid == task->tgid) {
		hit(HIT_ITER);
		BPF_SEQ_PRINTF(ctx->meta->seq, "tgid %d\n", task->tgid);
	}
	return 0;
}
