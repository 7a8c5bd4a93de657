// `mmpolicy-bench tiering`: tiering policies against no policy and against
// a static memcg limit set by someone who knows the working set, on the same
// workload (hot sets touched at random, cold memory touched once, part of it
// incompressible), side by side in one run. See bench/README.md, "Tiering".
import ArgumentParser
import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

struct TieringBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiering",
        abstract: "Memory saved, cold set moved out, hot-loop slowdown and CPU: no policy, a static memcg limit, tiering policies.",
        discussion: """
            Needs root, the memory controller on cgroup v1, zram with device hot-add, release \
            builds of mmpolicy and mmpolicy-workload, and each policy contender's object (make \
            bpf). Per round, in an order that rotates every round, each contender gets a fresh \
            v1 memcg, a fresh zram device of its own (same size for all) and --processes fresh \
            `mmpolicy-workload tierload` processes; --settle seconds after they are ready the \
            contender is applied and the run is read every second for --duration seconds. A \
            policy contender is a daemon of the benchmark's own loading policies/NAME.toml in \
            enforce mode with the memcg as scope. Everything is taken down after each run, on \
            failure and on ^C.
            """)

    @Option(help: "Contenders, comma-separated: none, static, or a tiering policy's name (policies/NAME.toml).")
    var contenders = "none,static,tier_cold,tier_senpai"
    @Option(help: "Rounds; each runs every contender once.") var rounds = 2
    @Option(help: "Seconds each contender runs after it is applied.") var duration = 60
    @Option(help: "Seconds between the workloads being ready and the contender being applied (the hot loops' own baseline).") var settle = 10
    @Option(help: "Workload processes per run.") var processes = 3
    @Option(help: "Hot set per process (touched at random all the time).") var hot = "64M"
    @Option(help: "Cold, compressible memory per process (touched once).") var cold = "192M"
    @Option(help: "Incompressible memory per process (random bytes, touched once).") var incompressible = "64M"
    @Option(help: "Share of every 10 ms each hot loop runs, percent (3 loops at 25 % use 0.75 of the 2 CPUs).") var dutyPercent = 25
    @Option(help: "zram device size (disksize) for every run.") var zramSize = "2G"
    @Option(help: "swapon priority of the run's zram device (highest goes first).") var zramPriority = 32767
    @Option(help: "Static contender: limit = hot sets x this + the processes' other memory (measured).") var staticFactor = 1.1
    @Flag(inversion: .prefixedNo, help: "Run a control process (the same hot loop, outside the memcg) beside the workloads; throughput is judged relative to it.")
    var control = true
    @Option(help: "Parent directory of the runs' memcgs (cgroup v1 memory controller).") var memcgRoot = "/sys/fs/cgroup/memory"
    @Option(help: "Directory of built BPF objects.") var objects = "build/bpf"
    @Option(help: "Directory of policy manifests.") var policies = "policies"
    @Option(help: "Path of mmpolicy.") var mmpolicy = ".build/release/mmpolicy"
    @Option(help: "Path of mmpolicy-workload.") var workload = ".build/release/mmpolicy-workload"

    func validate() throws {
        guard rounds >= 1, duration >= 10, settle >= 2, processes >= 1 else {
            throw ValidationError("--rounds >= 1, --duration >= 10, --settle >= 2, --processes >= 1")
        }
        for size in [hot, cold, incompressible, zramSize] where parseSize(size) == nil {
            throw ValidationError("not a size: \(size) (bytes with an optional K, M or G)")
        }
        guard (1...100).contains(dutyPercent) else { throw ValidationError("--duty-percent must be in 1...100") }
    }

    func run() throws {
        guard geteuid() == 0 else { throw BenchError("mmpolicy-bench tiering needs root (memcgs, zram, swapon, BPF)") }
        let list = contenders.split(separator: ",").map { TierContender(parsing: String($0).trimmed(" ")) }
        guard !list.isEmpty, Set(list).count == list.count else { throw BenchError("--contenders must name each contender once") }
        // Every contender is checked before anything is set up.
        for contender in list { try contender.checkAvailable(policies: policies, objects: objects) }
        for path in [workload] + (list.contains { $0.policyName != nil } ? [mmpolicy] : []) where access(path, X_OK) != 0 {
            throw BenchError("no executable \(path): build it with `swift build -c release --product \(path.split(separator: "/").last!)`")
        }
        guard access(memcgRoot + "/memory.limit_in_bytes", F_OK) == 0 else {
            throw BenchError("\(memcgRoot) is not a cgroup v1 memory hierarchy (no memory.limit_in_bytes): the static contender needs one")
        }
        Interrupt.install()
        let scratch = try ScratchDirectory()
        let settings = TierRunSettings(
            workload: workload, mmpolicy: mmpolicy, objects: objects, policies: policies, processes: processes, hot: hot, cold: cold,
            incompressible: incompressible, hotBytes: UInt64(parseSize(hot)!), coldBytes: UInt64(parseSize(cold)!),
            incompressibleBytes: UInt64(parseSize(incompressible)!), dutyPercent: dutyPercent, durationSeconds: duration,
            settleSeconds: settle, zramBytes: UInt64(parseSize(zramSize)!), zramPriority: zramPriority, staticFactor: staticFactor,
            control: control)
        let runner = TierRunner(settings: settings, scratch: scratch, memcgRoot: memcgRoot)
        let started = wallClockNanoseconds()
        print("# mmpolicy-bench tiering (kernel \(kernelRelease()), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, \(physicalMemoryBytes() >> 30) GiB, load average \(loadAverageText()))\n")
        print("Workload per run: \(processes) x `mmpolicy-workload tierload --hot \(hot) --cold \(cold) --incompressible \(incompressible) --duty-percent \(dutyPercent)`\(control ? " in the memcg, and a control process (the same hot loop, outside it)" : ""); zram \(zramSize) lz4 (priority \(zramPriority)) per run; \(duration) s per contender after \(settle) s of settling; \(rounds) round(s), order rotating.\n")
        var results: [TierRunResult] = []
        do {
            for round in 0..<rounds {
                let order = (0..<list.count).map { list[($0 + round) % list.count] }
                for contender in order {
                    try Interrupt.check()
                    print("round \(round + 1): \(contender)...")
                    fflush(nil)  // progress shows as it comes, also in a log file
                    let result = try runner.run(contender, round: round)
                    results.append(result)
                    TierReport.progress(result)
                    fflush(nil)
                }
            }
        } catch {
            scratch.keep = true
            if !results.isEmpty { TierReport(settings: settings, contenders: list, results: results).print() }
            throw error
        }
        print("")
        TierReport(settings: settings, contenders: list, results: results).print()
        print("Run took \(fmt(Double(wallClockNanoseconds() - started) / 6e10, 1)) min; load average at the end \(loadAverageText()).")
    }
}
