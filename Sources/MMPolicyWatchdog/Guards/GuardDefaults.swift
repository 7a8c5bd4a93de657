import MMPolicyCore

/// Every guard the watchdog knows, with each kind's default threshold, in
/// one table; and the rules a policy gets from it and its manifest's
/// `[guards]`.
///
/// Defaults are set so that a healthy workload never trips them (most read
/// nothing at all on a machine that is not reclaiming) while a policy that
/// makes its scope thrash, loops, or burns CPU is caught within a few
/// windows. A manifest value replaces the default for that guard, tighter or
/// looser; a manifest may also turn on a guard that is off for its kind.
public enum GuardDefaults {
    /// Consecutive breached windows before a guard trips (`breach_windows`).
    public static let breachWindows = 3
    /// Windows a ``GuardMonitor`` keeps for `mmpolicy status --watch`: 5 min of 1 s windows.
    public static let historyWindows = 300

    /// One guard: its manifest key, what it compares, the activity a window
    /// needs to be judged, and each kind's default (absent: off for that kind).
    public struct Entry: Sendable {
        public var key: String
        public var metric: GuardMetric
        public var comparator: GuardRule.Comparator
        public var minimumActivity: Double?
        public var defaults: [PolicyKind: Double]

        public func rule(threshold: Double) -> GuardRule {
            GuardRule(name: key, metric: metric, comparator: comparator, threshold: threshold, minimumActivity: minimumActivity)
        }
    }

    private static func every(_ value: Double, except overrides: [PolicyKind: Double] = [:]) -> [PolicyKind: Double] {
        var table: [PolicyKind: Double] = [:]
        for kind in PolicyKind.allCases { table[kind] = overrides[kind] ?? value }
        return table
    }

    /// The table. Activity floors are per second of window unless noted.
    public static let table: [Entry] = [
        // Refaulted / evicted pages. Healthy reclaim evicts cold pages that
        // mostly never return (ratios well under 0.2); when over half of what
        // is evicted comes back, reclaim is evicting the working set. Tiering
        // evicts on purpose, so each refault is its own wrong guess: 0.3.
        // Judged only when >= 1000 pages (4 MiB) a second were evicted.
        // Unavailable on cgroup v1 scopes (no eviction counter): the rate
        // below covers them.
        Entry(key: "max_refault_ratio", metric: .refaultRatio, comparator: .above, minimumActivity: 1000,
              defaults: every(0.5, except: [.tiering: 0.3])),
        // Refaulted pages per second per GiB of the scope (MemTotal, the memcg
        // limit, or its usage when unlimited). 25000 is about a tenth of the
        // scope's memory coming back every second: thrashing by any
        // standard, far beyond a healthy workload's near-zero (24 GiB host:
        // 2.4 GB/s of refaults). Judged when >= 256 pages (1 MiB) a second
        // refaulted, so a tiny memcg's few refaults never count.
        Entry(key: "max_refault_rate_per_gib", metric: .refaultRatePerGiB, comparator: .above, minimumActivity: 256,
              defaults: every(25_000)),
        // Stolen / scanned pages. Reclaim that frees under a tenth of what it
        // scans is churning through referenced or unreclaimable pages
        // (healthy reclaim frees most of what it scans). Judged when >= 10000
        // pages (40 MiB) a second were scanned. Unavailable on cgroup v1.
        Entry(key: "min_scan_efficiency", metric: .scanEfficiency, comparator: .below, minimumActivity: 10_000,
              defaults: every(0.1)),
        // PSI memory some avg10: off by default for every kind. A scope's
        // stall is everything in it, and at system scope (and cgroup v1
        // scopes, which read the system's PSI) a host under pressure from
        // something else would eject every policy at once. A manifest that
        // sets max_psi_some_avg10 turns it on (best on a cgroup v2 scope).
        Entry(key: "max_psi_some_avg10", metric: .psiSomeAvg10, comparator: .above, minimumActivity: nil,
              defaults: [:]),
        // Mean ns per run of all the policy's programs. Sensors are meant to
        // take well under 1 µs and a task-walking callback ~4 µs per 80
        // tasks; 50 µs per run on average is a runaway loop or walk. Judged
        // when >= 100 runs a second, so a few slow callback runs do not
        // count (max_callback_us covers callbacks).
        Entry(key: "max_bpf_ns_per_run", metric: .bpfNsPerRun, comparator: .above, minimumActivity: 100,
              defaults: every(50_000)),
        // The policy's BPF time as a share of one CPU. A cheap sensor on a
        // hot tracepoint costs a few percent at most (300 ns x 100k events/s
        // = 3 %); a quarter of a CPU is a sensor out of control.
        Entry(key: "max_bpf_cpu_percent", metric: .bpfCPUPercent, comparator: .above, minimumActivity: nil,
              defaults: every(25)),
        // Memory charged for the policy's maps. Reference policies hold a
        // few MiB; 256 MiB is a map sized or growing out of proportion.
        Entry(key: "max_map_memory_kb", metric: .mapMemoryKB, comparator: .above, minimumActivity: nil,
              defaults: every(262_144)),
        // Mean µs per callback run over the last minute. A callback is
        // expected in microseconds; 10 ms is a tenth of the default 100 ms
        // decision deadline, spent in the kernel. Judged when the last minute
        // had >= 3 callback runs, so one slow first run does not count.
        Entry(key: "max_callback_us", metric: .callbackMicroseconds, comparator: .above, minimumActivity: 3,
              defaults: every(10_000)),
        // Decision health, for every kind (each kind's decision loop reports
        // a DecisionHealth; a loop that reports nothing keeps these at 0).
        // A healthy policy has none of these; a few allow for races (a victim
        // that exits between decision and validation is a rejection).
        Entry(key: "max_rejections", metric: .rejectionsPerMinute, comparator: .above, minimumActivity: nil,
              defaults: every(5)),
        Entry(key: "max_decision_errors", metric: .decisionErrorsPerMinute, comparator: .above, minimumActivity: nil,
              defaults: every(3)),
        Entry(key: "max_deadline_misses", metric: .deadlineMissesPerMinute, comparator: .above, minimumActivity: nil,
              defaults: every(3)),
        // oom only: kills the policy caused in the last 60 s; 6 is what the
        // shipped manifests set. Other kinds kill nothing.
        Entry(key: "max_kills_per_minute", metric: .killsPerMinute, comparator: .above, minimumActivity: nil,
              defaults: [.oom: 6]),
        // oom only: OOMs handed to the kernel killer in a row. Three means
        // the policy has stopped answering; for the periodic kinds a
        // fallback only skips a round and costs nothing.
        Entry(key: "max_consecutive_fallbacks", metric: .consecutiveFallbacks, comparator: .above, minimumActivity: nil,
              defaults: [.oom: 3]),
    ]

