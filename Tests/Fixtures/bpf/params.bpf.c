// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: policy parameters (const volatile globals in .rodata).
 *
 * Exercises: setting parameters of each supported type before load (u32,
 * s64, bool, u8, char array) and their defaults. select_victim copies them
 * into the output half of the context, so a test can read them back after
 * BPF_PROG_RUN.
 */
#include "mmpolicy/oom.bpf.h"

const volatile __u32 p_u32 = 7;
const volatile __s64 p_s64 = -5;
const volatile bool p_bool = false;
const volatile __u8 p_u8 = 1;
const volatile char p_str[16] = "default";

SEC("syscall")
int params_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	ctx->victim_tgid = p_u32;
	ctx->score = p_s64;
	ctx->flags = p_bool;
	ctx->reason = p_u8;
	ctx->candidates = p_str[0];
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)params_select_victim,
	.name = "params",
};
