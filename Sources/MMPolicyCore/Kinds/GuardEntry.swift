/// Which side of a guard's threshold is a breach. The threshold itself is not.
public enum GuardComparator: String, Sendable, Equatable, Codable {
    case above, below
}

/// The values a `[guards]` key accepts, and the rule text errors quote.
///
/// Kept with the entry so the manifest reader, the documentation and the
/// checks of a kind's own guards all use one description of each key.
public struct GuardRange: Sendable, Equatable {
    /// The accepted values (for integers, whole numbers within it).
    public var bounds: ClosedRange<Double>
    /// Whether only a TOML integer is accepted.
    public var integer: Bool
    /// The rule for people, e.g. "an integer >= 1 (milliseconds)".
    public var rule: String

    public init(bounds: ClosedRange<Double>, integer: Bool, rule: String) {
        self.bounds = bounds
        self.integer = integer
        self.rule = rule
    }

    /// An integer of at least `minimum`, e.g. `.integer(atLeast: 1, "an integer >= 1 (milliseconds)")`.
    public static func integer(atLeast minimum: Int, _ rule: String) -> GuardRange {
        GuardRange(bounds: Double(minimum)...Double(Int.max), integer: true, rule: rule)
    }

    /// A number (integer or floating point) within `bounds`.
    public static func number(_ bounds: ClosedRange<Double>, _ rule: String) -> GuardRange {
        GuardRange(bounds: bounds, integer: false, rule: rule)
    }

    /// Whether `value` is acceptable (false for NaN).
    public func contains(_ value: Double) -> Bool {
        bounds.contains(value) && (!integer || value.rounded() == value)
    }

    /// The range in short, e.g. "integer >= 1", "0 to 1", "> 0 to 100000".
    public var summary: String {
        func number(_ value: Double) -> String {
            value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
        }
        let lower = bounds.lowerBound > 0 && bounds.lowerBound < 1e-300 ? "> 0" : number(bounds.lowerBound)
        if integer { return bounds.upperBound >= Double(Int.max) ? "integer >= \(number(bounds.lowerBound))" : "integer \(lower) to \(number(bounds.upperBound))" }
        if bounds.upperBound >= 1e12 { return lower.hasPrefix(">") ? lower : ">= \(lower)" }
        return "\(lower) to \(number(bounds.upperBound))"
    }
}

/// One `[guards]` key: what it limits, the values it takes and, for a
/// guard judged every window, the figure, which side breaches, the activity
/// a window needs to be judged, its shared default and why.
///
/// Entries are the single list of guard keys: the manifest reader accepts
/// exactly the shared table's keys plus the manifest's kind's own, the
/// watchdog builds its rules from them, and docs/watchdog.md's table is
/// rendered from them (``GuardTable/markdown(kinds:)``).
public struct GuardEntry: Sendable, Equatable {
    /// The manifest key, e.g. `max_refault_ratio`.
    public var key: String
    /// The unit of the value, e.g. "ms", "ratio", "% of one CPU".
    public var unit: String
    public var range: GuardRange
    /// The figure judged every window; nil for settings that are not a
    /// per-window limit (`deadline_ms`, `breach_windows`, `cooldown_s`).
    public var metric: GuardMetric?
    public var comparator: GuardComparator
    /// The least activity (``GuardMetric/activityUnit``) a window must show
    /// to be judged; nil judges every window that has the figure.
    public var minimumActivity: Double?
    /// The value every kind gets unless its definition overrides it
    /// (``PolicyKindDefinition/guardDefaults``); nil: off.
    public var sharedDefault: Double?
    /// Why the default is what it is (or why it is off).
    public var reason: String

    public init(key: String, unit: String, range: GuardRange, metric: GuardMetric?, comparator: GuardComparator = .above,
                minimumActivity: Double? = nil, sharedDefault: Double?, reason: String) {
        self.key = key
        self.unit = unit
        self.range = range
        self.metric = metric
        self.comparator = comparator
        self.minimumActivity = minimumActivity
        self.sharedDefault = sharedDefault
        self.reason = reason
    }
}

/// A kind's default for a guard, replacing the shared table's, and why.
public struct GuardDefault: Sendable, Equatable {
    /// The threshold; nil turns the guard off for the kind.
    public var value: Double?
    public var reason: String

    public init(_ value: Double?, reason: String) {
        self.value = value
        self.reason = reason
    }
}
