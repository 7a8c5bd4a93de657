// One OOM episode at a time, timed by the benchmark itself, the same way for
// every contender.
import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

// MARK: - memcg episodes (a, b)

/// What one memcg episode measured.
struct MemcgEpisode {
    /// The benchmark's own OOM eventfd fired -> the first workload's pidfd
    /// became readable (it has exited; its mm is gone), ms. nil if invalid.
    var latencyMs: Double?
    /// The event -> the first SIGKILL to the workload that died (signal:signal_generate), ms.
    /// Can be slightly negative: the kernel killer signals in the very context
    /// that notified, before the observer thread has woken up.
    var signalMs: Double?
    /// Which workload died first: "victim" (the 96M holder), "small", "grower".
    var died: String?
    var diedPID: pid_t?
    /// memory.usage_in_bytes right after the event minus right after the exit.
    var usageDropBytes: Int64?
    /// Kills by the kernel OOM killer in the group during the episode (memory.oom_control oom_kill).
    var kernelKills: UInt64
    /// Why the episode does not count; nil when it does.
    var problem: String?
}

/// Waits in one poll() for the benchmark's OOM eventfd and every workload's
/// pidfd, on its own thread, and time-stamps both (CLOCK_MONOTONIC right
/// after poll returns). Written by its thread only, read after `join`.
final class MemcgObserver: @unchecked Sendable {
    let notifier: OOMNotifier
    let memcg: MemcgV1
    let pidfds: [Int32]
    let timeoutNs: UInt64
    /// The eventfd had already fired when observing began (the episode does not count).
    var early = false
    var eventNs: UInt64?
    var usageAtEvent: UInt64?
    var endNs: UInt64?
    var exitedIndex: Int?
    var usageAfterExit: UInt64?

    init(notifier: OOMNotifier, memcg: MemcgV1, pidfds: [Int32], timeoutNs: UInt64) {
        self.notifier = notifier
        self.memcg = memcg
        self.pidfds = pidfds
        self.timeoutNs = timeoutNs
    }

    func run() {
        if notifier.consume() > 0 { early = true }
        var fds = ([notifier.rawValue] + pidfds).map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        let deadline = monotonicNanoseconds() + timeoutNs
        while true {
            let n = poll(&fds, nfds_t(fds.count), 20)
            let now = monotonicNanoseconds()
            if n > 0 {
                if fds[0].revents != 0 {
                    if eventNs == nil {
                        eventNs = now
                        usageAtEvent = try? memcg.usageBytes()
                    }
                    _ = notifier.consume()
                }
                if let index = fds.indices.dropFirst().first(where: { fds[$0].revents != 0 }) {
                    endNs = now
                    exitedIndex = index - 1
                    usageAfterExit = try? memcg.usageBytes()
                    return
                }
            }
            if now >= deadline || Interrupt.requested { return }
        }
    }
}

/// Runs memcg episodes: a 96M holder (the intended victim, the largest), a
/// smaller holder and a grower that pushes the group over its limit.
struct MemcgEpisodeRunner {
    let workload: String
    let killClock: KillClock
    let memcg: BenchMemcg
    let notifier: OOMNotifier
    let victimRSS: String
    let smallRSS: String
    let growRate: String

    func run() throws -> MemcgEpisode {
        try Interrupt.check()
        let group = memcg.memcg
        _ = notifier.consume()
        let before = try group.oomControl()
        var episode = MemcgEpisode(kernelKills: 0)
        let roles = ["victim", "small", "grower"]
        var children: [ChildProcess] = []
        defer {
            // Leftovers die before the next episode; the group must be empty.
            for child in children { child.kill(SIGKILL) }
            for child in children { child.wait() }
            memcg.killAll()
            if !memcg.waitEmpty(timeoutMs: 5000) { episode.problem = "the memcg did not empty" }
            _ = notifier.consume()
        }
        for (role, arguments) in zip(roles, [["hold", "--rss", victimRSS], ["hold", "--rss", smallRSS], ["grow", "--rate", growRate]]) {
            let child = try ChildProcess(workload, arguments + ["--cgroup", memcg.path])
            children.append(child)
            try killClock.watch(child.pid)
            do { try child.waitReady() } catch { throw BenchError("\(role): \(error)") }
        }
        let observer = MemcgObserver(notifier: notifier, memcg: group, pidfds: children.map(\.pidfd.rawValue),
                                     timeoutNs: 20_000_000_000)
        let thread = try MeasuringThread { observer.run() }
        thread.join()
        try Interrupt.check()
        episode.kernelKills = (try group.oomControl().oomKillCount) - before.oomKillCount
        let signals = children.map { killClock.take($0.pid) }
        if observer.early {
            episode.problem = "the OOM came before the observer was polling"
        } else if let eventNs = observer.eventNs, let endNs = observer.endNs, let index = observer.exitedIndex {
            episode.latencyMs = Double(endNs - eventNs) / 1e6
            episode.died = roles[index]
            episode.diedPID = children[index].pid
            if let seen = signals[index] { episode.signalMs = (Double(seen.ns) - Double(eventNs)) / 1e6 }
            if let a = observer.usageAtEvent, let b = observer.usageAfterExit { episode.usageDropBytes = Int64(a) - Int64(b) }
        } else if let index = observer.exitedIndex {
            episode.problem = "\(roles[index]) exited (\(children[index].wait().map(describeStatus) ?? "?")) without an OOM event"
        } else {
            episode.problem = observer.eventNs == nil ? "no OOM within 20 s" : "OOM but nobody died within 20 s"
        }
        return episode
    }
}

