// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: a callback that echoes its inputs.
 *
 * Exercises: marshalling of struct mmpolicy_oom_ctx between the daemon and
 * BPF (layout, field order, endianness). select_victim copies input fields to
 * output fields, so a test can check that what it wrote is what the program
 * read:
 *   victim_tgid      = daemon_tgid
 *   victim_cgroup_id = scope.cgroup_id
 *   score            = (s64)limit_bytes
 *   reason           = trigger
 *   candidates       = scope.level
 *   flags            = scope.hierarchy
 */
#include "mmpolicy/oom.bpf.h"

SEC("syscall")
int echo_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	ctx->victim_tgid = ctx->daemon_tgid;
	ctx->victim_cgroup_id = ctx->scope.cgroup_id;
	ctx->score = (__s64)ctx->limit_bytes;
	ctx->reason = ctx->trigger;
	ctx->candidates = ctx->scope.level;
	ctx->flags = ctx->scope.hierarchy;
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)echo_select_victim,
	.name = "echo_ctx",
};
