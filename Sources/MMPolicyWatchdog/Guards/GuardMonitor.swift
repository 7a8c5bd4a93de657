import MMPolicyCore

/// One policy's guards over time: its recent windows, a run of consecutive
/// breaches per rule, and the trip when a run reaches `breachWindows`.
///
/// Hysteresis is the point: a guard trips only after `breachWindows`
/// consecutive windows (default 3) each judged and each breached, so one
/// noisy second never ejects a policy. A window a rule cannot judge (below
/// its activity floor, or without the figure) ends the run like a clean
/// one. Figures that are per-minute counts (kills, rejections, ...) stay
/// high for a minute after a burst, so for them the hysteresis delays a
/// trip but does not forgive the burst.
public struct GuardMonitor: Sendable {
    /// One rule's standing, for status output.
    public struct GuardStatus: Sendable, Equatable, Codable {
        public var rule: GuardRule
        /// The figure in the last window; nil if it had none.
        public var lastValue: Double?
        /// Consecutive breached windows up to the last one.
        public var consecutiveBreaches: Int
    }

    public let subject: String
    public let rules: [GuardRule]
    public let breachWindows: Int
    public let historyLimit: Int

    private var ring: [SignalWindow] = []
    private var nextSlot = 0
    /// Per rule, the values of its current run of breaches (oldest first).
    private var runs: [[Double]]
    private var lastValues: [Double?]
    /// The latest trip, if any.
    public private(set) var lastTrip: GuardTrip?

    public init(subject: String, rules: [GuardRule], breachWindows: Int = GuardDefaults.breachWindows,
                historyLimit: Int = GuardDefaults.historyWindows) {
        self.subject = subject
        self.rules = rules
        self.breachWindows = max(1, breachWindows)
        self.historyLimit = max(1, historyLimit)
        runs = Array(repeating: [], count: rules.count)
        lastValues = Array(repeating: nil, count: rules.count)
        ring.reserveCapacity(self.historyLimit)
    }

    /// The monitor for a policy of `definition`'s kind with manifest guards `settings`.
    public init(subject: String, definition: (any PolicyKindDefinition)?, settings: GuardSettings = GuardSettings(),
                historyLimit: Int = GuardDefaults.historyWindows) {
        self.init(subject: subject, rules: GuardDefaults.rules(for: definition, settings: settings),
                  breachWindows: GuardDefaults.breachWindows(settings), historyLimit: historyLimit)
    }

    /// Records `window` and judges it by every rule. Returns a trip when a
    /// rule's run of breaches reaches `breachWindows` (the first such rule,
    /// in rule order); that rule's run then starts over.
    public mutating func observe(_ window: SignalWindow) -> GuardTrip? {
        record(window)
        var trip: GuardTrip?
        for (index, rule) in rules.enumerated() {
            switch rule.judge(window) {
            case .breached(let value):
                lastValues[index] = value
                runs[index].append(value)
                if runs[index].count >= breachWindows, trip == nil {
                    let values = runs[index]
                    trip = GuardTrip(subject: subject, rule: rule, values: values,
                                     windowSeconds: meanSeconds(ofLast: values.count), endNs: window.endNs)
                    runs[index].removeAll(keepingCapacity: true)
                }
            case .clear(let value):
                lastValues[index] = value
                runs[index].removeAll(keepingCapacity: true)
            case .notJudged:
                lastValues[index] = rule.metric.value(in: window)
                runs[index].removeAll(keepingCapacity: true)
            }
        }
        if let trip { lastTrip = trip }
        return trip
    }

    /// The last window recorded.
    public var latest: SignalWindow? {
        ring.isEmpty ? nil : ring[(nextSlot + ring.count - 1) % ring.count]
    }

    /// The kept windows, oldest first (at most `historyLimit`).
    public var history: [SignalWindow] {
        ring.count < historyLimit ? ring : Array(ring[nextSlot...] + ring[..<nextSlot])
    }

    /// Every rule with its last value and current run.
    public var status: [GuardStatus] {
        rules.indices.map { GuardStatus(rule: rules[$0], lastValue: lastValues[$0], consecutiveBreaches: runs[$0].count) }
    }

    private mutating func record(_ window: SignalWindow) {
        if ring.count < historyLimit {
            ring.append(window)
        } else {
            ring[nextSlot] = window
            nextSlot = (nextSlot + 1) % historyLimit
        }
    }

    /// The mean length of the last `count` windows recorded.
    private func meanSeconds(ofLast count: Int) -> Double {
        let recent = history.suffix(count)
        return recent.isEmpty ? 0 : recent.reduce(0) { $0 + $1.seconds } / Double(recent.count)
    }
}
