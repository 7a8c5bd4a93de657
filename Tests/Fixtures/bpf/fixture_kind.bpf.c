// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: a policy of the test-only `fixture` kind
 * (Tests/LiveKernelTests/FixtureKind), which proves a kind is a folder plus
 * a registry line.
 *
 * What it does: every round the engine runs `plan`, which answers with two
 * actions on `target_pid` (op 1 = round number, op 2 = ten times it). With
 * `return_error` set it reports why with mmpolicy_error() and returns -EINVAL, a
 * decision error the watchdog counts; with `decline` set it makes no
 * decision; with `target_pid` 1 its actions are rejected (pid 1 is
 * protected).
 *
 * Where it falls short: it is a test, not a policy; the actions mean nothing.
 */
#include "mmpolicy/common.bpf.h"

#define MMPOLICY_KIND_fixture_ID (MMPOLICY_KIND_TEST_FIRST + 1)
#define FIXTURE_MAX_ACTIONS 4

struct mmpolicy_fixture_action {
	__u32 pid;
	__u32 op; /* 1 or 2 */
	__u64 value;
};

struct mmpolicy_fixture_ctx {
	/* --- input --- */
	__u64 round;
	__u32 daemon_tgid;
	__u32 max_actions;
	/* --- output --- */
	__u32 n_actions;
	__u32 _pad;
	struct mmpolicy_fixture_action actions[FIXTURE_MAX_ACTIONS];
};

struct mmpolicy_fixture_ops {
	void *plan; /* required: int (struct mmpolicy_fixture_ctx *) */
	char name[MMPOLICY_NAME_LEN];
};

const volatile __u32 target_pid = 0;
const volatile __u32 return_error = 0;
const volatile __u32 decline = 0;

SEC("syscall")
int fixture_plan(struct mmpolicy_fixture_ctx *ctx)
{
	if (return_error)
		return mmpolicy_error(-EINVAL, "round %llu: asked to fail", ctx->round);
	if (decline || ctx->max_actions < 2)
		return MMPOLICY_NO_DECISION;
	ctx->actions[0].pid = target_pid;
	ctx->actions[0].op = 1;
	ctx->actions[0].value = ctx->round;
	ctx->actions[1].pid = target_pid;
	ctx->actions[1].op = 2;
	ctx->actions[1].value = ctx->round * 10;
	ctx->n_actions = 2;
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(fixture) = {
	.plan = (void *)fixture_plan,
	.name = "fixture_kind",
};
