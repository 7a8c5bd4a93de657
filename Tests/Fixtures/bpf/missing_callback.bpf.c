// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: an ops table without its required callback.
 *
 * Exercises: the loader's "required callback missing" failure. The ops table
 * only has a name; select_victim is NULL (no relocation in .mmpolicy.ops).
 * The object still has a valid syscall program, so it is not empty.
 */
#include "mmpolicy/oom.bpf.h"

SEC("syscall")
int unbound_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	return MMPOLICY_NO_DECISION;
}

MMPOLICY_OPS(oom) = {
	.name = "missing_callback",
};
