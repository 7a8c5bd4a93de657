import MMPolicyCore

/// When a scope counts as running out of memory before the kernel says so:
/// the oom kind's `[trigger]` section, with the kind's defaults filled in.
///
/// The kernel's OOM killer acts late, after reclaim has thrashed; these
/// settings let the daemon ask the policy earlier: at system scope when
/// MemAvailable and SwapFree fall below their thresholds (earlyoom's rule) or
/// a PSI trigger fires, and for a cgroup v2 scope when memory.current comes
/// within a headroom of memory.max.
public struct OOMTriggerSettings: KindManifestSettings, Sendable, Equatable {
    /// System scope: act when MemAvailable <= this percent of MemTotal ...
    public var memAvailablePercent: Double
    /// ... and SwapFree <= this percent of SwapTotal (no swap counts as 0 %).
    public var swapFreePercent: Double
    /// A PSI trigger that wakes the daemon (system: /proc/pressure/memory;
    /// cgroup v2: the group's memory.pressure). It acts only if memory is also
    /// short: within twice the thresholds (system) or the headroom (v2).
    public var psi: PSITriggerSpec?
    /// cgroup v2: act when memory.current >= memory.max minus this percent.
    public var memcgHeadroomPercent: Double
    /// cgroup v2: keep the policy's next victim's oom_score_adj at 1000.
    public var steerOOMScoreAdj: Bool

    /// earlyoom's defaults are 10 % / 10 %; PSI "some 150 ms per 2 s" is the
    /// finest trigger an unprivileged-resource process may arm.
    public static let defaults = OOMTriggerSettings(
        memAvailablePercent: 10, swapFreePercent: 10,
        psi: PSITriggerSpec(full: false, stallMicroseconds: 150_000, windowMicroseconds: 2_000_000),
        memcgHeadroomPercent: 5, steerOOMScoreAdj: true)

    public init(memAvailablePercent: Double, swapFreePercent: Double, psi: PSITriggerSpec?,
                memcgHeadroomPercent: Double, steerOOMScoreAdj: Bool) {
        self.memAvailablePercent = memAvailablePercent
        self.swapFreePercent = swapFreePercent
        self.psi = psi
        self.memcgHeadroomPercent = memcgHeadroomPercent
        self.steerOOMScoreAdj = steerOOMScoreAdj
    }

    /// The keys a `[trigger]` table may hold.
    public static let knownKeys = [
        "mem_available_percent", "swap_free_percent", "psi", "memcg_headroom_percent", "steer_oom_score_adj",
    ]

    /// The manifest's `[trigger]` over the defaults.
    public init(reading reader: ManifestSectionReader) throws(ManifestError) {
        let section = "trigger"
        try reader.checkKeys(section: section, known: Self.knownKeys)
        var settings = Self.defaults
        if let value = try reader.number(section, "mem_available_percent", in: 0...100, "a number from 0 to 100 (percent of MemTotal)") {
            settings.memAvailablePercent = value
        }
        if let value = try reader.number(section, "swap_free_percent", in: 0...100, "a number from 0 to 100 (percent of SwapTotal)") {
            settings.swapFreePercent = value
        }
        if let value = try reader.number(section, "memcg_headroom_percent", in: 0...50, "a number from 0 to 50 (percent of memory.max)") {
            settings.memcgHeadroomPercent = value
        }
        let psiRule = "a PSI trigger \"some|full STALL_US WINDOW_US\", e.g. \"full 500000 2000000\""
        if let text = try reader.string(section, "psi", psiRule) {
            guard let psi = PSITriggerSpec(parsing: text) else { throw reader.invalid(section, "psi", expected: psiRule) }
            settings.psi = psi
        }
        if let flag = try reader.bool(section, "steer_oom_score_adj") { settings.steerOOMScoreAdj = flag }
        self = settings
    }
}
