import CMMPolicyABI
import MMPolicyCore

extension PolicyKind {
    /// Moving memory between DRAM and the slow tier (zram, zswap or disk swap).
    public static let tiering = PolicyKind(rawValue: "tiering")
}

/// The tiering kind's static facts: its ABI id, its one callback, its
/// `[tiering]` section and its guard defaults.
///
/// The tiering engine and the daemon read these through
/// ``PolicyKindDefinition``; nothing outside this folder names a tiering key.
public struct TieringKind: PolicyKindDefinition {
    public init() {}

    public var kind: PolicyKind { .tiering }
    public var abiID: UInt32 { UInt32(MMPOLICY_KIND_TIERING.rawValue) }
    public var summary: String {
        "moves cold memory of the processes in its scope to the slow tier (swap, zram) and hot memory back, planned by a BPF policy from in-kernel fault and swap-in counts"
    }
    public var callbacks: [CallbackSlot] { [CallbackSlot(name: "plan", required: true)] }

    public var manifestSections: [String] { [TieringSettings.section] }

    /// Its policies move memory to swap.
    public var needsSwap: Bool { true }

    public func readManifestSections(_ reader: ManifestSectionReader) throws(ManifestError) -> (any KindManifestSettings)? {
        guard reader.has(TieringSettings.section) else { return nil }
        return try TieringSettings(reading: reader)
    }

    public var guardDefaults: [String: GuardDefault] {
        [
            "max_refault_ratio": GuardDefault(
                0.3, reason: "A tiering policy exists to move out memory that stays out; when 30 % of what leaves comes back, it is demoting the working set."),
            "max_consecutive_fallbacks": GuardDefault(
                nil, reason: "A plan that moves nothing is normal for a tiering policy once the cold memory is out."),
        ]
    }

    public func makeEngine(_ environment: KindEnvironment) throws -> any KindEngine {
        try TieringEngine(environment: environment)
    }

    public func summarize(_ decision: DecisionRecord) -> String {
        guard let payload = decision.tiering else { return decision.envelopeSummary }
        return TieringDecisionText.summary(decision, payload)
    }
}
