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
_Static_assert(sizeof(struct mmpolicy_exit_info) == 16 + MMPOLICY_EXIT_MSG_LEN, "mmpolicy_exit_info layout");
_Static_assert(MMPOLICY_EXIT_MSG_LEN == 128, "mmpolicy_exit_info message length");
_Static_assert(offsetof(struct mmpolicy_exit_info, count) == 4, "mmpolicy_exit_info count offset");
_Static_assert(offsetof(struct mmpolicy_exit_info, time_ns) == 8, "mmpolicy_exit_info time_ns offset");
_Static_assert(offsetof(struct mmpolicy_exit_info, message) == 16, "mmpolicy_exit_info message offset");
_Static_assert(sizeof(struct mmpolicy_tier_action) == 24, "mmpolicy_tier_action layout");
_Static_assert(sizeof(struct mmpolicy_tier_target) == 16, "mmpolicy_tier_target layout");
_Static_assert(sizeof(struct mmpolicy_tier_state) == 40, "mmpolicy_tier_state layout");
_Static_assert(offsetof(struct mmpolicy_tiering_ctx, nr_actions) == 160, "mmpolicy_tiering_ctx output offset");
_Static_assert(sizeof(struct mmpolicy_tiering_ctx) == 168, "mmpolicy_tiering_ctx layout");
_Static_assert(sizeof(struct mmpolicy_tier_plan) == 24 * MMPOLICY_TIER_MAX_ACTIONS + 16 * MMPOLICY_TIER_MAX_TARGETS,
	       "mmpolicy_tier_plan layout");
_Static_assert(sizeof(struct mmpolicy_tiering_ops) == 40, "mmpolicy_tiering_ops layout");
_Static_assert(sizeof(struct mmpolicy_tier_proc) == 64, "mmpolicy_tier_proc layout");
_Static_assert(sizeof(struct mmpolicy_tier_region_key) == 16, "mmpolicy_tier_region_key layout");
_Static_assert(sizeof(struct mmpolicy_tier_region) == 64, "mmpolicy_tier_region layout");
_Static_assert(sizeof(struct mmpolicy_tier_write) == 40, "mmpolicy_tier_write layout");
_Static_assert(offsetof(struct mmpolicy_tier_write, result) == 32, "mmpolicy_tier_write result offset");
_Static_assert(MMPOLICY_KIND_TEST_FIRST > MMPOLICY_KIND_MEMNICE && MMPOLICY_KIND_TEST_LAST >= MMPOLICY_KIND_TEST_FIRST,
	       "test kind ids are outside the in-tree kinds");

/* The ABI version this build of mmpolicy speaks (for `mmpolicy --version`). */
unsigned int mmpolicy_abi_version(void) { return MMPOLICY_ABI_VERSION; }
