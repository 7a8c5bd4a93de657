import MMPolicyCore

/// How often a tiering policy plans and how much one plan may move: the
/// tiering kind's `[tiering]` manifest section, with the kind's defaults.
///
/// The bounds are the daemon's, not the policy's: an action past them is
/// refused (a rejection the watchdog counts), whatever the policy asks.
public struct TieringSettings: KindManifestSettings, Sendable, Equatable {
    /// Time between plans.
    public var intervalMs: Int
    /// Bytes one plan may page out, all processes together, and per process.
    public var maxDemoteBytes: UInt64
    public var maxDemotePerProcessBytes: UInt64
    /// Bytes one plan may bring back.
    public var maxPromoteBytes: UInt64
    /// No demotion while the slow tier has less than this percent free.
    public var minSwapFreePercent: Double
    /// A PSI trigger that asks for a plan between intervals.
    public var psi: PSITriggerSpec?
    /// What a demotion does with regions sampled as incompressible.
    public var incompressible: IncompressiblePolicy = .skip
    /// Pages sampled per 2 MiB region before it is demoted (0: never sample).
    public var compressibilitySamplePages: Int = 8
    /// `setup_zram`: with no swap active at load, the daemon sets up zram
    /// swap of this size for the policy (TieringSlowTier.swift).
    public var setupZram: ByteSize? = nil

    /// What a demotion does with a region whose sampled pages zram would
    /// store whole (`[tiering] incompressible`).
    public enum IncompressiblePolicy: String, Sendable, Equatable, CaseIterable {
        /// Leave it resident: paging it out costs CPU and a swap-in later and frees nothing.
        case skip
        /// Demote it like any other region (its estimate still goes into the region map).
        case demote
    }

    /// A plan every 2 s, at most 256 MiB out per plan (128 MiB per process)
    /// and 256 MiB back, nothing out when the tier is 90 % full, no PSI
    /// trigger; 8 pages of each region sampled before it goes out, and
    /// incompressible regions left resident.
    public static let defaults = TieringSettings(
        intervalMs: 2000, maxDemoteBytes: 256 << 20, maxDemotePerProcessBytes: 128 << 20, maxPromoteBytes: 256 << 20,
        minSwapFreePercent: 10, psi: nil)

    public init(intervalMs: Int, maxDemoteBytes: UInt64, maxDemotePerProcessBytes: UInt64, maxPromoteBytes: UInt64,
                minSwapFreePercent: Double, psi: PSITriggerSpec?) {
        self.intervalMs = intervalMs
        self.maxDemoteBytes = maxDemoteBytes
        self.maxDemotePerProcessBytes = maxDemotePerProcessBytes
        self.maxPromoteBytes = maxPromoteBytes
        self.minSwapFreePercent = minSwapFreePercent
        self.psi = psi
    }

    public static let section = "tiering"

    /// The keys a `[tiering]` table may hold.
    public static let knownKeys = [
        "interval_ms", "max_demote_mb", "max_demote_mb_per_process", "max_promote_mb", "min_swap_free_percent", "psi",
        "incompressible", "compressibility_sample_pages",
        "setup_zram",
    ]

    /// The manifest's `[tiering]` over the defaults.
    public init(reading reader: ManifestSectionReader) throws(ManifestError) {
        let section = Self.section
        try reader.checkKeys(section: section, known: Self.knownKeys)
        var settings = Self.defaults
        if let value = try reader.integer(section, "interval_ms", in: 100...3_600_000, "an integer from 100 to 3600000 (milliseconds)") {
            settings.intervalMs = value
        }
        let mib = "an integer from 0 to 1048576 (MiB)"
        if let value = try reader.integer(section, "max_demote_mb", in: 0...1_048_576, mib) { settings.maxDemoteBytes = UInt64(value) << 20 }
        if let value = try reader.integer(section, "max_demote_mb_per_process", in: 0...1_048_576, mib) {
            settings.maxDemotePerProcessBytes = UInt64(value) << 20
        }
        if let value = try reader.integer(section, "max_promote_mb", in: 0...1_048_576, mib) { settings.maxPromoteBytes = UInt64(value) << 20 }
        if let value = try reader.number(section, "min_swap_free_percent", in: 0...100, "a number from 0 to 100 (percent of SwapTotal)") {
            settings.minSwapFreePercent = value
        }
        let psiRule = "a PSI trigger \"some|full STALL_US WINDOW_US\", e.g. \"some 150000 2000000\""
        if let text = try reader.string(section, "psi", psiRule) {
            guard let psi = PSITriggerSpec(parsing: text) else { throw reader.invalid(section, "psi", expected: psiRule) }
            settings.psi = psi
        }
        let incompressibleRule = "\"skip\" or \"demote\""
        if let text = try reader.string(section, "incompressible", incompressibleRule) {
            guard let policy = IncompressiblePolicy(rawValue: text) else { throw reader.invalid(section, "incompressible", expected: incompressibleRule) }
            settings.incompressible = policy
        }
        if let value = try reader.integer(section, "compressibility_sample_pages", in: 0...512,
                                          "an integer from 0 to 512 (pages per 2 MiB region; 0: never sample)") {
            settings.compressibilitySamplePages = value
        }
        settings.setupZram = try Self.readSetupZram(reader)
        self = settings
    }
}
