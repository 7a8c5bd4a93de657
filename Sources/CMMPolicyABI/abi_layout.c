/*
 * Layout checks of the shared ABI structs. A struct that changes size here
 * changes it for every BPF object built against it: bump MMPOLICY_ABI_VERSION.
 */
#include "CMMPolicyABI.h"
#include <stddef.h>

_Static_assert(sizeof(struct mmpolicy_header) == 8, "mmpolicy_header layout");
_Static_assert(sizeof(struct mmpolicy_scope) == 16, "mmpolicy_scope layout");
_Static_assert(sizeof(struct mmpolicy_oom_ctx) == 96, "mmpolicy_oom_ctx layout");
_Static_assert(offsetof(struct mmpolicy_oom_ctx, victim_tgid) == 64, "mmpolicy_oom_ctx output offset");
_Static_assert(sizeof(struct mmpolicy_oom_ops) == 40, "mmpolicy_oom_ops layout");
_Static_assert(sizeof(struct mmpolicy_sensor_event) == 48, "mmpolicy_sensor_event layout");
_Static_assert(offsetof(struct mmpolicy_sensor_event, cgroup_id) == 24, "mmpolicy_sensor_event cgroup_id offset");
_Static_assert(offsetof(struct mmpolicy_sensor_event, comm) == 32, "mmpolicy_sensor_event comm offset");
_Static_assert(sizeof(struct mmpolicy_sensor_config) == 24, "mmpolicy_sensor_config layout");

/* The ABI version this build of mmpolicy speaks (for `mmpolicy --version`). */
unsigned int mmpolicy_abi_version(void) { return MMPOLICY_ABI_VERSION; }
