// `mmpolicy-bench oom`: how fast an OOM is resolved, mmpolicy against the
// kernel OOM killer (cgroup v1 memcg) and against earlyoom (system scope),
// and what the daemon costs when idle. See bench/README.md for the method.
import ArgumentParser
import BPFKit
import MMPolicyCore
import MMPolicyKinds

#if canImport(Glibc)
import Glibc
#endif

struct OOMBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "oom",
        abstract: "OOM reaction time: mmpolicy vs the kernel OOM killer (v1 memcg) and vs earlyoom (system scope); daemon idle cost.",
        discussion: """
            Needs root, the memory controller on cgroup v1, built BPF objects (make bpf) and release \
            binaries of mmpolicy and mmpolicy-workload. Everything it changes (the memcg \
            mmpolicy-bench-oom, RAM ballast, the daemon, earlyoom) is undone at the end and on ^C.
            """)

    @Option(help: "Directory of built BPF objects (the daemon's MMPOLICY_OBJECT_PATH).") var objects = "build/bpf"
    @Option(help: "Path of mmpolicy-workload.") var workload = ".build/release/mmpolicy-workload"
    @Option(help: "Path of mmpolicy (the daemon and its CLI).") var mmpolicy = ".build/release/mmpolicy"
    @Option(help: "Directory of policy manifests to copy for the daemon.") var policies = "policies"
    @Option(help: "Path of earlyoom.") var earlyoom = "/usr/bin/earlyoom"

    @Option(help: "Episodes per contender in the memcg comparison.") var episodes = 30
    @Option(help: "The benchmark memcg's memory.limit_in_bytes.") var memcgLimit = "192M"
    @Option(help: "Resident size of the intended victim (the largest process in the memcg).") var victimRss = "96M"
    @Option(help: "Resident size of the second, smaller holder.") var smallRss = "32M"
    @Option(help: "Growth rate of the memcg grower (mmpolicy-workload grow --rate).") var memcgRate = "512M"

    @Option(help: "Episodes per contender at system scope.") var systemEpisodes = 30
    @Option(help: "Growth rate of the system-scope grower.") var systemRate = "1G"
    @Option(help: "MiB of MemAvailable above the 10 % line when each system episode starts.") var headroomMib = 1536

    @Option(help: "Seconds of daemon idle measurement.") var idleSeconds = 30

    @Flag(help: "Skip the memcg comparison (a, b).") var skipMemcg = false
    @Flag(help: "Skip the system-scope comparison with earlyoom (c).") var skipSystem = false
    @Flag(help: "Skip the daemon idle measurement.") var skipIdle = false
    @Flag(help: "Measure only the peers (kernel killer, earlyoom): no daemon needed.") var peersOnly = false

    static let memcgPath = "/sys/fs/cgroup/memory/mmpolicy-bench-oom"

    func validate() throws {
        guard episodes >= 1, systemEpisodes >= 1 else { throw ValidationError("--episodes and --system-episodes must be at least 1") }
        guard parseSize(memcgLimit) != nil, parseSize(victimRss) != nil, parseSize(smallRss) != nil else {
            throw ValidationError("sizes are bytes with an optional K, M or G suffix")
        }
    }

    func run() throws {
        guard geteuid() == 0 else { throw BenchError("mmpolicy-bench oom must run as root") }
        for (path, what) in [(workload, "mmpolicy-workload")] + (peersOnly ? [] : [(mmpolicy, "mmpolicy")]) where access(path, X_OK) != 0 {
            throw BenchError("\(path) is missing: build \(what) with `swift build -c release --product \(what)`")
        }
        for object in ["oom_largest.bpf.o", "bench/kill_clock.bpf.o"] where access(objects + "/" + object, R_OK) != 0 {
            throw BenchError("\(objects)/\(object) is missing: run `make bpf`")
        }
        let rivals = processes(named: ["earlyoom", "nohang", "systemd-oomd"])
        guard rivals.isEmpty else {
            throw BenchError("another OOM killer is running (\(rivals.map { "\($0.comm) \($0.pid)" }.joined(separator: ", "))): it would race the contenders; stop it first")
        }
        let otherDaemons = processes(named: ["mmpolicy"])
        if !otherDaemons.isEmpty {
            print("note: other mmpolicy processes are running (pids \(otherDaemons.map { String($0.pid) }.joined(separator: ", "))); they do not govern \(Self.memcgPath)\n")
        }
        Interrupt.install()

        let memory = try MemInfo.read()
        let load = readSmallFile("/proc/loadavg").map { $0.split(separator: " ").prefix(3).joined(separator: " ") } ?? "?"
        print("# mmpolicy-bench oom (kernel \(kernelRelease()), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, \(memory.memTotal >> 20) MiB RAM, swap \(memory.swapTotal >> 20) MiB, load average \(load))\n")
        let scratch = try ScratchDirectory()
        do {
            let memcg = (!skipMemcg || !skipIdle) ? try BenchMemcg(path: Self.memcgPath, limitBytes: UInt64(parseSize(memcgLimit)!)) : nil
            let killClock = try KillClock(objects: objects)
            if !skipMemcg, let memcg { try runMemcg(memcg, scratch: scratch, killClock: killClock) }
            if !skipSystem { try runSystem(scratch: scratch, killClock: killClock) }
            if !skipIdle && !peersOnly, let memcg { try runIdle(memcg, scratch: scratch) }
        } catch {
            scratch.keep = true
            throw error
        }
    }

    // MARK: (a) and (b): v1 memcg

    func runMemcg(_ memcg: BenchMemcg, scratch: ScratchDirectory, killClock: KillClock) throws {
        let notifier = try OOMNotifier(memcg: memcg.path)
        let runner = MemcgEpisodeRunner(workload: workload, killClock: killClock, memcg: memcg, notifier: notifier,
                                        victimRSS: victimRss, smallRSS: smallRss, growRate: memcgRate)
        print("## memcg OOM: limit hit -> victim's memory released\n")
        print("One v1 memcg (\(memcg.path)), limit \(memcgLimit); per episode `hold --rss \(victimRss)` (the intended victim), `hold --rss \(smallRss)`, `grow --rate \(memcgRate)`. Event: the benchmark's own eventfd on memory.oom_control fires (its observer thread runs at SCHED_FIFO so it wakes at once); SIGKILL: the first SIGKILL to the workload that died (signal:signal_generate, same clock); released: that workload's pidfd is readable (it has exited, its mm is gone). \(episodes) episodes each.\n")

        // (b) the kernel killer alone.
        let control = try memcg.memcg.oomControl()
        guard !control.oomKillDisable else { throw BenchError("\(memcg.path) has oom_kill_disable 1: something else governs it") }
        var kernel: [MemcgEpisode] = []
        for _ in 0..<episodes {
            guard try !memcg.memcg.oomControl().oomKillDisable else { throw BenchError("oom_kill_disable of \(memcg.path) turned 1 during the kernel episodes: another daemon governs it") }
            var episode = try runner.run()
            if episode.problem == nil && episode.kernelKills == 0 { episode.problem = "the kernel killed nobody" }
            kernel.append(episode)
        }

        // (a) mmpolicy oom_largest, enforce, on the same memcg.
        var policy: [MemcgEpisode] = []
        var decisions: [EventRecord] = []
        var stopStatus: Int32?
        if !peersOnly {
            let daemon = try DaemonSession(mmpolicy: mmpolicy, objects: objects, policies: policies, scratch: scratch, name: "memcg")
            try daemon.load("oom_largest", scope: memcg.path, mode: "enforce")
            // The daemon disables the kernel killer on the group it governs.
            let disableDeadline = monotonicNanoseconds() + 5_000_000_000
            while try !memcg.memcg.oomControl().oomKillDisable {
                guard monotonicNanoseconds() < disableDeadline else { throw BenchError("the daemon did not take over \(memcg.path) (oom_kill_disable stayed 0)") }
                sleepMs(10)
            }
            for _ in 0..<episodes {
                var episode = try runner.run()
                if episode.problem == nil && episode.kernelKills > 0 { episode.problem = "the kernel killed (fallback)" }
                policy.append(episode)
                sleepMs(20)  // the daemon records the decision once under_oom clears
            }
            decisions = try daemon.decisions(policy: "oom_largest")
            stopStatus = daemon.stop()
        }
        let restored = try !memcg.memcg.oomControl().oomKillDisable

        let kernelValid = kernel.filter { $0.problem == nil }, policyValid = policy.filter { $0.problem == nil }
        let kernelMs = kernelValid.compactMap(\.latencyMs), policyMs = policyValid.compactMap(\.latencyMs)
        print("| killer | episodes | event -> SIGKILL p50 ms | p99 ms | event -> released p50 ms | p99 ms | max ms | died first: the \(victimRss) holder | memcg usage drop MiB (median) | kernel kills |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for (name, all, valid, ms) in [("kernel OOM killer (oom_kill_disable 0)", kernel, kernelValid, kernelMs),
                                       ("mmpolicy oom_largest (enforce)", policy, policyValid, policyMs)] {
            let victims = valid.filter { $0.died == "victim" }.count
            let drops = valid.compactMap(\.usageDropBytes).map { Double($0) / 1048576 }
            let toSignal = valid.compactMap(\.signalMs)
            print("| \(name) | \(valid.count)/\(all.count) | \(fmt(percentile(toSignal, 50), 2)) | \(fmt(percentile(toSignal, 99), 2)) | \(fmt(percentile(ms, 50), 2)) | \(fmt(percentile(ms, 99), 2)) | \(fmt(ms.max() ?? .nan, 2)) | \(victims)/\(valid.count) | \(fmt(percentile(drops, 50), 0)) | \(all.reduce(0) { $0 + $1.kernelKills }) |")
        }
        let p50Ratio = percentile(policyMs, 50) / percentile(kernelMs, 50), p99Ratio = percentile(policyMs, 99) / percentile(kernelMs, 99)
        print("\nmmpolicy / kernel: p50 \(fmt(p50Ratio, 2))x, p99 \(fmt(p99Ratio, 2))x (target <= 2x: \(p99Ratio <= 2 ? "met" : "not met"))")
        reportProblems("kernel", kernel)
        reportProblems("mmpolicy", policy)

        // The daemon's own account of each decision, from its wake-up.
        let enforced = decisions.filter { $0.decision?.outcome == .carriedOut }
        let victimPIDs = Set(policy.compactMap { $0.died == "victim" ? $0.diedPID : nil })
        let chose = enforced.filter { $0.decision?.oom?.victimPID.map(victimPIDs.contains) == true }.count
        print("\nmmpolicy's own latency breakdown (`mmpolicy events --json`), \(enforced.count) enforced of \(decisions.count) decisions, \(chose) chose the \(victimRss) holder:\n")
        printBreakdown(enforced, killTarget: true, cleared: true)
        if MeasuringThread.realtime.load(ordering: .relaxed) == 2 { print("\nnote: the measuring threads could not get SCHED_FIFO (no CAP_SYS_NICE): their wake-up delay is part of the times") }
        print("\ndaemon stopped with \(stopStatus.map(describeStatus) ?? "?"); oom_kill_disable of the memcg back to 0: \(restored ? "yes" : "NO")\n")
        if !restored { throw BenchError("the daemon left oom_kill_disable 1 on \(memcg.path)") }
    }

    /// The daemon's own account of its enforced decisions: ms from its wake-up to each step.
    func printBreakdown(_ enforced: [EventRecord], killTarget: Bool, cleared: Bool) {
        print("| step, from the daemon's wake-up | p50 ms | p99 ms | max ms | target |")
        print("|---|---|---|---|---|")
        var steps: [(String, @Sendable (DecisionRecord.Timing) -> Double?, Bool)] = [
            ("victim chosen (decidedUs)", { $0.decidedUs }, false),
            ("SIGKILL sent (step SIGKILL)", { $0.us(OOMStep.kill) }, killTarget),
            ("process_mrelease returned (step released)", { $0.us(OOMStep.released) }, false),
        ]
        if cleared { steps.append(("under_oom cleared (step cleared)", { $0.us(OOMStep.cleared) }, false)) }
        for (name, time, target) in steps {
            let ms = enforced.compactMap { $0.decision.flatMap { time($0.timing) } }.map { $0 / 1000 }
            let verdict = target ? "p99 <= 10 ms (" + (percentile(ms, 99) <= 10 ? "met)" : "not met)") : ""
            print("| \(name) | \(fmt(percentile(ms, 50), 2)) | \(fmt(percentile(ms, 99), 2)) | \(fmt(ms.max() ?? .nan, 2)) | \(verdict) |")
        }
    }

    func reportProblems(_ name: String, _ episodes: [MemcgEpisode]) {
        let problems = episodes.compactMap(\.problem)
        if !problems.isEmpty { print("\(name): \(problems.count) episodes not counted: \(Set(problems).sorted().joined(separator: "; "))") }
    }

    // MARK: (c): system scope, mmpolicy vs earlyoom

    func runSystem(scratch: ScratchDirectory, killClock: KillClock) throws {
        let reader = try MemAvailableReader()
        let ballast = try Ballast()
        let runner = SystemEpisodeRunner(workload: workload, ballast: ballast, reader: reader, thresholdPercent: 10,
                                         headroomBytes: UInt64(headroomMib) << 20, growRate: systemRate, killClock: killClock)
        print("## System scope: MemAvailable <= 10 % -> the grower's memory released\n")
        print("RAM is filled with ballast (memfd pages: no process owns them) until MemAvailable is \(headroomMib) MiB above 10 % of MemTotal; then one `grow --rate \(systemRate) --oom-score-adj 1000` allocates until killed. A sampler thread (SCHED_FIFO) reads /proc/meminfo every 1 ms: start = the last sample above 10 % before MemAvailable crossed it for the last time before the contender's signal (it can dip under the line for a moment and come back: a killer reading in between never saw that dip) (or, if the killer freed memory before any sample saw the crossing, the sample with the lowest MemAvailable), signal = the first SIGTERM/SIGKILL to the grower (signal:signal_generate), end = the grower's pidfd readable. \(systemEpisodes) episodes each, one killer at a time.\n")
        let memory = try MemInfo.read()
        guard memory.memAvailable > runner.thresholdBytes + runner.headroomBytes + (512 << 20) else {
            throw BenchError("MemAvailable is already \(memory.memAvailable >> 20) MiB: too little to start system episodes")
        }
        /// Episodes count only if the grower was signalled by the contender
        /// measured (not by another killer running on this machine).
        func attribute(_ episodes: inout [SystemEpisode], to sender: pid_t, _ name: String) {
            for i in episodes.indices where episodes[i].problem == nil && episodes[i].signalSender != sender {
                episodes[i].problem = "the grower was killed, but not by \(name)" + (episodes[i].signalSender.map { " (by pid \($0))" } ?? "")
            }
        }

        // The floor: the sampler itself kills at the first sample <= 10 %.
        var floor: [SystemEpisode] = []
        for _ in 0..<systemEpisodes {
            floor.append(try runner.run(killAtCrossing: true))
            sleepMs(100)
        }
        attribute(&floor, to: getpid(), "the sampler")

        // earlyoom at its defaults (-r 0 only turns off the periodic memory report).
        var early: [SystemEpisode] = []
        do {
            try runner.prepare()
            let killer = try ChildProcess(earlyoom, ["-r", "0"], output: .file(scratch.path + "/earlyoom.log"))
            defer { killer.stop() }
            sleepMs(500)
            if killer.reapIfExited() != nil { throw BenchError("earlyoom exited at start: \(readSmallFile(scratch.path + "/earlyoom.log") ?? "")") }
            for _ in 0..<systemEpisodes {
                early.append(try runner.run())
                sleepMs(200)
            }
            attribute(&early, to: killer.pid, "earlyoom")
        }

        // mmpolicy oom_largest at system scope, enforce, default thresholds.
        var policy: [SystemEpisode] = []
        var decisions: [EventRecord] = []
        if !peersOnly {
            try runner.prepare()
            let daemon = try DaemonSession(mmpolicy: mmpolicy, objects: objects, policies: policies, scratch: scratch, name: "system")
            try daemon.load("oom_largest", scope: "system", mode: "enforce")
            sleepMs(500)
            for _ in 0..<systemEpisodes {
                policy.append(try runner.run())
                sleepMs(200)
            }
            decisions = try daemon.decisions(policy: "oom_largest")
            daemon.stop()
            attribute(&policy, to: daemon.pid, "mmpolicy")
        }
        try ballast.resize(to: 0)

        print("| killer | episodes | crossing -> signal p50 ms | p99 ms | signal -> released p50 ms | crossing -> released p50 ms | p99 ms | max ms | signal | crossing seen by a sample | lowest MemAvailable % | longest sample gap ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        let rows: [(String, [SystemEpisode])] = [
            ("floor: the sampler sends SIGKILL + process_mrelease at its first sample <= 10 %", floor),
            ("earlyoom 1.7 (defaults, -r 0)", early),
            ("mmpolicy oom_largest (system, enforce)", policy),
        ]
        var reaction: [[Double]] = [], signalled: [[Double]] = []
        for (name, all) in rows {
            let valid = all.filter { $0.problem == nil }
            let ms = valid.compactMap(\.reactionMs), toSignal = valid.compactMap(\.signalMs)
            let release = valid.compactMap { e in e.reactionMs.flatMap { r in e.signalMs.map { r - $0 } } }
            reaction.append(ms)
            signalled.append(toSignal)
            let signals = Dictionary(grouping: valid.compactMap(\.signal), by: { $0 }).map { "\($0.value.count)x \(signalName($0.key))" }.sorted().joined(separator: ", ")
            print("| \(name) | \(valid.count)/\(all.count) | \(fmt(percentile(toSignal, 50))) | \(fmt(percentile(toSignal, 99))) | \(fmt(percentile(release, 50))) | \(fmt(percentile(ms, 50))) | \(fmt(percentile(ms, 99))) | \(fmt(ms.max() ?? .nan)) | \(signals) | \(valid.filter(\.crossingSeen).count)/\(valid.count) | \(fmt(valid.map(\.minAvailablePercent).min() ?? .nan, 2)) | \(fmt(valid.map(\.maxSampleGapMs).max() ?? .nan, 2)) |")
        }
        print("\nEpisodes timed from a later crossing, because MemAvailable dipped under the line and came back before it (each contender is timed from the last crossing before its signal): "
              + rows.map { "\($0.0.split(separator: ":").first ?? "") \($0.1.filter { $0.dips > 0 }.count)" }.joined(separator: ", ") + ".")
        for (name, all) in rows {
            let problems = all.compactMap(\.problem)
            if !problems.isEmpty { print("\n\(name): \(problems.count) episodes not counted: \(Set(problems).sorted().joined(separator: "; "))") }
        }
        if !peersOnly {
            let enforced = decisions.filter { $0.decision?.outcome == .carriedOut }
            let growers = Set(policy.map(\.growerPID))
            var perGrower: [Int32: Int] = [:]
            for record in enforced { if let pid = record.decision?.oom?.victimPID { perGrower[pid, default: 0] += 1 } }
            let others = enforced.filter { $0.decision?.oom?.victimPID.map(growers.contains) != true }
            let repeats = perGrower.filter { growers.contains($0.key) && $0.value > 1 }
            if !others.isEmpty || !repeats.isEmpty {
                print("\nmmpolicy also killed: \(others.map { "pid \($0.decision?.oom?.victimPID ?? 0) (\($0.decision?.oom?.victimComm ?? "?"))" }.joined(separator: ", ")); growers killed more than once: \(repeats.map { "pid \($0.key) \($0.value)x" }.sorted().joined(separator: ", "))")
            }
            print("\nmmpolicy's own latency breakdown at system scope, \(enforced.count) enforced of \(decisions.count) decisions:\n")
            printBreakdown(enforced, killTarget: false, cleared: false)
            let wakers = Dictionary(grouping: enforced.map { $0.decision?.wokenBy ?? "?" }, by: { $0 })
                .map { "\($0.value.count)x \($0.key)" }.sorted().joined(separator: ", ")
            let wakeMs = enforced.compactMap { $0.decision?.timing.wakeUs.map { $0 / 1000 } }
            print("\nWhat woke the daemon for them: \(wakers); from a sensor's event to the daemon awake p50 \(fmt(percentile(wakeMs, 50))) ms, max \(fmt(wakeMs.max() ?? .nan)) ms.")
            print("Per episode, crossing -> signal ms (in order): \(policy.map { $0.signalMs.map { fmt($0) } ?? "-" }.joined(separator: ", "))")
            print("Per decision, woken by (wake ms): \(enforced.map { "\($0.decision?.wokenBy ?? "?")" + ($0.decision?.timing.wakeUs.map { " (\(fmt($0 / 1000)))" } ?? "") }.joined(separator: ", "))")
        }
        func ratio(_ series: [[Double]], _ p: Double) -> Double { percentile(series[2], p) / percentile(series[1], p) }
        let full50 = ratio(reaction, 50), full99 = ratio(reaction, 99), sig50 = ratio(signalled, 50), sig99 = ratio(signalled, 99)
        print("\nmmpolicy / earlyoom, crossing -> released: p50 \(fmt(full50, 3))x, p99 \(fmt(full99, 3))x (target <= 0.5x: \(full50 <= 0.5 && full99 <= 0.5 ? "met" : "not met"))")
        print("mmpolicy / earlyoom, crossing -> signal: p50 \(fmt(sig50, 3))x, p99 \(fmt(sig99, 3))x (target <= 0.5x: \(sig50 <= 0.5 && sig99 <= 0.5 ? "met" : "not met"))\n")
    }

    // MARK: daemon idle

    func runIdle(_ memcg: BenchMemcg, scratch: ScratchDirectory) throws {
        print("## Daemon idle\n")
        let daemon = try DaemonSession(mmpolicy: mmpolicy, objects: objects, policies: policies, scratch: scratch, name: "idle")
        try daemon.load("oom_largest", scope: "system", mode: "observe")
        try daemon.load("oom_growth", scope: memcg.path, mode: "enforce")
        sleepMs(2000)  // past loading
        guard let ticks0 = cpuTicks(pid: daemon.pid) else { throw BenchError("cannot read /proc/\(daemon.pid)/stat") }
        let start = monotonicNanoseconds()
        while monotonicNanoseconds() - start < UInt64(idleSeconds) * 1_000_000_000 {
            try Interrupt.check()
            sleepMs(100)
        }
        guard let ticks1 = cpuTicks(pid: daemon.pid) else { throw BenchError("the daemon died while idle; log in \(daemon.log)") }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let cpuPercent = Double(ticks1 - ticks0) / Double(sysconf(Int32(_SC_CLK_TCK))) / seconds * 100
        let rss = statusBytes(pid: daemon.pid, key: "VmRSS").map { Double($0) / 1e6 } ?? .nan
        let hwm = statusBytes(pid: daemon.pid, key: "VmHWM").map { Double($0) / 1e6 } ?? .nan
        daemon.stop()
        print("oom_largest (system, observe) and oom_growth (\(memcg.path), enforce) loaded; \(idleSeconds) s idle.\n")
        print("| metric | value | target | met? |")
        print("|---|---|---|---|")
        print("| CPU, % of one core | \(fmt(cpuPercent, 2)) | <= 1 % | \(cpuPercent <= 1 ? "yes" : "no") |")
        print("| VmRSS, MB | \(fmt(rss)) | <= 40 MB | \(rss <= 40 ? "yes" : "no") |")
        print("| VmHWM (peak RSS, includes loading), MB | \(fmt(hwm)) | - | - |")
        print("")
    }
}

func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGKILL: "SIGKILL"
    case SIGTERM: "SIGTERM"
    default: "signal \(signal)"
    }
}

/// Bytes from "192M"-style text (binary K, M, G suffixes), as mmpolicy-workload reads it.
func parseSize(_ text: String) -> Int? {
    var digits = Substring(text), unit = 1
    switch digits.last {
    case "K", "k": unit = 1 << 10
    case "M", "m": unit = 1 << 20
    case "G", "g": unit = 1 << 30
    default: break
    }
    if unit != 1 { digits = digits.dropLast() }
    guard let value = Int(digits), value >= 0 else { return nil }
    return value * unit
}
