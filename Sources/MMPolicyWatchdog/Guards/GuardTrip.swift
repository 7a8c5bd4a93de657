import BPFKit
import MMPolicyCore

/// Why a guard ejected a policy: which guard, the threshold, and the values
/// of the consecutive windows that breached it, like sched_ext's exit info.
///
/// The daemon records it, shows it in `mmpolicy status` and acts on it
/// (unload, restore knobs, cool-down). ``summary`` is the one line for
/// people, e.g. "refault_ratio 0.83, 0.91, 0.88 above 0.50 for 3
/// consecutive 1 s windows".
public struct GuardTrip: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The policy.
    public var subject: String
    /// The guard's name: the manifest key of its threshold, e.g. `max_refault_ratio`.
    public var guardName: String
    public var metric: GuardMetric
    public var comparator: GuardRule.Comparator
    public var threshold: Double
    /// The breaching values, oldest first, one per window.
    public var values: [Double]
    /// How many consecutive windows it took (breach_windows).
    public var windows: Int
    /// The windows' mean length, in seconds.
    public var windowSeconds: Double
    /// The end of the last breaching window (CLOCK_MONOTONIC, ns).
    public var endNs: UInt64
    public var summary: String

    public init(subject: String, rule: GuardRule, values: [Double], windowSeconds: Double, endNs: UInt64) {
        self.subject = subject
        guardName = rule.name
        metric = rule.metric
        comparator = rule.comparator
        threshold = rule.threshold
        self.values = values
        windows = values.count
        self.windowSeconds = windowSeconds
        self.endNs = endNs
        let length = decimalString(windowSeconds, places: 1)
        let seconds = length.hasSuffix(".0") ? String(length.dropLast(2)) : length
        summary = "\(rule.metric.rawValue) \(values.map(rule.metric.format).joined(separator: ", ")) \(rule.comparator.rawValue) "
            + "\(rule.metric.format(rule.threshold)) for \(values.count) consecutive \(seconds) s windows"
    }

    public var description: String { "\(subject): \(guardName) tripped: \(summary)" }
}