    /// The rules for a policy of `kind` with manifest `[guards]` `settings`:
    /// every guard with a threshold, the manifest's where it sets one, else
    /// the kind's default. In table order.
    public static func rules(kind: PolicyKind, settings: GuardSettings = GuardSettings()) -> [GuardRule] {
        table.compactMap { entry in
            (manifestValue(entry.key, settings) ?? entry.defaults[kind]).map(entry.rule(threshold:))
        }
    }

    /// The manifest's breach_windows, or the default.
    public static func breachWindows(_ settings: GuardSettings) -> Int {
        max(1, settings.breachWindows ?? breachWindows)
    }

    /// The manifest's value for guard `key`, if it sets one.
    static func manifestValue(_ key: String, _ settings: GuardSettings) -> Double? {
        switch key {
        case "max_refault_ratio": return settings.maxRefaultRatio
        case "max_refault_rate_per_gib": return settings.maxRefaultRatePerGiB
        case "min_scan_efficiency": return settings.minScanEfficiency
        case "max_psi_some_avg10": return settings.maxPSISomeAvg10
        case "max_bpf_ns_per_run": return settings.maxBPFNsPerRun.map(Double.init)
        case "max_bpf_cpu_percent": return settings.maxBPFCPUPercent
        case "max_map_memory_kb": return settings.maxMapMemoryKB.map(Double.init)
        case "max_callback_us": return settings.maxCallbackUs.map(Double.init)
        case "max_rejections": return settings.maxRejections.map(Double.init)
        case "max_decision_errors": return settings.maxDecisionErrors.map(Double.init)
        case "max_deadline_misses": return settings.maxDeadlineMisses.map(Double.init)
        case "max_kills_per_minute": return settings.maxKillsPerMinute.map(Double.init)
        case "max_consecutive_fallbacks": return settings.maxConsecutiveFallbacks.map(Double.init)
        default: return nil
        }
    }
}
