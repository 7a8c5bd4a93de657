// mmpolicy-bench: benchmarks of mmpolicy against the kernel and its peers,
// measured on the running kernel. Run with `make bench` (as root).
//
//   select (default): policy load time and select_victim latency (issue #2).
//   oom:              time from an OOM to the victim's memory being released,
//                     mmpolicy vs the kernel OOM killer (v1 memcg) and vs
//                     earlyoom (system scope); the daemon's idle cost.
//   watchdog:         how fast the watchdog ejects a harmful policy (refault
//                     and decision-health guards), and its sampler's CPU cost.
//   soak:             thousands of load/unload cycles: the daemon's memory,
//                     descriptors, BPF objects and database before and after.
//   tiering-sensors:  page-fault slowdown from the tiering sensors (detached,
//                     attached untracked, tracked), ns per event, and the
//                     time to list a full region map.
//   tiering:          tiering policies against no policy and a static memcg
//                     limit on the same workload: memory saved, cold set
//                     moved out, hot-loop slowdown, CPU, refaults.
import ArgumentParser

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mmpolicy-bench",
        abstract: "Benchmarks of mmpolicy against the kernel and its peers.",
        subcommands: [SelectBench.self, OOMBench.self, WatchdogBench.self, SoakBench.self, TieringSensorsBench.self, TieringBench.self],
        defaultSubcommand: SelectBench.self)
}
