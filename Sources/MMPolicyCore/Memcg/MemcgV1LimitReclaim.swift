import BPFKit
import SystemPackage

/// Proactive reclaim of a cgroup v1 memcg, which has no memory.reclaim: its
/// memory.limit_in_bytes is lowered below usage in a few steps (the kernel
/// reclaims down to each value inside the write, in this thread) and raised
/// back to its original right after.
///
/// It exists because lowering a limit is the only way v1 offers to make the
/// kernel reclaim a group on request (measured on 6.18: 522 MiB of cache in
/// 2.3 ms, 257 MiB of anonymous memory to zram in 1.18 s), and a lowered
/// limit left behind would starve the group. So:
/// - the original limit is journaled first (``KnobJournal/record(_:owner:original:)``,
///   under the policy's name): unload, the guardian when the daemon dies and
///   the next start all put it back, whatever happens between lower and raise;
/// - a group whose kernel OOM killer is off or that is in an OOM is refused
///   (a task meeting the lowered limit would wait in the OOM);
/// - the limit never goes below a floor: what the group cannot give up
///   (usage less its file pages and the anonymous pages swap can take, per
///   memory.stat, memory.swappiness and free swap) plus headroom, and never
///   below ``Limits/minimumFloorBytes``;
/// - it stops at the first step the kernel refuses (EBUSY: it could not get
///   there), that makes no progress, that a signal interrupts, or when the
///   group goes into OOM;
/// - the limit is raised back before returning, on every path, and the
///   journal entry is forgotten once it is.
///
/// Between a step and the raise a task of the group that allocates meets
/// the lowered limit and reclaims for itself; that is the point. If it
/// cannot (its memory is unreclaimable after all), the kernel OOM killer
/// runs: ``MemcgReclaimOutcome/oomKills`` counts such kills.
public struct MemcgV1LimitReclaim {
    /// How far and in how many steps the limit goes down.
    public struct Limits: Sendable, Equatable {
        /// Lowering steps from usage to the target.
        public var steps: Int
        /// The limit never goes below this.
        public var minimumFloorBytes: UInt64
        /// Kept above what the group cannot give up, for its tasks to allocate in.
        public var headroomBytes: UInt64

        public init(steps: Int = 4, minimumFloorBytes: UInt64 = 16 << 20, headroomBytes: UInt64 = 16 << 20) {
            self.steps = max(1, steps)
            self.minimumFloorBytes = minimumFloorBytes
            self.headroomBytes = headroomBytes
        }
    }

    public var path: String
    public var limits: Limits
    /// Called after each lowering step with the limit now in force (the
    /// journal entry exists then): for logs and for tests that look at the
    /// group while its limit is down.
    public var afterStep: ((UInt64) -> Void)?

    public init(path: String, limits: Limits = .init(), afterStep: ((UInt64) -> Void)? = nil) {
        self.path = path
        self.limits = limits
        self.afterStep = afterStep
    }

    var limitPath: String { path + "/memory.limit_in_bytes" }

    static let pageSize = ProcessSnapshot.pageSize

    /// Reclaims about `bytes` as described above; the original limit is
    /// journaled under `owner` while it is lowered.
    public func reclaim(_ bytes: UInt64, journal: KnobJournal, owner: String) throws(MemcgReclaimError) -> MemcgReclaimOutcome {
        let start = monotonicNanoseconds()
        let memcg = MemcgV1(path: path)
        var outcome = MemcgReclaimOutcome(askedBytes: bytes)
        let control = try system { () throws(SystemCallError) in try memcg.oomControl() }
        if control.oomKillDisable { throw MemcgReclaimError(memcg: path, reason: .oomKillerDisabled) }
        if control.underOOM { throw MemcgReclaimError(memcg: path, reason: .underOOM) }

        let limitFile = try system { () throws(SystemCallError) in try CgroupControlFile(path: limitPath, fix: MemcgV1.fix) }
        let usage = try system { () throws(SystemCallError) in try memcg.usageBytes() }
        outcome.usageBeforeBytes = usage
        outcome.usageAfterBytes = usage
        outcome.floorBytes = try system { () throws(SystemCallError) in try floor(usage: usage) }
        let target = max(outcome.floorBytes, usage - min(bytes, usage))
        guard target < usage else {
            outcome.stop = .floor
            outcome.durationNs = monotonicNanoseconds() - start
            return outcome
        }

        let entry: KnobJournalEntry
        do { entry = try journal.record(limitPath, owner: owner) } catch {
            throw MemcgReclaimError(memcg: path, reason: .journal(error))
        }
        // From here on the limit may be lowered: every path raises it back.
        var failure: SystemCallError?
        do throws(SystemCallError) {
            outcome.stop = try lower(limitFile, from: usage, to: target, memcg: memcg, steps: &outcome.steps)
        } catch {
            failure = error
        }
        do throws(SystemCallError) {
            try limitFile.write(entry.original, retryingInterrupts: true)
        } catch {
            throw MemcgReclaimError(memcg: path, reason: .notRestored(original: entry.original, error))
        }
        for error in journal.forget(paths: [limitPath]) {
            outcome.notes.append("the limit is back, but \(error) (the next restore writes the same original again)")
        }
        if let failure { throw MemcgReclaimError(memcg: path, reason: .system(failure)) }
        if outcome.stop == .reachedTarget, target == outcome.floorBytes, usage - target < bytes { outcome.stop = .floor }
        outcome.usageAfterBytes = (try? memcg.usageBytes()) ?? usage
        if let after = try? memcg.oomControl(), after.oomKillCount > control.oomKillCount {
            outcome.oomKills = after.oomKillCount - control.oomKillCount
        }
        outcome.durationNs = monotonicNanoseconds() - start
        return outcome
    }

