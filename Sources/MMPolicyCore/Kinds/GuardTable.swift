/// Every `[guards]` key every kind shares, with its range, figure, activity
/// floor, default and the reason for the default; and the lookups that add
/// a kind's own entries and defaults.
///
/// This is the one list of guard keys: the manifest reader checks `[guards]`
/// against it (plus the manifest's kind's ``PolicyKindDefinition/guards``),
/// the watchdog builds its rules from it, and docs/watchdog.md's table is
/// rendered from it. Defaults are set so that a healthy workload never trips
/// them (most read nothing at all on a machine that is not reclaiming) while
/// a policy that makes its scope thrash, loops, or burns CPU is caught within
/// a few windows. Activity floors are per second of window unless noted.
public enum GuardTable {
    /// The keys every kind's `[guards]` may hold, in this order: settings
    /// first, then the per-window guards in the order the watchdog judges them.
    public static let shared: [GuardEntry] = [
        GuardEntry(
            key: "deadline_ms", unit: "ms", range: .integer(atLeast: 1, "an integer >= 1 (milliseconds)"),
            metric: nil, sharedDefault: 100,
            reason: "Time a decision may take before the kernel's default is used. A callback takes microseconds; "
                + "100 ms leaves room for a task walk on a busy host while the kernel waits."),
        GuardEntry(
            key: "breach_windows", unit: "windows", range: .integer(atLeast: 1, "an integer >= 1"),
            metric: nil, sharedDefault: 3,
            reason: "Consecutive breached windows before a guard trips, so one noisy second never ejects a policy."),
        GuardEntry(
            key: "cooldown_s", unit: "s", range: .integer(atLeast: 0, "an integer >= 0 (seconds)"),
            metric: nil, sharedDefault: 300,
            reason: "How long an ejected policy may not be loaded again without --force: long enough for someone "
                + "to look at why it tripped."),
        GuardEntry(
            key: "max_refault_ratio", unit: "ratio", range: .number(0...1, "a number from 0 to 1 (a ratio)"),
            metric: .refaultRatio, comparator: .above, minimumActivity: 1000, sharedDefault: 0.5,
            reason: "Refaulted / evicted pages. Healthy reclaim evicts cold pages that mostly never return "
                + "(ratios well under 0.2); when over half of what is evicted comes back, reclaim is evicting the "
                + "working set. Judged only when >= 1000 pages (4 MiB) a second were evicted. Unavailable on "
                + "cgroup v1 scopes (no eviction counter): the rate below covers them."),
        GuardEntry(
            key: "max_refault_rate_per_gib", unit: "pages/s per GiB",
            range: .number(0...1e12, "a number >= 0 (refaulted pages per second per GiB)"),
            metric: .refaultRatePerGiB, comparator: .above, minimumActivity: 256, sharedDefault: 25_000,
            reason: "Refaulted pages per second per GiB of the scope (MemTotal, the memcg limit, or its usage when "
                + "unlimited). 25000 is about a tenth of the scope's memory coming back every second: thrashing by "
                + "any standard, far beyond a healthy workload's near-zero. Judged when >= 256 pages (1 MiB) a "
                + "second refaulted, so a tiny memcg's few refaults never count."),
        GuardEntry(
            key: "min_scan_efficiency", unit: "ratio", range: .number(0...1, "a number from 0 to 1 (a ratio)"),
            metric: .scanEfficiency, comparator: .below, minimumActivity: 10_000, sharedDefault: 0.1,
            reason: "Stolen / scanned pages. Reclaim that frees under a tenth of what it scans is churning through "
                + "referenced or unreclaimable pages (healthy reclaim frees most of what it scans). Judged when "
                + ">= 10000 pages (40 MiB) a second were scanned. Unavailable on cgroup v1."),
        GuardEntry(
            key: "max_psi_some_avg10", unit: "%", range: .number(0...100, "a number from 0 to 100 (percent)"),
            metric: .psiSomeAvg10, comparator: .above, sharedDefault: nil,
            reason: "Off by default: a scope's stall is everything in it, and at system scope (and cgroup v1 "
                + "scopes, which read the system's PSI) a host under pressure from something else would eject "
                + "every policy at once. Setting it turns it on (best on a cgroup v2 scope)."),
        GuardEntry(
            key: "max_bpf_ns_per_run", unit: "ns", range: .integer(atLeast: 1, "an integer >= 1 (nanoseconds)"),
            metric: .bpfNsPerRun, comparator: .above, minimumActivity: 100, sharedDefault: 50_000,
            reason: "Mean ns per run of all the policy's programs. Sensors are meant to take well under 1 µs and a "
                + "task-walking callback ~4 µs per 80 tasks; 50 µs per run on average is a runaway loop or walk. "
                + "Judged when >= 100 runs a second, so a few slow callback runs do not count."),
        GuardEntry(
            key: "max_bpf_cpu_percent", unit: "% of one CPU",
            range: .number(Double.leastNonzeroMagnitude...100_000, "a number above 0, at most 100000 (percent of one CPU)"),
            metric: .bpfCPUPercent, comparator: .above, sharedDefault: 25,
            reason: "The policy's BPF time as a share of one CPU. A cheap sensor on a hot tracepoint costs a few "
                + "percent at most (300 ns x 100k events/s = 3 %); a quarter of a CPU is a sensor out of control."),
        GuardEntry(
            key: "max_map_memory_kb", unit: "KiB", range: .integer(atLeast: 1, "an integer >= 1 (KiB)"),
            metric: .mapMemoryKB, comparator: .above, sharedDefault: 262_144,
            reason: "Memory charged for the policy's maps. Reference policies hold a few MiB; 256 MiB is a map "
                + "sized or growing out of proportion."),
        GuardEntry(
            key: "max_callback_us", unit: "µs", range: .integer(atLeast: 1, "an integer >= 1 (microseconds)"),
            metric: .callbackMicroseconds, comparator: .above, minimumActivity: 3, sharedDefault: 10_000,
            reason: "Mean µs per callback run over the last minute. A callback is expected in microseconds; 10 ms "
                + "is a tenth of the default decision deadline, spent in the kernel. Judged when the last minute "
                + "had >= 3 callback runs, so one slow first run does not count."),
        GuardEntry(
            key: "max_rejections", unit: "per 60 s", range: .integer(atLeast: 0, "an integer >= 0"),
            metric: .rejectionsPerMinute, comparator: .above, sharedDefault: 5,
            reason: "Decisions the daemon rejected as invalid in the last 60 s. A healthy policy has none; a few "
                + "allow for races (a victim that exits between decision and validation is a rejection)."),
        GuardEntry(
            key: "max_decision_errors", unit: "per 60 s", range: .integer(atLeast: 0, "an integer >= 0 (errors per minute)"),
            metric: .decisionErrorsPerMinute, comparator: .above, sharedDefault: 3,
            reason: "Callbacks that failed (BPF_PROG_RUN error, error return, malformed output) in the last 60 s. "
                + "A healthy policy has none."),
        GuardEntry(
            key: "max_deadline_misses", unit: "per 60 s", range: .integer(atLeast: 0, "an integer >= 0 (misses per minute)"),
            metric: .deadlineMissesPerMinute, comparator: .above, sharedDefault: 3,
            reason: "Decisions that overran deadline_ms in the last 60 s. A healthy policy has none."),
        GuardEntry(
            key: "max_consecutive_fallbacks", unit: "decisions", range: .integer(atLeast: 0, "an integer >= 0"),
            metric: .consecutiveFallbacks, comparator: .above, sharedDefault: nil,
            reason: "Decisions handed back to the kernel's default in a row. Off unless a kind turns it on: for a "
                + "periodic kind a fallback only skips a round and costs nothing."),
    ]

