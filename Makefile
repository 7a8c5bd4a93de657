# mmpolicy: `make run` and `make test` do all set-up from a fresh clone.
SHELL := /bin/bash
BUILD := build
BPF_OUT := $(BUILD)/bpf
FIXTURE_OUT := $(BPF_OUT)/fixtures
VMLINUX := $(BUILD)/vmlinux.h
ABI_HEADERS := $(wildcard bpf-programs/include/mmpolicy/*.h)
POLICY_SRCS := $(wildcard bpf-programs/*.bpf.c)
SENSOR_SRCS := $(wildcard bpf-programs/sensors/*.bpf.c)
FIXTURE_SRCS := $(wildcard Tests/Fixtures/bpf/*.bpf.c)
BENCH_SRCS := $(wildcard bench/bpf/*.bpf.c)
POLICY_OBJS := $(patsubst bpf-programs/%.bpf.c,$(BPF_OUT)/%.bpf.o,$(POLICY_SRCS))
SENSOR_OBJS := $(patsubst bpf-programs/sensors/%.bpf.c,$(BPF_OUT)/sensors/%.bpf.o,$(SENSOR_SRCS))
FIXTURE_OBJS := $(patsubst Tests/Fixtures/bpf/%.bpf.c,$(FIXTURE_OUT)/%.bpf.o,$(FIXTURE_SRCS))
BENCH_OBJS := $(patsubst bench/bpf/%.bpf.c,$(BPF_OUT)/bench/%.bpf.o,$(BENCH_SRCS))
ARCH := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/')
BPF_CFLAGS := -target bpf -mcpu=v3 -g -O2 -Wall -Werror -D__TARGET_ARCH_$(ARCH) \
	-I $(BUILD) -I bpf-programs/include -I bpf-programs/include/mmpolicy
SWIFT_CONFIG ?= debug
MMPOLICY := .build/$(SWIFT_CONFIG)/mmpolicy
export MMPOLICY_POLICY_DIR := $(CURDIR)/policies
export MMPOLICY_OBJECT_PATH := $(CURDIR)/$(BPF_OUT)

.PHONY: all setup build bpf swift run test test-faults bench clean

all: build

setup:
	@tools/setup

build: setup bpf swift

bpf: $(POLICY_OBJS) $(SENSOR_OBJS) $(FIXTURE_OBJS) $(BENCH_OBJS)

# CO-RE types of the running kernel.
$(VMLINUX):
	@mkdir -p $(BUILD)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > $@.tmp && mv $@.tmp $@

$(BPF_OUT)/%.bpf.o: bpf-programs/%.bpf.c $(VMLINUX) $(ABI_HEADERS)
	@mkdir -p $(BPF_OUT)
	$$(tools/bpf-clang) $(BPF_CFLAGS) -c $< -o $@

# The daemon's own sensors (not policies: no ops table).
$(BPF_OUT)/sensors/%.bpf.o: bpf-programs/sensors/%.bpf.c $(VMLINUX) $(ABI_HEADERS)
	@mkdir -p $(BPF_OUT)/sensors
	$$(tools/bpf-clang) $(BPF_CFLAGS) -c $< -o $@

$(FIXTURE_OUT)/%.bpf.o: Tests/Fixtures/bpf/%.bpf.c $(VMLINUX) $(ABI_HEADERS)
	@mkdir -p $(FIXTURE_OUT)
	$$(tools/bpf-clang) $(BPF_CFLAGS) -Wno-error -c $< -o $@

$(BPF_OUT)/bench/%.bpf.o: bench/bpf/%.bpf.c $(VMLINUX) $(ABI_HEADERS)
	@mkdir -p $(BPF_OUT)/bench
	$$(tools/bpf-clang) $(BPF_CFLAGS) -c $< -o $@

swift:
	swift build -c $(SWIFT_CONFIG)

# The main job: the daemon in the foreground with the safe default set
# (policies/default.toml) on its first start. Ctrl-C (SIGINT) or SIGTERM
# unloads every policy and restores every knob.
run: build
	$(MMPOLICY) list
	@echo
	@echo "Starting the mmpolicy daemon (socket /run/mmpolicy/mmpolicy.sock, state /var/lib/mmpolicy)."
	@echo "Talk to it from another shell, as root:"
	@echo "  $(MMPOLICY) status"
	@echo "  $(MMPOLICY) events --since 10m"
	@echo "  $(MMPOLICY) load oom_growth --scope /sys/fs/cgroup/memory/GROUP --mode enforce"
	@echo "  $(MMPOLICY) unload oom_growth"
	@echo "Stop it with Ctrl-C."
	@echo
	$(MMPOLICY) daemon --policy-dir $(CURDIR)/policies

# Six phases: the live-kernel tests block Swift concurrency's small
# cooperative pool (2 threads on 2 cores) for seconds at a time while they
# wait for the kernel, which would starve the control-socket tests' timing
# checks if both ran in one process at once. The watchdog's and the tiering
# suites (sensors, primitives, end to end, reclaim targets, memcg reclaim)
# run last, each phase alone: they turn zram swap on, which would keep other
# suites' memcgs from running out of memory. The compressibility suite runs
# alone after them: it counts the pages its own zram device stores whole,
# and the primitives' devices (swap priority 32767) would take its pages.
# `mmpolicy tier setup-zram` and `[tiering] setup_zram`'s suite comes after
# them, alone too: its zram devices take swap priority 100, so a tiering
# suite running beside it would page out to them, and its teardowns'
# swapoff would bring those pages back under that suite's feet; and some of
# its tests wait for a moment without any swap.
TIERING_SUITES = TieringSensorTests|TieringPrimitivesTests|TieringEndToEndTests|TieringReclaimTests|MemcgReclaimTests
test: build
	swift build --build-tests
	swift test --skip-build --skip LiveKernelTests
	swift test --skip-build --filter LiveKernelTests --skip 'WatchdogEndToEndTests|$(TIERING_SUITES)|TieringCompressibilityTests|ZramSetupTests'
	swift test --skip-build --filter WatchdogEndToEndTests
	swift test --skip-build --filter '$(TIERING_SUITES)'
	swift test --skip-build --filter TieringCompressibilityTests
	swift test --skip-build --filter ZramSetupTests

# The fault-injection suites alone (they also run in `make test`): a stopped
# daemon, a locked, damaged or full state store, planted symbolic links and
# bad owners or modes, a killed daemon and guardian. docs/guarantees.md says
# what each one proves.
FAULT_SUITES = StoppedDaemonTests|LockedDatabaseTests|DamagedStateTests|FullStateDiskTests|StateDirectorySecurityTests|GuardianTests|anOOMInANewMemcgDoesNotWaitForALockedDatabase
test-faults: build
	swift build --build-tests
	swift test --skip-build --filter '$(FAULT_SUITES)'

bench: setup
	tools/setup --bench
	$(MAKE) $(POLICY_OBJS) $(SENSOR_OBJS) $(BENCH_OBJS) $(FIXTURE_OUT)/oom_fixed_victim.bpf.o
	swift build -c release --product mmpolicy-bench
	swift build -c release --product mmpolicy-workload
	swift build -c release --product mmpolicy
	.build/release/mmpolicy-bench select
	.build/release/mmpolicy-bench oom
	.build/release/mmpolicy-bench watchdog
	.build/release/mmpolicy-bench soak
	.build/release/mmpolicy-bench tiering-sensors
	.build/release/mmpolicy-bench tiering

clean:
	rm -rf $(BUILD) .build
