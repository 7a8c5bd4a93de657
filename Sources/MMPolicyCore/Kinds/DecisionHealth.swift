import Synchronization

/// What a policy's decisions have come to since it was attached: cumulative
/// counts, plus the length of the current run of fallbacks.
///
/// One model for every kind: each kind's engine counts its decisions in a
/// ``DecisionHealthBoard`` and the watchdog's sampler reads it once per
/// window, turning the counts into per-window deltas and per-minute counts
/// for the decision-health guards. In a watchdog window the same type
/// carries the window's deltas.
public struct DecisionHealth: Sendable, Equatable, Codable {
    /// Decisions asked of the policy (callback runs at a decision point).
    public var decisions: UInt64
    /// Actions carried out because of the policy: the oom kind's processes
    /// killed, a periodic kind's validated actions applied.
    public var actions: UInt64
    /// Callbacks that failed: BPF_PROG_RUN errors, error return codes, malformed output.
    public var errors: UInt64
    /// Decisions the daemon refused as invalid (protected or out-of-scope
    /// targets, sizes or rates beyond the manifest's bounds).
    public var rejections: UInt64
    /// Decisions that took longer than the manifest's deadline_ms.
    public var deadlineMisses: UInt64
    /// Decision points handed to the kernel's default behaviour instead.
    public var fallbacks: UInt64
    /// Fallbacks in a row up to now (0 after any decision that was carried out).
    public var consecutiveFallbacks: UInt64

    public init(decisions: UInt64 = 0, actions: UInt64 = 0, errors: UInt64 = 0, rejections: UInt64 = 0,
                deadlineMisses: UInt64 = 0, fallbacks: UInt64 = 0, consecutiveFallbacks: UInt64 = 0) {
        self.decisions = decisions
        self.actions = actions
        self.errors = errors
        self.rejections = rejections
        self.deadlineMisses = deadlineMisses
        self.fallbacks = fallbacks
        self.consecutiveFallbacks = consecutiveFallbacks
    }

    /// How one decision ended, as the health model counts it.
    public enum Event: Sendable, Equatable {
        /// Carried out, with this many actions (OOM: processes killed).
        case carriedOut(actions: Int)
        /// Observe mode: recorded only.
        case observed
        /// The callback failed.
        case error
        /// The answer came after the deadline.
        case deadlineMiss
        /// Refused by validation.
        case rejection
        /// The policy declined, or its action reached nothing.
        case fallback
    }

    /// Counts one decision.
    public mutating func count(_ event: Event) {
        decisions += 1
        switch event {
        case .carriedOut(let count):
            actions += UInt64(max(0, count))
            consecutiveFallbacks = 0
            return
        case .observed:
            return
        case .error: errors += 1
        case .deadlineMiss: deadlineMisses += 1
        case .rejection: rejections += 1
        case .fallback: break
        }
        fallbacks += 1
        consecutiveFallbacks += 1
    }

    /// The counts since `earlier` (0 where a count went backwards, e.g. after
    /// a reset); consecutiveFallbacks stays the current run.
    public func since(_ earlier: DecisionHealth) -> DecisionHealth {
        DecisionHealth(decisions: decisions.saturatingMinus(earlier.decisions), actions: actions.saturatingMinus(earlier.actions),
                       errors: errors.saturatingMinus(earlier.errors), rejections: rejections.saturatingMinus(earlier.rejections),
                       deadlineMisses: deadlineMisses.saturatingMinus(earlier.deadlineMisses),
                       fallbacks: fallbacks.saturatingMinus(earlier.fallbacks), consecutiveFallbacks: consecutiveFallbacks)
    }
}

/// Every attached policy's ``DecisionHealth`` inside one engine.
///
/// The engine's thread counts; the watchdog's sampling thread reads. One
/// short lock, never held across anything but the arithmetic, so counting
/// never waits on a reader for longer than a copy.
public final class DecisionHealthBoard: Sendable {
    private let entries = Mutex<[String: DecisionHealth]>([:])

    public init() {}

    /// Starts counting for `policy` from zero.
    public func open(_ policy: String) { entries.withLock { $0[policy] = DecisionHealth() } }

    /// Stops counting for `policy`.
    public func close(_ policy: String) { entries.withLock { _ = $0.removeValue(forKey: policy) } }

    /// Counts one of `policy`'s decisions (ignored for a policy not open).
    public func count(_ event: DecisionHealth.Event, for policy: String) {
        entries.withLock { entries in
            guard var health = entries[policy] else { return }
            health.count(event)
            entries[policy] = health
        }
    }

    /// Counts `count` rejections within a decision already counted (a
    /// plan carried out in part), without counting another decision.
    public func addRejections(_ count: Int, for policy: String) {
        entries.withLock { $0[policy]?.rejections += UInt64(max(0, count)) }
    }

    /// Adds actions that happened in `policy`'s scope outside a decision
    /// (OOM: the kernel's killer acting in a scope the policy enforces).
    public func addActions(_ count: Int, for policy: String) {
        entries.withLock { $0[policy]?.actions += UInt64(max(0, count)) }
    }

    /// `policy`'s counts; nil if it is not open.
    public func health(of policy: String) -> DecisionHealth? { entries.withLock { $0[policy] } }
}

extension UInt64 {
    /// self - other, or 0 if other is larger (a counter that was reset).
    public func saturatingMinus(_ other: UInt64) -> UInt64 { self >= other ? self - other : 0 }
}
