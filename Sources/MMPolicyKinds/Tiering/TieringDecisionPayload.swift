import BPFKit
import MMPolicyCore

/// The tiering kind's part of a decision record: what one plan asked for,
/// what the daemon refused and why, what it moved (or, in observe mode,
/// would have moved) per process, and the slow tier then.
public struct TieringDecisionPayload: DecisionPayloadBody {
    public static let version = 1

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

    /// Actions the plan returned (malformed ones included).
    public var actionsAsked: Int
    /// Bytes moved (observe mode: that would have moved), all processes together.
    public var demotedBytes: UInt64
    public var coldBytes: UInt64
    public var promotedBytes: UInt64
    /// Per process, largest first (at most ``maxListed``).
    public var processes: [ProcessMoves]
    /// Refused actions (at most ``maxListed``) and how many in all.
    public var refusals: [Refusal]
    public var refusedCount: Int
    /// What the kernel said when an accepted action could not be carried
    /// out (the process exited meanwhile, say), one line each.
    public var failures: [String]
    /// The slow tier when the plan was made.
    public var tier: TierFigures
    /// What the compressibility check sampled and left resident (nil: no
    /// demotion was checked, or a record older than the check).
    public var compressibility: CompressibilitySampling? = nil

    public static let maxListed = 16

    public init(actionsAsked: Int = 0, demotedBytes: UInt64 = 0, coldBytes: UInt64 = 0, promotedBytes: UInt64 = 0,
                processes: [ProcessMoves] = [], refusals: [Refusal] = [], refusedCount: Int = 0, failures: [String] = [],
                tier: TierFigures = TierFigures()) {
        self.actionsAsked = actionsAsked
        self.demotedBytes = demotedBytes
        self.coldBytes = coldBytes
        self.promotedBytes = promotedBytes
        self.processes = processes
        self.refusals = refusals
        self.refusedCount = refusedCount
        self.failures = failures
        self.tier = tier
    }

    /// Whether the plan moved (or would move) anything.
    public var movedAnything: Bool { demotedBytes + coldBytes + promotedBytes > 0 }
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
        let moved = parts.isEmpty ? "nothing moved" : "\(verb) \(parts.joined(separator: ", "))"
        let who = p.processes.prefix(3).map { "pid \($0.pid) (\($0.comm))" }.joined(separator: ", ")
        let refused = p.refusedCount > 0 ? "; refused \(p.refusedCount) of \(p.actionsAsked) actions (\(p.refusals.first?.reason ?? ""))" : ""
        let failed = p.failures.isEmpty ? "" : "; \(p.failures.count) failed (\(p.failures[0]))"
        let skipped = p.compressibility.map { $0.skippedBytes > 0 ? "; \(mib($0.skippedBytes)) left resident as incompressible" : "" } ?? ""
        let detail = r.detail.isEmpty ? "" : ": \(r.detail)"
        let said = r.policyError.map { " (the policy said: \($0.message), code \($0.code))" } ?? ""
        switch r.outcome {
        case .error, .fellBack:
            return "\(r.trigger) plan in \(r.origin): \(r.outcome == .error ? "failed" : "nothing done")\(detail)\(said)\(skipped)"
        default:
            return "\(r.trigger) plan in \(r.origin): \(moved)\(who.isEmpty ? "" : " of \(who)")\(refused)\(failed)\(skipped)"
        }
    }

    static func mib(_ bytes: UInt64) -> String { decimalString(Double(bytes) / 1_048_576, places: 1) + " MiB" }
}
