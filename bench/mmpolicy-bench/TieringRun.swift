// One contender run of the tiering benchmark: a fresh zram device and
// memcg, the workload processes, the contender applied, a reading every
// second, and everything taken down again whatever happens.
import BPFKit
import MMPolicyCore
import MMPolicyKinds

#if canImport(Glibc)
import Glibc
#endif

/// What every contender run is given: the same workload, sizes, device and duration.
struct TierRunSettings {
    var workload: String
    var mmpolicy: String
    var objects: String
    var policies: String
    var processes: Int
    var hot: String
    var cold: String
    var incompressible: String
    var hotBytes: UInt64
    var coldBytes: UInt64
    var incompressibleBytes: UInt64
    var dutyPercent: Int
    var durationSeconds: Int
    var settleSeconds: Int
    var zramBytes: UInt64
    var zramPriority: Int
    /// memory.limit_in_bytes of the static contender = hot sets x this + the processes' other memory.
    var staticFactor: Double
    /// Run the control process (the same hot loop outside the memcg) beside the workloads.
    var control: Bool
}

/// What one contender run measured.
struct TierRunResult {
    var contender: TierContender
    var round: Int
    /// The reading just before the contender was applied (t = 0), then one a second.
    var samples: [TierSample]
    /// Hot loops, t = 0 to the end, its second half, and the settle time
    /// before t = 0 (nothing applied yet).
    var rates: HotLoopRates
    var ratesLate: HotLoopRates
    var ratesBefore: HotLoopRates
    /// Memcg usage at t = 0 minus the parts' resident bytes: the processes' other memory.
    var otherMemoryBytes: UInt64
    /// Static: the limit written and the writer's CPU time (it reclaims in its own context).
    var limitBytes: UInt64?
    var limitWriteCPUNs: UInt64 = 0
    /// Policy: plans carried out, bytes they demoted, refused actions, and
    /// the watchdog's exit if it ejected the policy.
    var plans = 0
    var demotedBytes: UInt64 = 0
    var refused = 0
    var ejected: String?
    var loadAverageAfter: String = ""

    /// The workloads' rate relative to the control after t = 0 over the same
    /// before it: what the contender changed, net of where this run's
    /// processes happen to sit and of the machine's neighbours.
    var relativeChange: Double { rates.relative / ratesBefore.relative }
    var relativeChangeLate: Double { ratesLate.relative / ratesBefore.relative }

    var first: TierSample { samples[0] }
    var last: TierSample { samples[samples.count - 1] }

    /// Saving at the end: the mean of the last 5 readings (one reading moves with a plan).
    var finalSavedBytes: Double {
        let tail = samples.suffix(5)
        return tail.reduce(0.0) { $0 + Double($1.savedBytes) } / Double(tail.count)
    }

    /// Seconds from t = 0 to the first reading with 90 % of the final saving; nil when nothing was saved.
    var secondsTo90: Double? {
        let final = finalSavedBytes
        guard final > Double(8 << 20) else { return nil }
        return samples.first { Double($0.savedBytes) >= 0.9 * final }?.seconds
    }

    /// The last reading at or before `seconds`.
    func sample(at seconds: Double) -> TierSample? { samples.last { $0.seconds <= seconds + 0.25 } }

    var daemonCPUSeconds: Double {
        guard let a = first.daemonTicks, let b = last.daemonTicks else { return 0 }
        return Double(b - a) / ProcessCPU.ticksPerSecond
    }
    var kswapdCPUSeconds: Double { Double(last.kswapdTicks - first.kswapdTicks) / ProcessCPU.ticksPerSecond }
    var workloadSystemSeconds: Double { Double(last.workloadCPU.systemTicks - first.workloadCPU.systemTicks) / ProcessCPU.ticksPerSecond }
    var refaults: UInt64 { last.refaultsAnon - first.refaultsAnon }
    var majorFaults: UInt64 { last.majorFaults - first.majorFaults }
    /// The most the memcg had in swap at any reading.
    var maxMemcgSwapBytes: UInt64 { samples.map(\.memcgSwapBytes).max() ?? 0 }
    /// Other swap areas in use at any reading.
    var otherSwap: [String] { Array(Set(samples.flatMap(\.otherSwapInUse))).sorted() }
    /// The most other processes' pages on the run's device, and of the run's pages elsewhere, at any reading.
    var maxForeignBytes: UInt64 { samples.map(\.foreignBytes).max() ?? 0 }
    var maxElsewhereBytes: UInt64 { samples.map(\.elsewhereBytes).max() ?? 0 }
}

