import BPFKit

import MMPolicyCore

/// How the watchdog reads each ``GuardMetric`` (whose names live in Core,
/// with the guard table) out of a ``SignalWindow``, and prints it.
extension GuardMetric {
    /// The figure in `window`; nil when the window does not have it (nothing
    /// to divide by, or a signal that could not be read).
    public func value(in window: SignalWindow) -> Double? {
        let derived = window.derived
        switch self {
        case .refaultRatio: return derived.refaultRatio
        case .refaultRatePerGiB: return derived.refaultsPerSecondPerGiB
        case .scanEfficiency: return derived.scanEfficiency
        case .psiSomeAvg10: return window.pressure?.someAvg10
        case .bpfNsPerRun: return derived.meanBPFNsPerRun
        case .bpfCPUPercent: return derived.bpfCPUPercent
        case .callbackMicroseconds: return derived.callbackMicrosecondsPerRun
        case .mapMemoryKB: return derived.mapMemoryKB
        case .actionsPerMinute: return Double(derived.actionsPerMinute)
        case .consecutiveFallbacks: return Double(derived.consecutiveFallbacks)
        case .rejectionsPerMinute: return Double(derived.rejectionsPerMinute)
        case .decisionErrorsPerMinute: return Double(derived.errorsPerMinute)
        case .deadlineMissesPerMinute: return Double(derived.deadlineMissesPerMinute)
        }
    }

    /// How much happened in `window` that the figure is computed from, in
    /// the unit a rule's `minimumActivity` uses (see each case); nil for
    /// figures that need no floor.
    public func activity(in window: SignalWindow) -> Double? {
        let seconds = window.seconds > 0 ? window.seconds : 1
        switch self {
        case .refaultRatio: return Double(window.memory.flatMap { $0.globalEvicted ?? $0.evicted } ?? 0) / seconds
        case .refaultRatePerGiB: return Double(window.memory.map { $0.globalEvicted ?? $0.evicted ?? $0.refaults } ?? 0) / seconds
        case .scanEfficiency: return Double(window.memory?.scanned ?? 0) / seconds
        case .bpfNsPerRun: return Double(window.bpf.runs) / seconds
        case .callbackMicroseconds: return Double(window.lastMinute.callbackRuns)
        default: return nil
        }
    }

    /// Decimal places when printed.
    var places: Int {
        switch self {
        case .refaultRatio, .scanEfficiency, .psiSomeAvg10: return 2
        case .bpfCPUPercent, .callbackMicroseconds: return 1
        default: return 0
        }
    }

    /// `value` as trips and status print it, e.g. "0.83".
    public func format(_ value: Double) -> String { decimalString(value, places: places) }
}

/// One guard: a limit on one figure of every window, e.g. "refault_ratio
/// above 0.50 breaches". Built by ``GuardDefaults`` from a kind's defaults
/// and a manifest's `[guards]`; ``GuardMonitor`` counts consecutive breaches.
///
/// A rule judges a window only if it shows at least `minimumActivity`, so
/// that idle noise (3 refaults of 4 evicted pages) never reads as a breach.
public struct GuardRule: Sendable, Equatable, Codable {
    /// Which side of the threshold is a breach. The threshold itself is not.
    public typealias Comparator = GuardComparator

    /// The manifest key the threshold comes from, e.g. `max_refault_ratio`.
    public var name: String
    public var metric: GuardMetric
    public var comparator: Comparator
    public var threshold: Double
    /// The least ``GuardMetric/activity(in:)`` a window must show to be
    /// judged; nil judges every window that has the figure.
    public var minimumActivity: Double?

    public init(name: String, metric: GuardMetric, comparator: Comparator, threshold: Double, minimumActivity: Double? = nil) {
        self.name = name
        self.metric = metric
        self.comparator = comparator
        self.threshold = threshold
        self.minimumActivity = minimumActivity
    }

    /// What the rule makes of one window.
    public enum Verdict: Sendable, Equatable {
        case breached(Double)
        case clear(Double)
        /// The window lacks the figure or is below the activity floor.
        case notJudged
    }

    public func judge(_ window: SignalWindow) -> Verdict {
        guard let value = metric.value(in: window), value.isFinite else { return .notJudged }
        if let minimumActivity, (metric.activity(in: window) ?? 0) < minimumActivity { return .notJudged }
        let breached = comparator == .above ? value > threshold : value < threshold
        return breached ? .breached(value) : .clear(value)
    }

    /// "refault_ratio above 0.50".
    public var summary: String { "\(metric.rawValue) \(comparator.rawValue) \(metric.format(threshold))" }
}