    /// The shared keys, in table order.
    public static var sharedKeys: [String] { shared.map(\.key) }

    /// The shared entry for `key`.
    public static func sharedEntry(_ key: String) -> GuardEntry? { shared.first { $0.key == key } }

    /// The entries a policy of `definition`'s kind has: the shared table, then
    /// the kind's own. With no definition, the shared table alone.
    public static func entries(for definition: (any PolicyKindDefinition)?) -> [GuardEntry] {
        shared + (definition?.guards ?? [])
    }

    /// The `[guards]` keys a manifest of `definition`'s kind may hold.
    public static func knownKeys(for definition: (any PolicyKindDefinition)?) -> [String] {
        entries(for: definition).map(\.key)
    }

    /// `entry`'s default for `definition`'s kind: the kind's override if it
    /// has one, else the shared default (nil: off).
    public static func defaultValue(of entry: GuardEntry, for definition: (any PolicyKindDefinition)?) -> Double? {
        if let override = definition?.guardDefaults[entry.key] { return override.value }
        return entry.sharedDefault
    }

    /// The default of guard `key` for `definition`'s kind; nil when off or unknown.
    public static func defaultValue(_ key: String, for definition: (any PolicyKindDefinition)?) -> Double? {
        entries(for: definition).first { $0.key == key }.flatMap { defaultValue(of: $0, for: definition) }
    }

    /// The value in force for `key`: the manifest's, else the kind's default.
    public static func value(_ key: String, settings: GuardSettings, for definition: (any PolicyKindDefinition)?) -> Double? {
        settings[key] ?? defaultValue(key, for: definition)
    }
}
