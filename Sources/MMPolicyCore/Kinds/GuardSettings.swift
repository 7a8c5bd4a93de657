/// The `[guards]` values a manifest sets, by key; a key it leaves out takes
/// the kind's default (``GuardTable/value(_:settings:for:)``).
///
/// A BPF policy can be wrong in ways the verifier cannot see: too slow, too
/// trigger-happy, or making memory pressure worse. When a guard is breached
/// the daemon falls back to the kernel's default behaviour, so a bad policy
/// costs a little performance instead of the machine. The keys and their
/// ranges are ``GuardTable``'s entries (and the kind's own); this type only
/// holds what the manifest said, already checked against them.
public struct GuardSettings: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    /// The manifest's values, by `[guards]` key.
    public var values: [String: Double]

    public init(_ values: [String: Double] = [:]) { self.values = values }

    public init(dictionaryLiteral elements: (String, Double)...) {
        self.init(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }

    /// The manifest's value for `key`, if it sets one.
    public subscript(key: String) -> Double? {
        get { values[key] }
        set { values[key] = newValue }
    }

    /// `deadline_ms`: time a decision may take before the kernel's default is used.
    public var deadlineMs: Int? { integer("deadline_ms") }
    /// `breach_windows`: consecutive breached windows before a guard trips.
    public var breachWindows: Int? { integer("breach_windows") }
    /// `cooldown_s`: seconds an ejected policy may not be reloaded without --force.
    public var cooldownS: Int? { integer("cooldown_s") }

    private func integer(_ key: String) -> Int? {
        values[key].flatMap { $0.isFinite ? Int(exactly: $0.rounded()) : nil }
    }
}
