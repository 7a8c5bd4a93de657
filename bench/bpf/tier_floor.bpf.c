// SPDX-License-Identifier: GPL-2.0
/*
 * tier_floor: the cost floor of any sensor on the tiering sensors' two
 * tracepoints.
 *
 * Benchmark-only. Two tp_btf programs on exceptions:page_fault_user and
 * block:block_bio_queue that return at once: what attaching a program
 * there costs before it does anything (the kernel's dispatch to it: every
 * user fault runs the first, every bio the second). The tiering sensors'
 * cost minus this is what their own lookups and counting cost.
 */
#include "mmpolicy/common.bpf.h"

SEC("tp_btf/page_fault_user")
int BPF_PROG(floor_fault, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	return 0;
}

SEC("tp_btf/block_bio_queue")
int BPF_PROG(floor_bio, struct bio *bio)
{
	return 0;
}
