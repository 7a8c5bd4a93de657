import BPFKit
import SystemPackage

/// Has the kernel reclaim about `bytes` from one memory cgroup with its own
/// reclaim (its LRU lists pick the pages: cold anonymous memory goes to swap,
/// clean file cache is dropped), and says how much it did.
///
/// It exists because a tiering policy may ask for reclaim of a memcg instead
/// of naming pages (a "reclaim target"), and the two hierarchies offer it
/// differently:
/// - cgroup v2 has a file for it: writing a byte count to memory.reclaim
///   reclaims that much and returns (EAGAIN when it reclaimed less). No knob
///   changes, nothing to journal.
/// - cgroup v1 has none. Lowering memory.limit_in_bytes below usage makes
///   the kernel reclaim at once, in the writer's context; so the limit is
///   lowered in a few journaled steps and raised back to the original right
///   after (``MemcgV1LimitReclaim``).
///
/// What was reclaimed is measured from the group's usage (v1
/// memory.usage_in_bytes, v2 memory.current) before and after: it includes
/// whatever the group's tasks allocated or freed meanwhile.
public struct MemcgReclaim: Sendable, Equatable {
    public var path: String
    public var version: MemoryCgroupMount.Version

    public init(path: String, version: MemoryCgroupMount.Version) {
        self.path = path
        self.version = version
    }

    /// Reclaims about `bytes`; on v1 the limit's original is journaled in
    /// `journal` under `owner` while it is lowered (see ``MemcgV1LimitReclaim``).
    public func reclaim(_ bytes: UInt64, journal: KnobJournal, owner: String,
                        limits: MemcgV1LimitReclaim.Limits = .init()) throws(MemcgReclaimError) -> MemcgReclaimOutcome {
        switch version {
        case .v1: return try MemcgV1LimitReclaim(path: path, limits: limits).reclaim(bytes, journal: journal, owner: owner)
        case .v2: return try reclaimV2(bytes)
        }
    }

    /// cgroup v2: one write of `bytes` to memory.reclaim (Linux 5.19).
    func reclaimV2(_ bytes: UInt64) throws(MemcgReclaimError) -> MemcgReclaimOutcome {
        let start = monotonicNanoseconds()
        let memcg = MemcgV2(path: path)
        var outcome = MemcgReclaimOutcome(askedBytes: bytes)
        let file: CgroupControlFile
        do {
            outcome.usageBeforeBytes = try memcg.current()
            file = try CgroupControlFile(path: path + "/memory.reclaim", fix: { code in
                code == .noSuchFileOrDirectory
                    ? "memory.reclaim needs Linux 5.19 and the memory controller enabled for the group (or the group is gone)."
                    : KernelFile.defaultFix(code)
            })
        } catch {
            throw MemcgReclaimError(memcg: path, reason: .system(error))
        }
        do {
            try file.write(String(bytes))
            outcome.stop = .reachedTarget
        } catch where error.errno == .resourceTemporarilyUnavailable {
            outcome.stop = .partial  // it tried (MAX_RECLAIM_RETRIES) and reclaimed less than asked
        } catch where error.errno == .interrupted {
            outcome.stop = .interrupted
        } catch {
            throw MemcgReclaimError(memcg: path, reason: .system(error))
        }
        outcome.usageAfterBytes = (try? memcg.current()) ?? outcome.usageBeforeBytes
        outcome.durationNs = monotonicNanoseconds() - start
        return outcome
    }
}

/// What one ``MemcgReclaim`` did.
public struct MemcgReclaimOutcome: Sendable, Equatable, Codable {
    /// Why it stopped where it did.
    public enum Stop: String, Sendable, Equatable, Codable {
        /// It reclaimed what was asked (v1: the last step was reached).
        case reachedTarget = "reached target"
        /// v1: the group is at its floor (what it cannot give up, plus
        /// headroom): nothing or less was asked of the kernel.
        case floor
        /// v2: memory.reclaim said EAGAIN: the kernel reclaimed less than asked.
        case partial
        /// v1: a step gave EBUSY: the kernel could not reclaim down to it.
        case kernelBusy = "kernel busy"
        /// v1: a step was taken but usage did not fall.
        case noProgress = "no progress"
        /// A signal interrupted the kernel's reclaim.
        case interrupted
        /// v1: the group went into OOM between steps.
        case underOOM = "under OOM"
    }

