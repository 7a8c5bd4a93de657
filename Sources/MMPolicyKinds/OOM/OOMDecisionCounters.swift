/// How an oom policy's decisions have gone since it was attached: what the
/// watchdog reads to judge the policy's decision health. Cumulative, except
/// `consecutiveFallbacks`, the current run of decisions that ended with the
/// kernel deciding instead.
public struct OOMDecisionCounters: Sendable, Equatable {
    /// Times the policy was asked (`select_victim` run).
    public var decisions: UInt64 = 0
    /// Decisions carried out.
    public var enforced: UInt64 = 0
    /// Processes killed by the policy's decisions, plus processes the kernel
    /// killed in the policy's scope while it was enforcing (a fallback's kill
    /// is still a kill in scope).
    public var kills: UInt64 = 0
    /// `select_victim` failed to run.
    public var errors: UInt64 = 0
    /// Decisions the validator refused (strikes).
    public var rejections: UInt64 = 0
    /// Decisions that came after the policy's deadline.
    public var deadlineMisses: UInt64 = 0
    /// Decisions that ended with the kernel deciding (error, no decision,
    /// missed deadline, rejection, or a kill that reached nobody).
    public var fallbacks: UInt64 = 0
    public var consecutiveFallbacks: UInt64 = 0

    public init() {}
}

/// What one decision came to, for the counters.
enum OOMDecisionOutcome: Equatable {
    case error, deadlineMiss, noDecision, rejection, killFailed
    case enforced(kills: Int)
    case observed

    /// Applies this outcome to `counters`.
    func apply(to counters: inout OOMDecisionCounters) {
        counters.decisions += 1
        switch self {
        case .enforced(let kills):
            counters.enforced += 1
            counters.kills += UInt64(kills)
            counters.consecutiveFallbacks = 0
            return
        case .observed:
            return
        case .error: counters.errors += 1
        case .deadlineMiss: counters.deadlineMisses += 1
        case .rejection: counters.rejections += 1
        case .noDecision, .killFailed: break
        }
        counters.fallbacks += 1
        counters.consecutiveFallbacks += 1
    }
}
