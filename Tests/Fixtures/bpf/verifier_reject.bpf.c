// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: a callback the kernel verifier rejects.
 *
 * Exercises: the loader's reporting of verifier failures. select_victim
 * dereferences the result of bpf_map_lookup_elem() without a NULL check, so
 * the verifier refuses the program ("invalid mem access 'map_value_or_null'").
 * The rejected statement is the line marked REJECTED-HERE below; a test may
 * check that the reported source line points at it.
 */
#include "mmpolicy/oom.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} reject_scores SEC(".maps");

SEC("syscall")
int reject_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	__u32 key = ctx->daemon_tgid;
	__u64 *value = bpf_map_lookup_elem(&reject_scores, &key);

	ctx->score = *value; /* REJECTED-HERE: map value used without a NULL check */
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)reject_select_victim,
	.name = "verifier_reject",
};
