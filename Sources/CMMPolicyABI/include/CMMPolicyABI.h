/*
 * The mmpolicy ABI as Swift sees it: the very headers the BPF programs
 * include (bpf-programs/include/mmpolicy), so the two sides cannot drift.
 */
#ifndef CMMPOLICYABI_H
#define CMMPOLICYABI_H
#include <linux/types.h>
#include "../../../bpf-programs/include/mmpolicy/abi_common.h"
#include "../../../bpf-programs/include/mmpolicy/oom_common.h"
#include "../../../bpf-programs/include/mmpolicy/sensor_common.h"
#include "../../../bpf-programs/include/mmpolicy/tiering_common.h"

/* The ABI version this build of mmpolicy speaks. */
unsigned int mmpolicy_abi_version(void);
#endif
