// SPDX-License-Identifier: GPL-2.0
/*
 * tier_floor: the cost floor of any sensor on the tiering sensors' two
 * tracepoints.
 *
 * Benchmark-only. Two tp_btf programs on exceptions:page_fault_user and
 * memcg:count_memcg_events that return at once: what attaching a program
 * there costs every fault before it does anything (the kernel's dispatch to
 * it). The tiering sensors' cost minus this is what their own lookups and
 * counting cost.
 */
#include "mmpolicy/common.bpf.h"

SEC("tp_btf/page_fault_user")
int BPF_PROG(floor_fault, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	return 0;
}

SEC("tp_btf/count_memcg_events")
int BPF_PROG(floor_memcg_event, struct mem_cgroup *memcg, int item, unsigned long val)
{
	return 0;
}
