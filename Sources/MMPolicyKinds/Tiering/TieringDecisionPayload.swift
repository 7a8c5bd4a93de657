import BPFKit
import MMPolicyCore

/// The tiering kind's part of a decision record: what one plan asked for,
/// what the daemon refused and why, what it moved (or, in observe mode,
/// would have moved) per process and reclaimed per memory cgroup, and the
/// slow tier then.
///
/// Version 2 added reclaim targets (`targetsAsked`, `reclaimedBytes`,
/// `reclaims`, `targetRefusals`); a version 1 record decodes with none.
public struct TieringDecisionPayload: DecisionPayloadBody {
    public static let version = 2
    public static let oldestReadableVersion = 1

    /// What happened to one process's memory in this plan.
    public struct ProcessMoves: Codable, Sendable, Equatable {
        public var pid: Int32
        public var comm: String
        public var demotedBytes: UInt64
        public var coldBytes: UInt64
        public var promotedBytes: UInt64

        public init(pid: Int32, comm: String, demotedBytes: UInt64 = 0, coldBytes: UInt64 = 0, promotedBytes: UInt64 = 0) {
            self.pid = pid
            self.comm = comm
            self.demotedBytes = demotedBytes
            self.coldBytes = coldBytes
            self.promotedBytes = promotedBytes
        }
    }

    /// An action the daemon refused, and why.
    public struct Refusal: Codable, Sendable, Equatable {
        public var action: TieringAction
        public var reason: String

        public init(action: TieringAction, reason: String) {
            self.action = action
            self.reason = reason
        }
    }

    /// A reclaim target the daemon refused, and why.
    public struct TargetRefusal: Codable, Sendable, Equatable {
        public var target: TieringTarget
        public var reason: String

        public init(target: TieringTarget, reason: String) {
            self.target = target
            self.reason = reason
        }
    }

    /// A reclaim target the daemon accepted, and what came of it.
    public struct Reclaim: Codable, Sendable, Equatable {
        public var cgroupID: UInt64
        /// The memory cgroup's directory.
        public var cgroup: String
        /// What the plan asked for.
        public var askedBytes: UInt64
        /// What the bounds left of it (max_demote_mb, min_swap_free_percent).
        public var grantedBytes: UInt64
        /// What the group's usage fell by (observe mode: 0, nothing was done).
        public var reclaimedBytes: UInt64
        /// How long the kernel's reclaim took, in microseconds.
        public var durationUs: Double
        /// cgroup v1: how many times the limit was lowered before it was raised back.
        public var steps: Int
        /// Why the reclaim stopped where it did (``MemcgReclaimOutcome/Stop``), if it ran.
        public var stop: String?
        /// Why it failed or was not done, if so.
        public var failure: String?

        public init(cgroupID: UInt64, cgroup: String, askedBytes: UInt64, grantedBytes: UInt64, reclaimedBytes: UInt64 = 0,
                    durationUs: Double = 0, steps: Int = 0, stop: String? = nil, failure: String? = nil) {
            self.cgroupID = cgroupID
            self.cgroup = cgroup
            self.askedBytes = askedBytes
            self.grantedBytes = grantedBytes
            self.reclaimedBytes = reclaimedBytes
            self.durationUs = durationUs
            self.steps = steps
            self.stop = stop
            self.failure = failure
        }
    }

    /// Actions the plan returned (malformed ones included).
    public var actionsAsked: Int
    /// Bytes moved (observe mode: that would have moved), all processes together.
    public var demotedBytes: UInt64
    public var coldBytes: UInt64
    public var promotedBytes: UInt64
    /// Per process, largest first (at most ``maxListed``).
    public var processes: [ProcessMoves]
    /// Refused actions (at most ``maxListed``) and how many in all,
    /// refused reclaim targets included.
    public var refusals: [Refusal]
    public var refusedCount: Int
    /// What the kernel said when an accepted action or reclaim target could
    /// not be carried out (the process exited meanwhile, say), one line each.
    public var failures: [String]
    /// The slow tier when the plan was made.
    public var tier: TierFigures
    /// Reclaim targets the plan returned.
    public var targetsAsked: Int
    /// Bytes the accepted targets' memcgs gave up, together (observe mode:
    /// that the daemon would have asked the kernel to reclaim).
    public var reclaimedBytes: UInt64
    /// Each accepted target and what came of it.
    public var reclaims: [Reclaim]
    /// Refused targets (also counted in `refusedCount`).
    public var targetRefusals: [TargetRefusal]
    /// What the compressibility check sampled and left resident (nil: no
    /// demotion was checked, or a record older than the check).
    public var compressibility: CompressibilitySampling? = nil

    public static let maxListed = 16

    public init(actionsAsked: Int = 0, demotedBytes: UInt64 = 0, coldBytes: UInt64 = 0, promotedBytes: UInt64 = 0,
                processes: [ProcessMoves] = [], refusals: [Refusal] = [], refusedCount: Int = 0, failures: [String] = [],
                tier: TierFigures = TierFigures(), targetsAsked: Int = 0, reclaimedBytes: UInt64 = 0, reclaims: [Reclaim] = [],
                targetRefusals: [TargetRefusal] = []) {
        self.actionsAsked = actionsAsked
        self.demotedBytes = demotedBytes
        self.coldBytes = coldBytes
        self.promotedBytes = promotedBytes
        self.processes = processes
        self.refusals = refusals
        self.refusedCount = refusedCount
        self.failures = failures
        self.tier = tier
        self.targetsAsked = targetsAsked
        self.reclaimedBytes = reclaimedBytes
        self.reclaims = reclaims
        self.targetRefusals = targetRefusals
    }