// MARK: - system episodes (c)

/// What one system-scope episode measured.
struct SystemEpisode {
    /// The crossing of the threshold -> the grower's pidfd readable, ms.
    ///
    /// The crossing is taken as the last sample still above the line before
    /// it (the real crossing lies in the next sampling interval, ~1 ms), the
    /// same for every contender: an over-estimate by at most one interval.
    /// A killer that acts within that interval can free memory before any
    /// sample sees the line crossed; the start is then the sample with the
    /// lowest MemAvailable (the last one before memory came back).
    var reactionMs: Double?
    /// A sample saw MemAvailable at or below the threshold.
    var crossingSeen = false
    /// Longest gap between two samples, ms.
    var maxSampleGapMs: Double = 0
    var growerPID: pid_t = 0
    /// The crossing -> the first SIGTERM/SIGKILL to the grower, ms, and who sent it.
    var signalMs: Double?
    var signalSender: pid_t?
    /// How the grower ended.
    var signal: Int32?
    /// Lowest MemAvailable the sampler saw, % of MemTotal.
    var minAvailablePercent: Double = 100
    /// Dips under the line that MemAvailable came back from before the
    /// crossing the contender is timed from.
    var dips = 0
    var problem: String?
}

/// Samples MemAvailable every millisecond (poll on the grower's pidfd with a
/// 1 ms timeout, then one read of /proc/meminfo) until the grower exits, on
/// its own thread. Written by its thread only, read after `join`.
final class SystemSampler: @unchecked Sendable {
    let reader: MemAvailableReader
    let grower: PidFD
    /// Be the killer: SIGKILL + process_mrelease at the first sample at or
    /// below the threshold (the floor any killer of this grower can reach).
    let killAtCrossing: Bool
    let thresholdBytes: UInt64
    let safetyBytes: UInt64
    let timeoutNs: UInt64
    var crossingNs: UInt64?
    /// The last sample above the threshold before `crossingNs`.
    var lastAboveNs: UInt64?
    /// Every crossing, in order: (the last sample above, the first at or
    /// below). MemAvailable can dip under the line for a moment and come
    /// back (a short-lived allocation somewhere); a killer that happened to
    /// read in between never saw that dip, so each contender is timed from
    /// the last crossing before its signal.
    var crossings: [(aboveNs: UInt64, belowNs: UInt64)] = []
    /// The latest sample above the threshold (crossings are cut from it).
    private var latestAboveNs: UInt64?
    private var below = false
    var endNs: UInt64?
    var minAvailable = UInt64.max
    var minAvailableNs: UInt64?
    /// Longest gap between samples up to the episode's start sample.
    var maxGapNs: UInt64 = 0
    var safetyTripped = false

    init(reader: MemAvailableReader, grower: PidFD, killAtCrossing: Bool, thresholdBytes: UInt64, safetyBytes: UInt64, timeoutNs: UInt64) {
        self.reader = reader
        self.grower = grower
        self.killAtCrossing = killAtCrossing
        self.thresholdBytes = thresholdBytes
        self.safetyBytes = safetyBytes
        self.timeoutNs = timeoutNs
    }

    func run() {
        var entry = pollfd(fd: grower.rawValue, events: Int16(POLLIN), revents: 0)
        let deadline = monotonicNanoseconds() + timeoutNs
        var previous = monotonicNanoseconds()
        var runningMaxGap: UInt64 = 0, gapAtLastAbove: UInt64 = 0, gapAtMin: UInt64 = 0
        defer { maxGapNs = crossingNs != nil ? gapAtLastAbove : gapAtMin }
        while true {
            let n = poll(&entry, 1, 1)
            let now = monotonicNanoseconds()
            if n > 0 {
                endNs = now
                return
            }
            runningMaxGap = max(runningMaxGap, now - previous)
            previous = now
            let available = reader.read()
            if available < minAvailable { (minAvailable, minAvailableNs, gapAtMin) = (available, now, runningMaxGap) }
            if available <= thresholdBytes {
                if !below, let above = latestAboveNs { crossings.append((above, now)) }
                below = true
                if crossingNs == nil {
                    crossingNs = now
                    if killAtCrossing {
                        try? grower.sendSignal(SIGKILL)
                        _ = try? grower.releaseMemory()
                    }
                }
            } else {
                below = false
                latestAboveNs = now
                if crossingNs == nil { (lastAboveNs, gapAtLastAbove) = (now, runningMaxGap) }
            }
            if available < safetyBytes {
                safetyTripped = true
                return
            }
            if now >= deadline || Interrupt.requested { return }
        }
    }
}