/// Runs one contender on a fresh setup.
struct TierRunner {
    let settings: TierRunSettings
    let scratch: ScratchDirectory
    let memcgRoot: String

    func run(_ contender: TierContender, round: Int) throws -> TierRunResult {
        let s = settings
        let zram = try OwnedZramSwap(sizeBytes: s.zramBytes, priority: s.zramPriority)
        var memcg: TierMemcg?
        var daemon: DaemonSession?
        var workloads: [TierWorkload] = []
        var control: TierWorkload?
        defer {
            // The daemon first (it unloads and restores what it changed), then
            // the processes, the memcg, and last the swap they were using.
            daemon?.stop()
            for workload in workloads + (control.map { [$0] } ?? []) { workload.process.kill(SIGKILL) }
            for workload in workloads + (control.map { [$0] } ?? []) { workload.process.wait(timeoutMs: 30_000) }
            memcg?.remove()
            zram.off()
        }
        let group = try TierMemcg(path: "\(memcgRoot)/mmpolicy-bench-tier-\(getpid())-\(contender)")
        memcg = group
        if let name = contender.policyName {
            daemon = try DaemonSession(mmpolicy: s.mmpolicy, objects: s.objects, policies: s.policies, scratch: scratch,
                                       name: "tier-\(name)-\(round)")
        }
        var started: [ChildProcess] = []
        if s.control {
            // Outside the memcg: no contender touches it.
            control = try TierWorkload(waitingFor: TierWorkload.start(workload: s.workload, hot: s.hot, cold: "0", incompressible: "0",
                                                                      dutyPercent: s.dutyPercent, memcg: nil))
        }
        for _ in 0..<s.processes {
            started.append(try TierWorkload.start(workload: s.workload, hot: s.hot, cold: s.cold, incompressible: s.incompressible,
                                                  dutyPercent: s.dutyPercent, memcg: group.path))
        }
        // Started together, they fill their memory at once; a process not
        // waited for (one before it failed) is killed when `started` goes.
        for process in started { workloads.append(try TierWorkload(waitingFor: process)) }
        let kswapd = KswapdThreads.pids()
        let settleStart = monotonicNanoseconds()
        try sleepChecking(seconds: Double(s.settleSeconds))

        // t = 0: the contender is applied right after this reading.
        let t0 = monotonicNanoseconds()
        var samples = [try TierSample.take(since: t0, workloads: workloads, memcg: group, zram: zram, daemon: daemon?.pid, kswapd: kswapd)]
        let other = samples[0].memcgUsageBytes > samples[0].residentPartBytes ? samples[0].memcgUsageBytes - samples[0].residentPartBytes : 0
        var limit: UInt64?
        var writer: LimitWriter?
        switch contender {
        case .none:
            break
        case .staticLimit:
            let page = UInt64(ProcessSnapshot.pageSize)
            let wanted = UInt64(Double(s.hotBytes * UInt64(s.processes)) * s.staticFactor) + other
            limit = (wanted + page - 1) / page * page
            // On a thread of its own: the write reclaims down to the limit
            // before it returns (seconds), and the readings go on meanwhile.
            writer = try LimitWriter(memcg: group, bytes: limit!)
        case .policy(let name):
            try daemon!.cli(["load", name, "--scope", group.path, "--mode", "enforce"])
        }

        for second in 1...s.durationSeconds {
            try Interrupt.check()
            try sleepUntil(t0 + UInt64(second) * 1_000_000_000)
            samples.append(try TierSample.take(since: t0, workloads: workloads, memcg: group, zram: zram, daemon: daemon?.pid, kswapd: kswapd))
        }
        let end = samples[samples.count - 1].ns
        for workload in workloads + (control.map { [$0] } ?? []) { workload.poll() }
        let limitCPU = writer?.finish() ?? 0
        if let failure = writer?.failure { throw BenchError("writing \(limit!) to \(group.path)/memory.limit_in_bytes failed: \(failure)") }

        let half = t0 + (end - t0) / 2
        var result = TierRunResult(
            contender: contender, round: round, samples: samples,
            rates: HotLoopRates(workloads, control: control, from: t0, to: end),
            ratesLate: HotLoopRates(workloads, control: control, from: half, to: end),
            ratesBefore: HotLoopRates(workloads, control: control, from: settleStart, to: t0),
            otherMemoryBytes: other, limitBytes: limit, limitWriteCPUNs: limitCPU)
        if let daemon, let name = contender.policyName {
            let events = try daemon.events(policy: name)
            let decisions = events.compactMap { $0.type == .decision ? $0.decision : nil }
            let carried = decisions.filter { $0.outcome == .carriedOut }
            result.plans = carried.count
            result.demotedBytes = carried.reduce(0) { $0 + ($1.tiering?.demotedBytes ?? 0) }
            result.refused = decisions.reduce(0) { $0 + ($1.tiering?.refusedCount ?? 0) }
            result.ejected = events.first { $0.type == .exit }?.summary
        }
        result.loadAverageAfter = loadAverageText()
        return result
    }

}

