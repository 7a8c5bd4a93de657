// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: a callback bound to a program of the wrong type.
 *
 * Exercises: the loader's check that every ops slot points at a
 * SEC("syscall") program. Here select_victim is bound to a
 * SEC("tracepoint/kmem/rss_stat") program, which loads fine on its own but
 * cannot be run with BPF_PROG_RUN on a struct mmpolicy_oom_ctx.
 */
#include "mmpolicy/oom.bpf.h"

SEC("tracepoint/kmem/rss_stat")
int tracepoint_select_victim(struct trace_event_raw_rss_stat *ctx)
{
	return 0;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)tracepoint_select_victim,
	.name = "tracepoint_callback",
};
