// `mmpolicy-bench watchdog`: how fast the daemon's watchdog ejects a harmful
// policy (breach onset -> policy unloaded and its knob restored), for the
// refault guard and the decision-health guards, and what the watchdog's
// sampling costs with 5 policies loaded. See bench/README.md for the method.
import ArgumentParser
import BPFKit
import MMPolicyCore
import MMPolicyKinds
import MMPolicyWatchdog

#if canImport(Glibc)
import Glibc
#endif

struct WatchdogBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "watchdog",
        abstract: "Watchdog detection latency (refault guard, decision-health guards) and the sampler's CPU cost with 5 policies.",
        discussion: """
            Needs root, the memory controller on cgroup v1, a free /dev/zram0 (for the refault trials), \
            built BPF objects (make bpf, with the fixture oom_fixed_victim) and release binaries of \
            mmpolicy and mmpolicy-workload. Everything it changes (memcgs mmpolicy-bench-wd-*, zram \
            swap, its daemons) is undone at the end and on ^C.
            """)

    @Option(help: "Directory of built BPF objects (the daemon's MMPOLICY_OBJECT_PATH).") var objects = "build/bpf"
    @Option(help: "Path of mmpolicy-workload.") var workload = ".build/release/mmpolicy-workload"
    @Option(help: "Path of mmpolicy (the daemon and its CLI).") var mmpolicy = ".build/release/mmpolicy"
    @Option(help: "Directory of policy manifests to copy for the daemon.") var policies = "policies"

    @Option(help: "Trials per guard (at least 20 for a p99).") var trials = 20
    @Option(help: "memory.limit_in_bytes of each trial's memcg.") var memcgLimit = "64M"
    @Option(help: "Working set of the thrashing workload (refault trials).") var thrashRss = "128M"
    @Option(help: "Growth rate of the respawning grower (decision-health trials).") var growRate = "200M"
    @Option(help: "Size of the zram swap device for the refault trials.") var zramSize = "1G"
    @Option(help: "Seconds a trial may take from the workload's start to the ejection.") var trialTimeout = 30
    @Option(help: "Seconds of each CPU-cost measurement.") var costSeconds = 60
    @Option(help: "Seconds to settle before each CPU-cost measurement.") var settleSeconds = 3

    @Flag(help: "Skip the refault-guard trials (and zram).") var skipRefault = false
    @Flag(help: "Skip the decision-health trials.") var skipDecision = false
    @Flag(help: "Skip the CPU-cost measurement.") var skipCost = false

    static let memcgPrefix = "/sys/fs/cgroup/memory/mmpolicy-bench-wd"
    static let refaultGuards: Set<String> = ["max_refault_rate_per_gib", "max_refault_ratio"]

    func validate() throws {
        guard trials >= 1, costSeconds >= 1, trialTimeout >= 5, settleSeconds >= 0 else {
            throw ValidationError("--trials and --cost-seconds must be at least 1, --trial-timeout at least 5")
        }
        guard parseSize(memcgLimit) != nil, parseSize(thrashRss) != nil, parseSize(growRate) != nil, parseSize(zramSize) != nil else {
            throw ValidationError("sizes are bytes with an optional K, M or G suffix")
        }
    }

    var limitBytes: UInt64 { UInt64(parseSize(memcgLimit)!) }

    func run() throws {
        guard geteuid() == 0 else { throw BenchError("mmpolicy-bench watchdog must run as root") }
        for (path, what) in [(workload, "mmpolicy-workload"), (mmpolicy, "mmpolicy")] where access(path, X_OK) != 0 {
            throw BenchError("\(path) is missing: build \(what) with `swift build -c release --product \(what)`")
        }
        for object in ["oom_largest.bpf.o", "oom_growth.bpf.o", "fixtures/oom_fixed_victim.bpf.o"] where access(objects + "/" + object, R_OK) != 0 {
            throw BenchError("\(objects)/\(object) is missing: run `make bpf`")
        }
        if !skipRefault { try ZramSwapDevice.checkFree() }
        Interrupt.install()

        let memory = try MemInfo.read()
        print("# mmpolicy-bench watchdog (kernel \(kernelRelease()), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs, \(memory.memTotal >> 20) MiB RAM, swap \(memory.swapTotal >> 20) MiB, load average \(loadAverage()))\n")
        let scratch = try ScratchDirectory()
        do {
            var detection: [DetectionRun] = []
            if !skipRefault { detection.append(try runRefault(scratch: scratch)) }
            if !skipDecision { detection.append(try runDecision(scratch: scratch)) }
            if !detection.isEmpty { printDetection(detection) }
            if !skipCost { try runCost(scratch: scratch) }
        } catch {
            scratch.keep = true
            throw error
        }
    }

    func loadAverage() -> String {
        readSmallFile("/proc/loadavg").map { $0.split(separator: " ").prefix(3).joined(separator: " ") } ?? "?"
    }

    func progress(_ text: String) {
        fflush(nil)  // the tables so far first
        let line = "mmpolicy-bench watchdog: \(text)\n"
        _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
    }

    static func guardDefault(_ key: String) -> Double? {
        GuardTable.defaultValue(key, for: OOMKind())
    }

    // MARK: one detection trial

    /// One guard's trials.
    struct DetectionRun {
        var name: String
        var trials: [DetectionTrial]
        /// Refault trials: the onset rate, pages/s; 0 for decision trials.
        var pagesPerSecond: Double
        /// The daemon's watchdog window (status --json).
        var windowSeconds: Double
    }

    /// What one trial measured, on CLOCK_MONOTONIC.
    struct DetectionTrial {
        /// Breach onset: the sampler's first thrashing sample, or the daemon's first decision error.
        var onsetNs: UInt64?
        /// The first sample of the run of oom_kill_disable 0 that lasted past the ejection.
        var restoredNs: UInt64?
        /// The daemon's exit event.
        var exitNs: UInt64?
        var guardName: String?
        /// The workload printed "ready" (refault trials: thrashing starts).
        var workloadReadyNs: UInt64?
        /// Refault trials: refaulted pages in the onset sample's interval, and that interval.
        var onsetPages: UInt64 = 0
        var onsetIntervalNs: UInt64 = 0
        /// Decision trials: the error that first breaches max_decision_errors (its limit + 1-th).
        var breachableNs: UInt64?
        /// Decision trials: errors recorded before the exit; times the knob dropped to 0 (kernel handovers, then the ejection).
        var errors = 0
        var knobDrops = 0
        /// The ejection came while a fallback had handed the OOM to the kernel (the knob was 0
        /// already): `restoredNs` is then the exit event's time.
        var duringHandover = false
        var longestGapMs: Double = 0
        var problem: String?

        var latencyS: Double? { restoredNs.flatMap { r in onsetNs.map { Double(Int64(r) - Int64($0)) / 1e9 } } }
        var daemonS: Double? { exitNs.flatMap { e in onsetNs.map { Double(Int64(e) - Int64($0)) / 1e9 } } }
        /// The knob's return -> the exit event recorded, ms.
        var restoredToExitMs: Double? { exitNs.flatMap { e in restoredNs.map { Double(Int64(e) - Int64($0)) / 1e6 } } }
    }

    /// Sleeps a random time within one window, so that each trial's breach
    /// begins anywhere in the watchdog's fixed grid of windows (right after
    /// `waitForWindows` it would always begin at about the same phase).
    func randomPhase(windowSeconds: Double) throws {
        var left = Int.random(in: 0..<max(1, Int(windowSeconds * 1000)))
        while left > 0 {
            try Interrupt.check()
            sleepMs(min(left, 100))
            left -= 100
        }
    }

    /// Waits until oom_kill_disable has read 0 for 300 ms and `status` no
    /// longer lists `policy` (a fallback's handover to the kernel also sets
    /// the knob to 0, for a few ms); false on timeout.
    func awaitEjection(_ daemon: DaemonSession, policy: String, sampler: ScopeSampler, timeoutMs: Int) throws -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(timeoutMs) * 1_000_000
        var checked: (run: UInt64, at: UInt64) = (0, 0)
        while monotonicNanoseconds() < deadline {
            try Interrupt.check()
            let since = sampler.knobOffSinceNs.load(ordering: .sequentiallyConsistent), now = monotonicNanoseconds()
            if since != 0, now - since >= 300_000_000, since != checked.run || now - checked.at >= 1_000_000_000 {
                if try !daemon.watchdogStatus().policies.contains(where: { $0.name == policy }) { return true }
                checked = (since, now)
            }
            sleepMs(20)
        }
        return false
    }

    /// After the sampler stopped: the exit event, the knob's final return, the checks.
    func finish(_ trial: inout DetectionTrial, daemon: DaemonSession, policy: String, memcg: BenchMemcg, sampler: ScopeSampler,
                ejected: Bool, offsetNs: Int64, events: [EventRecord]) throws {
        trial.longestGapMs = Double(sampler.maxGapNs) / 1e6
        trial.knobDrops = sampler.knobDrops
        let exit = events.first { $0.type == .exit }
        if let exit {
            trial.guardName = exit.exit?.guardName
            trial.exitNs = UInt64(Int64(exit.timeNs) - offsetNs)
            if exit.exit?.restoredKnobs.contains(where: { $0.hasPrefix(memcg.path + "/memory.oom_control") }) != true {
                trial.problem = "the exit event lists no restored memory.oom_control: \(exit.exit?.restoredKnobs ?? [])"
            }
        }
        trial.restoredNs = sampler.finalOffNs
        if let restored = trial.restoredNs, let exitNs = trial.exitNs, restored + 100_000_000 < exitNs {
            trial.duringHandover = true
            trial.restoredNs = exitNs
        }
        let knobNow = try memcg.memcg.oomControl().oomKillDisable
        if !ejected {
            let loaded = try daemon.watchdogStatus().policies.contains { $0.name == policy }
            trial.problem = loaded ? "not ejected within \(trialTimeout) s" : "ejected, but oom_kill_disable did not stay 0 for 300 ms"
        } else if exit == nil {
            trial.problem = "unloaded, but no exit event"
        } else if knobNow {
            trial.problem = "oom_kill_disable is 1 again after the ejection"
        } else if trial.onsetNs == nil {
            trial.problem = "no breach onset seen"
        } else if let onset = trial.onsetNs, let restored = trial.restoredNs, restored < onset {
            trial.problem = "the knob was back to 0 before the onset"
        }
    }

    // MARK: refault guard

    func runRefault(scratch: ScratchDirectory) throws -> DetectionRun {
        guard let perGiB = Self.guardDefault("max_refault_rate_per_gib") else { throw BenchError("no default for max_refault_rate_per_gib") }
        let pagesPerSecond = perGiB * Double(limitBytes) / Double(1 << 30)
        let perSample = pagesPerSecond * Double(ScopeSampler.periodNs) / 1e9
        print("## Detection latency, refault guard\n")
        print("One daemon of the benchmark's own (default 1 s windows and guards), zram swap of \(zramSize) on /dev/zram0. Per trial: a fresh v1 memcg (limit \(memcgLimit)); `mmpolicy load oom_largest --name wd_refault_N --scope <memcg> --mode enforce` (sets oom_kill_disable 1 on it); wait for 2 watchdog windows of the policy in `status --json`; start a sampler thread (SCHED_FIFO, every 5 ms: memory.stat and memory.oom_control); wait a random time within one window (so the breach begins at any phase of the watchdog's fixed window grid); start `mmpolicy-workload thrash --rss \(thrashRss) --cgroup <memcg>`. Onset: the first 5 ms sample in which total_workingset_refault_anon rose at least at the guard's rate: max_refault_rate_per_gib \(fmt(perGiB, 0)) x \(memcgLimit) = \(fmt(pagesPerSecond, 0)) pages/s, i.e. >= \(fmt(perSample, 1)) pages in 5 ms (the actual interval is used). Restored: the first sample of the run of `oom_kill_disable 0` still going once `status --json` no longer lists the policy; the exit event (`events --json`) must name a refault guard and list the memcg's memory.oom_control among the restored knobs. \(trials) trials.\n")
        let zram = try ZramSwapDevice(sizeBytes: UInt64(parseSize(zramSize)!))
        defer { zram.off() }
        let daemon = try DaemonSession(mmpolicy: mmpolicy, objects: objects, policies: policies, scratch: scratch, name: "refault")
        defer { daemon.stop() }
        let window = try daemon.watchdogStatus().watchdog?.windowSeconds ?? 1
        var results: [DetectionTrial] = []
        for index in 1...trials {
            let trial = try refaultTrial(index, daemon: daemon, pagesPerSecond: pagesPerSecond, windowSeconds: window)
            progress("refault trial \(index)/\(trials): \(trial.problem ?? "\(fmt(trial.latencyS ?? .nan, 3)) s, \(trial.guardName ?? "?")")")
            results.append(trial)
        }
        daemon.stop()
        zram.off()
        return DetectionRun(name: "refault: oom_largest (enforce), `thrash --rss \(thrashRss)` in a \(memcgLimit) memcg on zram swap",
                            trials: results, pagesPerSecond: pagesPerSecond, windowSeconds: window)
    }

    func refaultTrial(_ index: Int, daemon: DaemonSession, pagesPerSecond: Double, windowSeconds: Double) throws -> DetectionTrial {
        try Interrupt.check()
        let memcg = try BenchMemcg(path: "\(Self.memcgPrefix)-refault-\(index)", limitBytes: limitBytes)
        let policy = "wd_refault_\(index)"
        return try armedTrial(policy, load: ["oom_largest"], memcg: memcg, daemon: daemon, refaultPagesPerSecond: pagesPerSecond) { sampler, stopSampler, offset in
            var thrash: ChildProcess?
            defer {
                thrash?.kill(SIGKILL)
                thrash?.wait()
            }
            sleepMs(20)  // the sampler's baseline
            try randomPhase(windowSeconds: windowSeconds)
            let child = try ChildProcess(workload, ["thrash", "--rss", thrashRss, "--cgroup", memcg.path])
            thrash = child
            try child.waitReady()
            var trial = DetectionTrial()
            trial.workloadReadyNs = monotonicNanoseconds()
            let ejected = try awaitEjection(daemon, policy: policy, sampler: sampler, timeoutMs: trialTimeout * 1000)
            stopSampler()
            trial.onsetNs = sampler.onsetNs
            trial.onsetPages = sampler.onsetPages
            trial.onsetIntervalNs = sampler.onsetIntervalNs
            let events = ejected ? try daemon.events(policy: policy) : []
            try finish(&trial, daemon: daemon, policy: policy, memcg: memcg, sampler: sampler, ejected: ejected, offsetNs: offset, events: events)
            if trial.problem == nil, let name = trial.guardName, !Self.refaultGuards.contains(name) {
                trial.problem = "tripped by \(name), not a refault guard"
            }
            if trial.problem == nil, sampler.knobDrops != 1 { trial.problem = "oom_kill_disable dropped to 0 \(sampler.knobDrops) times" }
            return (trial, ejected)
        }
    }

    // MARK: decision-health guards

    func runDecision(scratch: ScratchDirectory) throws -> DetectionRun {
        let errors = Self.guardDefault("max_decision_errors").map { fmt($0, 0) } ?? "?"
        let fallbacks = Self.guardDefault("max_consecutive_fallbacks").map { fmt($0, 0) } ?? "?"
        let kills = Self.guardDefault("max_kills_per_minute").map { fmt($0, 0) } ?? "?"
        print("## Detection latency, decision-health guards\n")
        print("Same daemon set-up (default windows and guards), no swap for the memcg (memory.memsw.limit_in_bytes = its limit). Per trial: a fresh v1 memcg (limit \(memcgLimit)); `mmpolicy load oom_fixed_victim --name wd_decision_N --set return_error=1 --scope <memcg> --mode enforce` (the test fixture Tests/Fixtures/bpf/oom_fixed_victim.bpf.c: select_victim returns -EINVAL); 2 windows; the 5 ms sampler on memory.oom_control; a random wait within one window; a shell loop restarting `mmpolicy-workload grow --rate \(growRate) --cgroup <memcg>` (0.05 s apart) while the memcg exists. Each OOM is a decision error and a fallback: the daemon hands the OOM to the kernel (oom_kill_disable 0 for a few ms until the kernel has killed, then 1 again). Onset: the timeNs of the first `decision` event whose detail says \"select_victim failed\". Restored: the first sample of the run of `oom_kill_disable 0` still going once `status --json` no longer lists the policy; if that run began more than 100 ms before the exit event, the ejection came during a handover (the knob was 0 already) and the exit event's time is used instead. Default guards that can trip: max_decision_errors \(errors) in 60 s, max_consecutive_fallbacks \(fallbacks), and max_kills_per_minute \(kills) (the kernel's kills in a governed memcg count). \(trials) trials.\n")
        let fixture = """
            # mmpolicy-bench watchdog: the test fixture, whose select_victim fails with --set return_error=1.
            name = "oom_fixed_victim"
            kind = "oom"
            object = "\(absolutePath(objects))/fixtures/oom_fixed_victim.bpf.o"
            description = "Names a fixed victim; return_error=1 makes select_victim return -EINVAL"

            """
        let daemon = try DaemonSession(mmpolicy: mmpolicy, objects: objects, policies: policies, scratch: scratch, name: "decision",
                                       extraManifests: ["oom_fixed_victim.toml": fixture])
        defer { daemon.stop() }
        let window = try daemon.watchdogStatus().watchdog?.windowSeconds ?? 1
        var results: [DetectionTrial] = []
        for index in 1...trials {
            let trial = try decisionTrial(index, daemon: daemon, windowSeconds: window)
            progress("decision trial \(index)/\(trials): \(trial.problem ?? "\(fmt(trial.latencyS ?? .nan, 3)) s, \(trial.guardName ?? "?")")")
            results.append(trial)
        }
        daemon.stop()
        return DetectionRun(name: "decision health: oom_fixed_victim return_error=1 (enforce), respawning `grow --rate \(growRate)` in a \(memcgLimit) memcg",
                            trials: results, pagesPerSecond: 0, windowSeconds: window)
    }

    func decisionTrial(_ index: Int, daemon: DaemonSession, windowSeconds: Double) throws -> DetectionTrial {
        try Interrupt.check()
        let memcg = try BenchMemcg(path: "\(Self.memcgPrefix)-decision-\(index)", limitBytes: limitBytes)
        let memsw = memcg.path + "/memory.memsw.limit_in_bytes"
        if access(memsw, F_OK) == 0 {
            try write(memsw, String(limitBytes))
        } else if (try MemInfo.read()).swapTotal > 0 {
            throw BenchError("swap is on and \(memsw) is missing (no swap accounting): the grower would swap instead of hitting OOM")
        }
        let policy = "wd_decision_\(index)"
        return try armedTrial(policy, load: ["oom_fixed_victim", "--set", "return_error=1"], memcg: memcg, daemon: daemon,
                              refaultPagesPerSecond: nil) { sampler, stopSampler, offset in
            var loop: ChildProcess?
            defer {
                loop?.kill(SIGKILL)
                loop?.wait()
                memcg.killAll()
            }
            try randomPhase(windowSeconds: windowSeconds)
            let command = "'\(workload)' grow --rate '\(growRate)' --cgroup '\(memcg.path)'"
            loop = try ChildProcess("/bin/sh", ["-c", "while [ -d '\(memcg.path)' ]; do \(command); sleep 0.05; done"], output: .null)
            var trial = DetectionTrial()
            let ejected = try awaitEjection(daemon, policy: policy, sampler: sampler, timeoutMs: trialTimeout * 1000)
            stopSampler()
            let events = ejected ? try daemon.events(policy: policy) : []
            let failures = events.filter { $0.type == .decision && $0.decision?.detail.contains("select_victim failed") == true }
            if let first = failures.first { trial.onsetNs = UInt64(Int64(first.timeNs) - offset) }
            let limit = Int(Self.guardDefault("max_decision_errors") ?? 3)
            if failures.count > limit { trial.breachableNs = UInt64(Int64(failures[limit].timeNs) - offset) }
            let exitTime = events.first { $0.type == .exit }?.timeNs ?? .max
            trial.errors = failures.filter { $0.timeNs <= exitTime }.count
            try finish(&trial, daemon: daemon, policy: policy, memcg: memcg, sampler: sampler, ejected: ejected, offsetNs: offset, events: events)
            return (trial, ejected)
        }
    }

    /// What every detection trial does around its workload: loads `policy`
    /// (`mmpolicy load <load...> --name policy --scope <memcg> --mode enforce`),
    /// checks that it disabled the kernel killer on the memcg, waits for 2
    /// watchdog windows, and runs the 5 ms sampler while `body` starts the
    /// harm and waits for the ejection. `body` gets the sampler, a way to
    /// stop it, and CLOCK_REALTIME - CLOCK_MONOTONIC; it returns the trial
    /// and whether the policy was ejected (if not, it is unloaded here).
    func armedTrial(_ policy: String, load: [String], memcg: BenchMemcg, daemon: DaemonSession, refaultPagesPerSecond: Double?,
                    _ body: (ScopeSampler, () -> Void, Int64) throws -> (DetectionTrial, ejected: Bool)) throws -> DetectionTrial {
        try daemon.cli(["load"] + load + ["--name", policy, "--scope", memcg.path, "--mode", "enforce"])
        var ejected = false
        defer {
            if !ejected { _ = try? daemon.cli(["unload", policy]) }
            withExtendedLifetime(memcg) {}
        }
        guard try memcg.memcg.oomControl().oomKillDisable else { throw BenchError("loading \(policy) in enforce mode left oom_kill_disable 0 on \(memcg.path)") }
        try daemon.waitForWindows(policy: policy, windows: 2)
        let offset = wallMinusMonotonicNs()
        let sampler = try ScopeSampler(memcg: memcg.path, refaultPagesPerSecond: refaultPagesPerSecond)
        let thread = try MeasuringThread { sampler.run() }
        let stop = {
            sampler.stop()
            thread.join()
        }
        defer { stop() }
        let (trial, wasEjected) = try body(sampler, stop, offset)
        ejected = wasEjected
        return trial
    }

    // MARK: tables

    func printDetection(_ runs: [DetectionRun]) {
        let breach = GuardDefaults.breachWindows
        print("## Detection latency: results\n")
        print("| breach | trials | tripped by | onset -> knob restored p50 s | p99 s | max s | daemon: onset -> exit event p50 s | p99 s | max s | exit event - knob restored, p50 ms | max ms | longest sampler gap ms |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for run in runs {
            let (name, all) = (run.name, run.trials)
            let valid = all.filter { $0.problem == nil }
            let latency = valid.compactMap(\.latencyS), daemonView = valid.compactMap(\.daemonS)
            let toExit = valid.filter { !$0.duringHandover }.compactMap(\.restoredToExitMs)
            let guards = Dictionary(grouping: valid.compactMap(\.guardName), by: { $0 }).map { "\($0.value.count)x \($0.key)" }.sorted().joined(separator: ", ")
            print("| \(name) | \(valid.count)/\(all.count) | \(guards) | \(fmt(percentile(latency, 50), 3)) | \(fmt(percentile(latency, 99), 3)) | \(fmt(latency.max() ?? .nan, 3)) | \(fmt(percentile(daemonView, 50), 3)) | \(fmt(percentile(daemonView, 99), 3)) | \(fmt(daemonView.max() ?? .nan, 3)) | \(fmt(percentile(toExit, 50), 1)) | \(fmt(toExit.max() ?? .nan, 1)) | \(fmt(valid.map(\.longestGapMs).max() ?? .nan, 1)) |")
        }
        print("")
        for run in runs {
            let (name, all, pagesPerSecond) = (run.name, run.trials, run.pagesPerSecond)
            let window = run.windowSeconds, bound = run.windowSeconds * Double(breach) + 1
            let valid = all.filter { $0.problem == nil }
            let latency = valid.compactMap(\.latencyS)
            let label = name.split(separator: ":").first.map(String.init) ?? name
            // Decision-health trials: from the error that takes the count over its limit.
            let fromBreachable = valid.compactMap { t in t.breachableNs.flatMap { b in t.restoredNs.map { Double(Int64($0) - Int64(b)) / 1e9 } } }
            print("- \(label): per trial, onset -> restored s: \(valid.compactMap(\.latencyS).map { fmt($0, 2) }.joined(separator: ", "))")
            if pagesPerSecond > 0 {
                let toOnset = valid.compactMap { t in t.onsetNs.flatMap { o in t.workloadReadyNs.map { Double(Int64(o) - Int64($0)) / 1e9 } } }
                let pages = valid.map { Double($0.onsetPages) }
                let rates = valid.filter { $0.onsetIntervalNs > 0 }.map { Double($0.onsetPages) * 1e9 / Double($0.onsetIntervalNs) }
                print("- \(label): thrash ready -> onset p50 \(fmt(percentile(toOnset, 50), 3)) s (max \(fmt(toOnset.max() ?? .nan, 3)) s); refaults in the onset sample p50 \(fmt(percentile(pages, 50), 0)) pages (\(fmt(percentile(rates, 50), 0)) pages/s, threshold \(fmt(pagesPerSecond, 0)))")
            } else {
                let errors = valid.map { Double($0.errors) }, drops = valid.map { Double($0.knobDrops) }
                let handovers = valid.filter(\.duringHandover).count
                let toBreachable = valid.compactMap { t in t.breachableNs.flatMap { b in t.onsetNs.map { Double(Int64(b) - Int64($0)) / 1e9 } } }
                let limit = Int(Self.guardDefault("max_decision_errors") ?? 3)
                print("- \(label): the guard can first breach at error \(limit + 1) (max_decision_errors \(limit)): first error -> error \(limit + 1) p50 \(fmt(percentile(toBreachable, 50), 3)) s (max \(fmt(toBreachable.max() ?? .nan, 3)) s); error \(limit + 1) -> knob restored p50 \(fmt(percentile(fromBreachable, 50), 3)) s, p99 \(fmt(percentile(fromBreachable, 99), 3)) s, max \(fmt(fromBreachable.max() ?? .nan, 3)) s")
                print("- \(label): decision errors recorded before the exit p50 \(fmt(percentile(errors, 50), 0)) (\(fmt(errors.min() ?? .nan, 0))-\(fmt(errors.max() ?? .nan, 0))); drops of the knob to 0 the sampler saw per trial (handovers + the ejection; handovers under 5 ms can fall between samples) p50 \(fmt(percentile(drops, 50), 0)); ejected during a handover (end = exit event): \(handovers)")
            }
            let problems = all.compactMap(\.problem)
            if !problems.isEmpty { print("- \(label): \(problems.count) trial(s) not counted: \(Set(problems).sorted().joined(separator: "; "))") }
            // Breach onset is when the guarded figure first crosses its
            // threshold: for the refault guard the first thrashing sample; for
            // a count guard the event that takes the count over its limit
            // (error limit+1), not the first error.
            let fromOnset = pagesPerSecond > 0 ? latency : fromBreachable
            let p99 = percentile(fromOnset, 99)
            let onsetName = pagesPerSecond > 0 ? "from the first thrashing sample" : "from the error that breaches the guard"
            print("- \(label): target p99 <= \(fmt(window, 0)) s windows x \(breach) + 1 s = \(fmt(bound, 0)) s, \(onsetName): \(p99 <= bound && valid.count == all.count ? "met" : "not met") (p99 \(fmt(p99, 3)) s\(valid.count == all.count ? "" : ", \(all.count - valid.count) trial(s) failed"))")
        }
        if MeasuringThread.realtime.load(ordering: .relaxed) == 2 { print("\nnote: the sampler threads could not get SCHED_FIFO (no CAP_SYS_NICE): their wake-up delay is part of the times") }
        print("\nload average after the trials: \(loadAverage())\n")
    }

    // MARK: sampler CPU

    struct CostRow {
        var policies: Int
        var seconds: Double
        var samples: UInt64
        var cpuNs: UInt64
        var daemonTicks: UInt64
        var load: String
    }

    func measureCost(_ daemon: DaemonSession, policies: Int) throws -> CostRow {
        for _ in 0..<(settleSeconds * 10) { try Interrupt.check(); sleepMs(100) }
        guard let ticks0 = cpuTicks(pid: daemon.pid) else { throw BenchError("cannot read /proc/\(daemon.pid)/stat") }
        let start = monotonicNanoseconds()
        guard let cost0 = try daemon.watchdogStatus().watchdog else { throw BenchError("`status --json` has no watchdog cost") }
        guard cost0.policies == policies else { throw BenchError("the watchdog watches \(cost0.policies) policies, not \(policies)") }
        while monotonicNanoseconds() - start < UInt64(costSeconds) * 1_000_000_000 {
            try Interrupt.check()
            sleepMs(100)
        }
        guard let cost1 = try daemon.watchdogStatus().watchdog, let ticks1 = cpuTicks(pid: daemon.pid) else {
            throw BenchError("the daemon died while measured; log in \(daemon.log)")
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        return CostRow(policies: policies, seconds: seconds, samples: cost1.samples - cost0.samples, cpuNs: cost1.cpuNs - cost0.cpuNs,
                       daemonTicks: ticks1 - ticks0, load: loadAverage())
    }

    func runCost(scratch: ScratchDirectory) throws {
        print("## Watchdog sampler CPU\n")
        print("One daemon of the benchmark's own (1 s windows). First with no policy loaded, then with 5: `oom_largest` at system scope (observe), `oom_largest` on 3 v1 memcgs (`--name wd_cost_N`, enforce) and `oom_growth` on a 4th (enforce); each memcg (limit 256M) holds one `mmpolicy-workload hold --rss 32M`. After \(settleSeconds) s to settle, \(costSeconds) s: sampler CPU = the change of `status --json` watchdog.cpuNs (the watchdog thread's CLOCK_THREAD_CPUTIME_ID around each window's sampling and judging) over the elapsed time; daemon CPU = utime+stime of the whole daemon from /proc/PID/stat over the same span (it includes serving the two `status` calls).\n")
        let daemon = try DaemonSession(mmpolicy: mmpolicy, objects: objects, policies: policies, scratch: scratch, name: "cost")
        defer { daemon.stop() }
        progress("cost: \(costSeconds) s with no policy")
        let idle = try measureCost(daemon, policies: 0)
        var memcgs: [BenchMemcg] = []
        var holders: [ChildProcess] = []
        defer {
            daemon.stop()
            for holder in holders { holder.kill(SIGKILL); holder.wait() }
            memcgs.removeAll()
        }
        for index in 1...4 {
            let memcg = try BenchMemcg(path: "\(Self.memcgPrefix)-cost-\(index)", limitBytes: 256 << 20)
            memcgs.append(memcg)
            let holder = try ChildProcess(workload, ["hold", "--rss", "32M", "--cgroup", memcg.path])
            holders.append(holder)
            try holder.waitReady()
        }
        try daemon.cli(["load", "oom_largest", "--name", "wd_cost_system", "--scope", "system", "--mode", "observe"])
        for index in 1...3 {
            try daemon.cli(["load", "oom_largest", "--name", "wd_cost_\(index)", "--scope", memcgs[index - 1].path, "--mode", "enforce"])
        }
        try daemon.cli(["load", "oom_growth", "--scope", memcgs[3].path, "--mode", "enforce"])
        progress("cost: \(costSeconds) s with 5 policies")
        let loaded = try measureCost(daemon, policies: 5)
        let exits = try daemon.events().contains { $0.type == .exit }
        daemon.stop()
        let leftOn = try memcgs.filter { try $0.memcg.oomControl().oomKillDisable }.map(\.path)

        let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        print("| policies loaded | seconds | windows | sampler CPU ms | sampler, % of one core | sampler us per window | daemon CPU (utime+stime), % of one core | load average after |")
        print("|---|---|---|---|---|---|---|---|")
        for row in [idle, loaded] {
            let percent = Double(row.cpuNs) / (row.seconds * 1e9) * 100
            let perWindow = row.samples > 0 ? Double(row.cpuNs) / Double(row.samples) / 1000 : .nan
            let daemonPercent = Double(row.daemonTicks) / ticksPerSecond / row.seconds * 100
            print("| \(row.policies) | \(fmt(row.seconds, 1)) | \(row.samples) | \(fmt(Double(row.cpuNs) / 1e6, 1)) | \(fmt(percent, 3)) | \(fmt(perWindow, 0)) | \(fmt(daemonPercent, 3)) | \(row.load) |")
        }
        let percent = Double(loaded.cpuNs) / (loaded.seconds * 1e9) * 100
        let added = Double(Int64(loaded.daemonTicks) - Int64(idle.daemonTicks)) / ticksPerSecond / loaded.seconds * 100
        print("\n5 policies add \(fmt(percent - Double(idle.cpuNs) / (idle.seconds * 1e9) * 100, 3)) % of a core of sampling and \(fmt(added, 3)) % of daemon CPU in all (utime+stime counts in 1/\(Int(ticksPerSecond)) s ticks: +-\(fmt(100 / ticksPerSecond / loaded.seconds, 3)) %).")
        print("Target: sampler CPU with 5 policies <= 1 % of one core: \(percent <= 1 ? "met" : "not met") (\(fmt(percent, 3)) %).")
        if exits { print("note: a guard ejected a policy during the measurement (see the daemon's events)") }
        print("")
        if !leftOn.isEmpty { throw BenchError("the daemon left oom_kill_disable 1 on \(leftOn.joined(separator: ", "))") }
    }
}