/// How fast the hot loops ran over a span of a run: the workloads' and the
/// control process's.
///
/// Exists because the machine is shared: what other programs run on it
/// changes a hot loop's speed by more than the few percent the targets are
/// about, from one minute to the next. The control process (the same hot
/// loop, outside the memcg, never touched by any contender) runs beside the
/// workloads in every run and feels the same neighbours, so the workloads'
/// rate relative to it is what the contender did.
struct HotLoopRates {
    /// Touches per second of wall time, all workloads together.
    var wall: Double
    /// Touches per second of the workloads' loop threads' CPU time.
    var cpu: Double
    /// The control's touches per second of its loop thread's CPU time.
    var controlCPU: Double

    /// The workloads' CPU-normalized rate over the control's (without a
    /// control, `--no-control`: the workloads' rate alone).
    var relative: Double { controlCPU.isNaN ? cpu : cpu / controlCPU }

    init(_ workloads: [TierWorkload], control: TierWorkload?, from: UInt64, to: UInt64) {
        let all = Self.sums(workloads, from: from, to: to)
        wall = all.wall
        cpu = all.touches / (all.cpuNs / 1e9)
        if let control {
            let own = Self.sums([control], from: from, to: to)
            controlCPU = own.touches / (own.cpuNs / 1e9)
        } else {
            controlCPU = .nan
        }
    }

    /// Touches, loop CPU ns and touches per wall second of `workloads`
    /// between their first reports at or after `from` and their last at or
    /// before `to` (half a second of grace: reports come once a second).
    static func sums(_ workloads: [TierWorkload], from: UInt64, to: UInt64) -> (touches: Double, cpuNs: Double, wall: Double) {
        var touches = 0.0, cpu = 0.0, wall = 0.0
        for workload in workloads {
            guard let a = workload.report(atOrAfter: from), let b = workload.reports.last(where: { $0.ns <= to + 500_000_000 }),
                  b.ns > a.ns else { return (.nan, .nan, .nan) }
            touches += Double(b.touches - a.touches)
            cpu += Double(b.cpuNs - a.cpuNs)
            wall += Double(b.touches - a.touches) / (Double(b.ns - a.ns) / 1e9)
        }
        return (touches, cpu, wall)
    }
}

/// Sleeps to CLOCK_MONOTONIC `ns`, in steps of at most 200 ms so that ^C is seen.
func sleepUntil(_ ns: UInt64) throws {
    while true {
        try Interrupt.check()
        let now = monotonicNanoseconds()
        guard now < ns else { return }
        let step = min(ns, now + 200_000_000)
        var deadline = timespec(tv_sec: Int(step / 1_000_000_000), tv_nsec: Int(step % 1_000_000_000))
        while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nil) == EINTR {}
    }
}

func sleepChecking(seconds: Double) throws { try sleepUntil(monotonicNanoseconds() + UInt64(seconds * 1e9)) }
