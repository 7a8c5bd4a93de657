// SPDX-License-Identifier: GPL-2.0
/*
 * kill_clock: when, and by whom, a watched process was sent SIGTERM or SIGKILL.
 *
 * Benchmark-only. The OOM benchmark puts each workload's pid into `watched`
 * before an episode; the signal:signal_generate tracepoint fires for every
 * signal any sender generates (a user-space killer's kill(2) or
 * pidfd_send_signal, and the kernel OOM killer's own SIGKILL alike), and the
 * first SIGTERM/SIGKILL to a watched pid is stamped with bpf_ktime_get_ns()
 * (CLOCK_MONOTONIC, the clock the benchmark reads). That splits each
 * contender's time into "decided and signalled" and "memory released" with
 * one neutral clock, whoever the killer is.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct kill_seen {
	__u64 ns;       /* 0 until the first SIGTERM/SIGKILL */
	__u32 sig;
	__u32 sender;   /* tgid of the task that generated the signal */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, struct kill_seen);
} watched SEC(".maps");

SEC("tracepoint/signal/signal_generate")
int kill_clock_signal_generate(struct trace_event_raw_signal_generate *ctx)
{
	__u32 pid = ctx->pid;
	struct kill_seen *seen;

	if (ctx->sig != 9 && ctx->sig != 15)
		return 0;
	seen = bpf_map_lookup_elem(&watched, &pid);
	if (!seen || seen->ns)
		return 0;
	seen->sig = ctx->sig;
	seen->sender = bpf_get_current_pid_tgid() >> 32;
	seen->ns = bpf_ktime_get_ns();
	return 0;
}
