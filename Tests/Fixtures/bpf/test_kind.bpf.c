// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: a policy of a kind mmpolicy does not have.
 *
 * Exercises MMPOLICY_OPS() with a kind defined outside the tree, the way a
 * test or out-of-tree kind does it: its own ops struct, and an id from the
 * range abi_common.h reserves for such kinds (MMPOLICY_KIND_TEST_FIRST..LAST).
 * The object must compile and carry that id in its header; the loader must
 * refuse it as an unknown kind. It includes only the kind-agnostic prelude.
 */
#include "mmpolicy/common.bpf.h"

#define MMPOLICY_KIND_fixture_ID (MMPOLICY_KIND_TEST_FIRST + 1)

struct fixture_ctx {
	__u64 in;
	__u64 out;
};

struct mmpolicy_fixture_ops {
	void *advise; /* required: int (struct fixture_ctx *) */
	char name[MMPOLICY_NAME_LEN];
};

SEC("syscall")
int fixture_advise(struct fixture_ctx *ctx)
{
	ctx->out = ctx->in + 1;
	return MMPOLICY_DECIDED;
}

MMPOLICY_OPS(fixture) = {
	.advise = (void *)fixture_advise,
	.name = "test_kind",
};
