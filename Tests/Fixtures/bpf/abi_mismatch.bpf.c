// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: an object built for another ABI version.
 *
 * Exercises: the loader's ABI version check. The program and the ops table
 * are valid, but the header (written by hand instead of with MMPOLICY_OPS())
 * says abi_version 999, which no daemon supports.
 */
#include "mmpolicy/oom.bpf.h"

SEC("syscall")
int abi_mismatch_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	return MMPOLICY_NO_DECISION;
}

const struct mmpolicy_header __mmpolicy_header SEC(MMPOLICY_HEADER_SECTION) = {
	.abi_version = 999,
	.kind = MMPOLICY_KIND_OOM,
};

struct mmpolicy_oom_ops __mmpolicy_ops_oom SEC(MMPOLICY_OPS_SECTION) = {
	.select_victim = (void *)abi_mismatch_select_victim,
	.name = "abi_mismatch",
};
