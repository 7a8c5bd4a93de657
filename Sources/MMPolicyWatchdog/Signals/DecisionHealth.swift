/// What a policy's decision loop has done since the policy was loaded:
/// cumulative counts, plus the length of the current run of fallbacks.
///
/// The watchdog cannot see decisions in the kernel's counters, so each
/// kind's decision loop keeps one of these and hands it to the sampler
/// through ``WatchedSubject/health``; the sampler turns the counts into
/// per-window deltas and per-minute counts for the decision-health guards.
/// In a ``SignalWindow`` the same type carries the window's deltas.
public struct DecisionHealth: Sendable, Equatable, Codable {
    /// Decisions asked of the policy.
    public var decisions: UInt64
    /// Decisions carried out (enforce mode, validated).
    public var enforced: UInt64
    /// Processes killed because of the policy's decisions (the oom kind's victims).
    public var kills: UInt64
    /// Callbacks that failed: BPF_PROG_RUN errors, error return codes, malformed output.
    public var errors: UInt64
    /// Decisions the daemon refused as invalid (protected or out-of-scope
    /// targets, sizes or rates beyond the manifest's bounds).
    public var rejections: UInt64
    /// Decisions that took longer than the manifest's deadline_ms.
    public var deadlineMisses: UInt64
    /// Decision points handed to the kernel's default behaviour instead.
    public var fallbacks: UInt64
    /// Fallbacks in a row up to now (0 after any decision that did not fall back).
    public var consecutiveFallbacks: UInt64

    public init(decisions: UInt64 = 0, enforced: UInt64 = 0, kills: UInt64 = 0, errors: UInt64 = 0, rejections: UInt64 = 0,
                deadlineMisses: UInt64 = 0, fallbacks: UInt64 = 0, consecutiveFallbacks: UInt64 = 0) {
        self.decisions = decisions
        self.enforced = enforced
        self.kills = kills
        self.errors = errors
        self.rejections = rejections
        self.deadlineMisses = deadlineMisses
        self.fallbacks = fallbacks
        self.consecutiveFallbacks = consecutiveFallbacks
    }

    /// The counts since `earlier` (0 where a count went backwards, e.g. after
    /// a reset); consecutiveFallbacks stays the current run.
    public func since(_ earlier: DecisionHealth) -> DecisionHealth {
        DecisionHealth(decisions: decisions.saturatingMinus(earlier.decisions), enforced: enforced.saturatingMinus(earlier.enforced),
                       kills: kills.saturatingMinus(earlier.kills), errors: errors.saturatingMinus(earlier.errors),
                       rejections: rejections.saturatingMinus(earlier.rejections),
                       deadlineMisses: deadlineMisses.saturatingMinus(earlier.deadlineMisses),
                       fallbacks: fallbacks.saturatingMinus(earlier.fallbacks), consecutiveFallbacks: consecutiveFallbacks)
    }
}

extension UInt64 {
    /// self - other, or 0 if other is larger (a counter that was reset).
    func saturatingMinus(_ other: UInt64) -> UInt64 { self >= other ? self - other : 0 }
}