    enum CodingKeys: String, CodingKey {
        case actionsAsked, demotedBytes, coldBytes, promotedBytes, processes, refusals, refusedCount, failures, tier
        case targetsAsked, reclaimedBytes, reclaims, targetRefusals, compressibility
    }

    /// Decodes version 2, and version 1 records (no reclaim fields) as having
    /// no targets; a record without the compressibility check's figures has none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        actionsAsked = try c.decode(Int.self, forKey: .actionsAsked)
        demotedBytes = try c.decode(UInt64.self, forKey: .demotedBytes)
        coldBytes = try c.decode(UInt64.self, forKey: .coldBytes)
        promotedBytes = try c.decode(UInt64.self, forKey: .promotedBytes)
        processes = try c.decode([ProcessMoves].self, forKey: .processes)
        refusals = try c.decode([Refusal].self, forKey: .refusals)
        refusedCount = try c.decode(Int.self, forKey: .refusedCount)
        failures = try c.decode([String].self, forKey: .failures)
        tier = try c.decode(TierFigures.self, forKey: .tier)
        targetsAsked = try c.decodeIfPresent(Int.self, forKey: .targetsAsked) ?? 0
        reclaimedBytes = try c.decodeIfPresent(UInt64.self, forKey: .reclaimedBytes) ?? 0
        reclaims = try c.decodeIfPresent([Reclaim].self, forKey: .reclaims) ?? []
        targetRefusals = try c.decodeIfPresent([TargetRefusal].self, forKey: .targetRefusals) ?? []
        compressibility = try c.decodeIfPresent(CompressibilitySampling.self, forKey: .compressibility)
    }

    /// Whether the plan moved or reclaimed (or would have) anything.
    public var movedAnything: Bool { demotedBytes + coldBytes + promotedBytes + reclaimedBytes > 0 }
}

/// The step names a tiering record times, from the trigger seen.
public enum TieringStep {
    /// Every accepted action carried out.
    public static let carriedOut = "carried out"
}

extension DecisionRecord {
    /// The record's tiering payload, if it is a tiering decision of a version this build reads.
    public var tiering: TieringDecisionPayload? { payload.decode(TieringDecisionPayload.self) }
}

/// How a tiering decision reads in `mmpolicy events` and `status`.
enum TieringDecisionText {
    static func summary(_ r: DecisionRecord, _ p: TieringDecisionPayload) -> String {
        let verb = r.mode == .observe ? "would move" : "moved"
        var parts: [String] = []
        if p.demotedBytes > 0 { parts.append("\(mib(p.demotedBytes)) out") }
        if p.coldBytes > 0 { parts.append("\(mib(p.coldBytes)) marked cold") }
        if p.promotedBytes > 0 { parts.append("\(mib(p.promotedBytes)) back") }
        let moved = parts.isEmpty ? (p.reclaims.isEmpty ? "nothing moved" : "") : "\(verb) \(parts.joined(separator: ", "))"
        let who = p.processes.prefix(3).map { "pid \($0.pid) (\($0.comm))" }.joined(separator: ", ")
        let reclaimed = reclaimText(r, p)
        let asked = p.actionsAsked + p.targetsAsked
        let firstReason = p.refusals.first?.reason ?? p.targetRefusals.first?.reason ?? ""
        let noun = p.targetsAsked == 0 ? "actions" : p.actionsAsked == 0 ? "reclaim targets" : "actions and reclaim targets"
        let refused = p.refusedCount > 0 ? "; refused \(p.refusedCount) of \(asked) \(noun) (\(firstReason))" : ""
        let failed = p.failures.isEmpty ? "" : "; \(p.failures.count) failed (\(p.failures[0]))"
        let skipped = p.compressibility.map { $0.skippedBytes > 0 ? "; \(mib($0.skippedBytes)) left resident as incompressible" : "" } ?? ""
        let detail = r.detail.isEmpty ? "" : ": \(r.detail)"
        let said = r.policyError.map { " (the policy said: \($0.message), code \($0.code))" } ?? ""
        switch r.outcome {
        case .error, .fellBack:
            return "\(r.trigger) plan in \(r.origin): \(r.outcome == .error ? "failed" : "nothing done")\(detail)\(said)\(skipped)"
        default:
            let movedText = moved.isEmpty ? "" : moved + (who.isEmpty ? "" : " of \(who)")
            let what = [movedText, reclaimed].filter { !$0.isEmpty }.joined(separator: "; ")
            return "\(r.trigger) plan in \(r.origin): \(what.isEmpty ? "nothing moved" : what)\(refused)\(failed)\(skipped)"
        }
    }

    /// "reclaimed 12.0 MiB of 16.0 MiB asked from /sys/fs/cgroup/memory/job in 310 ms", or empty.
    static func reclaimText(_ r: DecisionRecord, _ p: TieringDecisionPayload) -> String {
        guard let first = p.reclaims.first else { return "" }
        let granted = p.reclaims.reduce(0) { $0 + $1.grantedBytes }
        let more = p.reclaims.count > 1 ? " and \(p.reclaims.count - 1) more" : ""
        if r.mode == .observe { return "would reclaim \(mib(granted)) from \(first.cgroup)\(more)" }
        let took = p.reclaims.reduce(0.0) { $0 + $1.durationUs } / 1000
        return "reclaimed \(mib(p.reclaimedBytes)) of \(mib(granted)) asked from \(first.cgroup)\(more) in \(decimalString(took, places: 0)) ms"
    }

    static func mib(_ bytes: UInt64) -> String { decimalString(Double(bytes) / 1_048_576, places: 1) + " MiB" }
}