/// Runs system-scope episodes: sets the ballast so MemAvailable sits
/// `headroom` above the threshold, then starts one grower that allocates
/// until a killer stops it.
struct SystemEpisodeRunner {
    let workload: String
    let ballast: Ballast
    let reader: MemAvailableReader
    let thresholdPercent: Double
    let headroomBytes: UInt64
    let growRate: String
    let killClock: KillClock

    var thresholdBytes: UInt64 { UInt64(Double(reader.memTotal) * thresholdPercent / 100) }
    /// Below this the benchmark kills the grower itself (no contender acted):
    /// 3 % of MemTotal, well above where the kernel's own OOM killer starts.
    var safetyBytes: UInt64 { reader.memTotal * 3 / 100 }

    /// Fills RAM to the episode's starting point; fails if the rest of the
    /// system alone leaves less than that.
    func prepare() throws {
        let target = thresholdBytes + headroomBytes
        var memory = try ballast.settle(availableBytes: target)
        // Other processes come and go; give them a few chances to calm down.
        for _ in 0..<5 where memory.memAvailable > target + (128 << 20) || memory.memAvailable + (128 << 20) < target {
            try Interrupt.check()
            sleepMs(1000)
            memory = try ballast.settle(availableBytes: target)
        }
        if memory.memAvailable > target + (256 << 20) || memory.memAvailable + (256 << 20) < target {
            throw BenchError("cannot bring MemAvailable to \(target >> 20) MiB (at \(memory.memAvailable >> 20) MiB with \(ballast.bytes >> 20) MiB of ballast)")
        }
    }

    func run(killAtCrossing: Bool = false) throws -> SystemEpisode {
        try Interrupt.check()
        try prepare()
        let available = reader.read()
        // The grower stops by itself near the safety line even if nobody
        // kills it (4 GiB of slack: other processes may free memory meanwhile,
        // and a grower that stops above the line would never be killed).
        let maxBytes = (available > safetyBytes ? available - safetyBytes : 0) + (4 << 30)
        let grower = try ChildProcess(workload, ["grow", "--rate", growRate, "--max", String(maxBytes), "--oom-score-adj", "1000"])
        defer { grower.kill(SIGKILL); grower.wait() }
        try killClock.watch(grower.pid)
        try grower.waitReady()
        var episode = SystemEpisode()
        episode.growerPID = grower.pid
        let sampler = SystemSampler(reader: reader, grower: grower.pidfd, killAtCrossing: killAtCrossing, thresholdBytes: thresholdBytes,
                                    safetyBytes: safetyBytes, timeoutNs: 60_000_000_000)
        let thread = try MeasuringThread { sampler.run() }
        thread.join()
        episode.minAvailablePercent = Double(sampler.minAvailable) * 100 / Double(reader.memTotal)
        if let endNs = sampler.endNs {
            let status = grower.wait()
            episode.signal = status.flatMap(terminatingSignal)
            episode.crossingSeen = sampler.crossingNs != nil
            episode.maxSampleGapMs = Double(sampler.maxGapNs) / 1e6
            let seen = killClock.take(grower.pid)
            episode.signalSender = seen.map { pid_t($0.sender) }
            // The last crossing before the signal (see `SystemSampler.crossings`).
            var crossingStart = sampler.lastAboveNs
            if let seen, let last = sampler.crossings.last(where: { $0.belowNs <= seen.ns }) {
                crossingStart = last.aboveNs
                episode.dips = sampler.crossings.filter { $0.belowNs < last.belowNs }.count
            }
            if let start = episode.crossingSeen ? crossingStart : sampler.minAvailableNs {
                episode.reactionMs = Double(endNs - start) / 1e6
                if let seen { episode.signalMs = (Double(seen.ns) - Double(start)) / 1e6 }
            }
            if episode.signal == nil { episode.problem = "the grower exited by itself (\(status.map(describeStatus) ?? "?"))" }
        } else if sampler.safetyTripped {
            episode.problem = "nobody killed the grower before MemAvailable fell to 3 %"
        } else {
            episode.problem = Interrupt.requested ? "interrupted" : "the grower was not killed within 60 s"
        }
        try Interrupt.check()
        return episode
    }
}
