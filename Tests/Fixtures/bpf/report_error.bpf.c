// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: an oom policy that fails and says why.
 *
 * Exercises mmpolicy_error() and the `mmpolicy_exit` map it brings into the
 * object: select_victim reports -EINVAL with a message that formats the
 * context's daemon_tgid and limit_bytes, and returns what mmpolicy_error()
 * returned. A test reads the report back (code, message, time, count) after
 * each run. With `decline` set it declines without reporting, so a test can
 * check that a run that does not fail leaves the report alone. `variant`
 * picks other messages: 1 a format without arguments (-ENOENT), 2 one longer
 * than MMPOLICY_EXIT_MSG_LEN with a %s argument (-E2BIG), to be cut.
 */
#include "mmpolicy/oom.bpf.h"

const volatile __u32 decline = 0;
const volatile __u32 variant = 0;

SEC("syscall")
int report_select_victim(struct mmpolicy_oom_ctx *ctx)
{
	if (decline)
		return MMPOLICY_NO_DECISION;
	if (variant == 1)
		return mmpolicy_error(-ENOENT, "nothing to format");
	if (variant == 2)
		return mmpolicy_error(-E2BIG, "%s: 0123456789 0123456789 0123456789 0123456789 "
				      "0123456789 0123456789 0123456789 0123456789 0123456789 "
				      "0123456789 0123456789 0123456789 (limit %llu)",
				      "long", ctx->limit_bytes);
	return mmpolicy_error(-EINVAL, "no victim for daemon %u under a %llu-byte limit",
			      ctx->daemon_tgid, ctx->limit_bytes);
}

MMPOLICY_OPS(oom) = {
	.select_victim = (void *)report_select_victim,
	.name = "report_error",
};