    /// Lowers the limit from `usage` toward `target` in ``Limits/steps``
    /// equal steps; returns why it stopped. Throws on a failure other than
    /// the kernel's refusals it stops at.
    func lower(_ limitFile: CgroupControlFile, from usage: UInt64, to target: UInt64, memcg: MemcgV1,
               steps: inout [UInt64]) throws(SystemCallError) -> MemcgReclaimOutcome.Stop {
        let count = UInt64(limits.steps)
        for index in 1...count {
            let before = try memcg.usageBytes()
            if before <= target { return .reachedTarget }
            let step = Self.roundedUp(usage - (usage - target) * index / count)
            guard step < before else { continue }  // usage fell below this step by itself
            if index > 1, try memcg.oomControl().underOOM { return .underOOM }
            do {
                try limitFile.write(String(step))
            } catch where error.errno == .resourceBusy {
                return .kernelBusy
            } catch where error.errno == .interrupted {
                return .interrupted
            }
            steps.append(step)
            afterStep?(step)
            if try memcg.usageBytes() >= before { return .noProgress }
        }
        return .reachedTarget
    }

    /// The lowest limit to set: what the group cannot give up plus
    /// headroom, at least ``Limits/minimumFloorBytes``.
    func floor(usage: UInt64) throws(SystemCallError) -> UInt64 {
        let stat = try KernelFile.read(path + "/memory.stat", fix: MemcgV1.fix)
        let swappiness = (try? KernelFile.readUInt64(path + "/memory.swappiness")) ?? 60
        var swapRoom = SlowTier.current().swapFreeBytes
        // A memsw limit (memory + swap) caps what can move to swap.
        if let memswLimit = try? KernelFile.readUInt64(path + "/memory.memsw.limit_in_bytes"), memswLimit < MemcgV1.unlimited,
           let memswUsage = try? KernelFile.readUInt64(path + "/memory.memsw.usage_in_bytes") {
            swapRoom = min(swapRoom, memswLimit - min(memswLimit, memswUsage))
        }
        return Self.floor(usage: usage, stat: stat, swappiness: swappiness, swapRoomBytes: swapRoom, limits: limits)
    }

    /// ``floor(usage:)`` from the files' contents: usage less what reclaim
    /// can take (file pages; anonymous pages as far as swap has room, and
    /// none with swappiness 0), plus headroom. Kernel memory and
    /// unevictable pages count as what it cannot give up.
    public static func floor(usage: UInt64, stat: String, swappiness: UInt64, swapRoomBytes: UInt64, limits: Limits) -> UInt64 {
        var values: [Substring: UInt64] = [:]
        for line in stat.split(separator: "\n") {
            let words = line.split(separator: " ")
            if words.count == 2, let value = UInt64(words[1]) { values[words[0]] = value }
        }
        let file = (values["total_inactive_file"] ?? 0) + (values["total_active_file"] ?? 0)
        let anon = (values["total_inactive_anon"] ?? 0) + (values["total_active_anon"] ?? 0)
        let swappable = swappiness == 0 ? 0 : min(anon, swapRoomBytes)
        let kept = usage - min(usage, file + swappable)
        return roundedUp(max(limits.minimumFloorBytes, kept + limits.headroomBytes))
    }

    static func roundedUp(_ bytes: UInt64) -> UInt64 { (bytes + pageSize - 1) / pageSize * pageSize }

    /// Runs `body`, wrapping its failure as a reclaim error of this group.
    func system<T>(_ body: () throws(SystemCallError) -> T) throws(MemcgReclaimError) -> T {
        do { return try body() } catch { throw MemcgReclaimError(memcg: path, reason: .system(error)) }
    }
}
