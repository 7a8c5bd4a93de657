// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: an oom policy that fails and says why.
 *
 * Exercises mmpolicy_error() and the `mmpolicy_exit` map it brings into the
 * object: select_victim reports -EINVAL with a message that formats the
 * context's daemon_tgid and limit_bytes, and returns what mmpolicy_error()
 * returned. A test reads the report back (code, message, time, count) after
 * each run. With `decline` set it declines without reporting, so a test can
 * check that a run that does not fail leaves the report alone.
 */
#include "mmpolicy/oom.bpf.h"

const volatile __u32 decline = 0;

SEC("syscall")
int report_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	if (decline)
		return MMPOLICY_NO_DECISION;
	return mmpolicy_error(-EINVAL, "no victim for daemon %u under a %llu-byte limit",
			      ctx->daemon_tgid, ctx->limit_bytes);
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)report_select_victim,
	.name = "report_error",
};
