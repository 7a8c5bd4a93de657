import MMPolicyKinds
import MMPolicyWatchdog

extension DecisionHealth {
    /// The watchdog's view of an oom policy's decision counters.
    init(_ counters: OOMDecisionCounters) {
        self.init(decisions: counters.decisions, enforced: counters.enforced, kills: counters.kills,
                  errors: counters.errors, rejections: counters.rejections, deadlineMisses: counters.deadlineMisses,
                  fallbacks: counters.fallbacks, consecutiveFallbacks: counters.consecutiveFallbacks)
    }
}