    public var askedBytes: UInt64
    public var usageBeforeBytes: UInt64 = 0
    public var usageAfterBytes: UInt64 = 0
    /// v1: the limits written to lower it, in order (the raise back is not listed).
    public var steps: [UInt64] = []
    /// v1: the lowest the limit was allowed to go.
    public var floorBytes: UInt64 = 0
    public var stop: Stop = .reachedTarget
    /// v1: processes the kernel OOM-killed in the group from the first step
    /// to the raise (the floor exists to keep this 0).
    public var oomKills: UInt64 = 0
    public var durationNs: UInt64 = 0
    /// What went wrong after the limit was back (forgetting the journal
    /// entry), one line each; the reclaim itself stands.
    public var notes: [String] = []

    public init(askedBytes: UInt64) { self.askedBytes = askedBytes }

    /// Usage before minus usage after (0 if it grew).
    public var reclaimedBytes: UInt64 { usageBeforeBytes > usageAfterBytes ? usageBeforeBytes - usageAfterBytes : 0 }
}

/// A reclaim that was refused or failed. When it is thrown, the v1 limit is
/// back at its original (except ``Reason/notRestored``, where it stays
/// journaled for unload, the guardian and the next start to restore).
public struct MemcgReclaimError: Error, Sendable, CustomStringConvertible {
    public enum Reason: Sendable {
        /// v1: the group's kernel OOM killer is off (oom_kill_disable 1, e.g.
        /// an OOM policy governs it): a task that hit the lowered limit would
        /// wait in an OOM. Nothing was changed.
        case oomKillerDisabled
        /// v1: the group is in an OOM now. Nothing was changed.
        case underOOM
        /// The original limit could not be journaled. Nothing was changed.
        case journal(KnobError)
        /// A file could not be read or written (the limit is back if it was lowered).
        case system(SystemCallError)
        /// The lowered limit could not be put back to `original`.
        case notRestored(original: String, SystemCallError)
    }

    /// The memory cgroup.
    public var memcg: String
    public var reason: Reason

    public init(memcg: String, reason: Reason) {
        self.memcg = memcg
        self.reason = reason
    }

    /// The kernel's answer, when the failure was one.
    public var errno: Errno? {
        switch reason {
        case .oomKillerDisabled, .underOOM: return nil
        case .journal(let error): return error.errno
        case .system(let error), .notRestored(_, let error): return error.errno
        }
    }

    /// The file the failure concerns.
    public var path: String {
        switch reason {
        case .oomKillerDisabled, .underOOM: return memcg + "/memory.oom_control"
        case .journal(let error): return error.path
        case .system(let error), .notRestored(_, let error): return error.target
        }
    }

    public var description: String {
        switch reason {
        case .oomKillerDisabled:
            return "reclaim of \(memcg) refused: its kernel OOM killer is off (memory.oom_control oom_kill_disable 1), so a task that met the lowered limit would wait in an OOM"
        case .underOOM:
            return "reclaim of \(memcg) refused: it is under OOM now (memory.oom_control under_oom 1)"
        case .journal(let error):
            return "reclaim of \(memcg) not done: its limit's original could not be journaled, so nothing was changed: \(error)"
        case .system(let error):
            return "reclaim of \(memcg) failed: \(error)"
        case .notRestored(let original, let error):
            return "reclaim of \(memcg): its memory.limit_in_bytes could NOT be put back to \(original) (\(error)); it stays journaled and is restored on unload, by the guardian or at the next start"
        }
    }
}
