// SPDX-License-Identifier: GPL-2.0
/*
 * Fixture: syscall programs that write their context into a ring buffer.
 *
 * Exercises: BPFRingBuffer. echo_fixed submits the context's first 16 bytes
 * (seq, value) as one fixed-size record; echo_bytes submits payload[0..size)
 * as a record of that many bytes (size 0..32), so variable-length records
 * can be checked byte for byte. Both return 0 on success, 1 if the ring
 * buffer refused the record or the size is out of range.
 */
#include "mmpolicy/common.bpf.h"

struct echo_ctx {
	__u64 seq;
	__u64 value;
	__u32 size;
	__u32 _pad;
	__u8 payload[32];
};

struct echo_fixed_record {
	__u64 seq;
	__u64 value;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} records SEC(".maps");

SEC("syscall")
int echo_fixed(struct echo_ctx *ctx)
{
	struct echo_fixed_record r = { .seq = ctx->seq, .value = ctx->value };

	return bpf_ringbuf_output(&records, &r, sizeof(r), 0) ? 1 : 0;
}

SEC("syscall")
int echo_bytes(struct echo_ctx *ctx)
{
	struct echo_ctx copy = *ctx;
	__u32 size = copy.size;

	if (size > sizeof(copy.payload))
		return 1;
	return bpf_ringbuf_output(&records, copy.payload, size, 0) ? 1 : 0;
}
