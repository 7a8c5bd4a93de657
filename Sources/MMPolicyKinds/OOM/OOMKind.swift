import CMMPolicyABI
import MMPolicyCore

extension PolicyKind {
    /// Out-of-memory victim selection.
    public static let oom = PolicyKind(rawValue: "oom")
}

/// The oom kind's static facts: its ABI id, its one callback, its
/// `[trigger]` section and its guards.
///
/// The OOM engine and the daemon read these through
/// ``PolicyKindDefinition``; nothing outside this folder names a trigger
/// key or an oom-only guard.
public struct OOMKind: PolicyKindDefinition {
    public init() {}

    public var kind: PolicyKind { .oom }
    public var abiID: UInt32 { UInt32(MMPOLICY_KIND_OOM.rawValue) }
    public var summary: String {
        "picks the victim when a memcg or the system runs out of memory, before the kernel's OOM killer would"
    }
    public var callbacks: [CallbackSlot] { [CallbackSlot(name: "select_victim", required: true)] }

    public var manifestSections: [String] { ["trigger"] }

    public func readManifestSections(_ reader: ManifestSectionReader) throws(ManifestError) -> (any KindManifestSettings)? {
        guard reader.has("trigger") else { return nil }
        return try OOMTriggerSettings(reading: reader)
    }

    public var guards: [GuardEntry] {
        [
            GuardEntry(
                key: "max_kills_per_minute", unit: "kills per 60 s",
                range: .integer(atLeast: 0, "an integer >= 0 (kills per minute)"),
                metric: .actionsPerMinute, comparator: .above, sharedDefault: 6,
                reason: "Kills the policy caused in the last 60 s; 6 is what the shipped manifests set."),
        ]
    }

    public var guardDefaults: [String: GuardDefault] {
        [
            "max_consecutive_fallbacks": GuardDefault(
                3, reason: "Three OOMs handed to the kernel killer in a row means the policy has stopped answering."),
        ]
    }

    public func makeEngine(_ environment: KindEnvironment) throws -> any KindEngine {
        try OOMEngine(environment: environment)
    }

    public func summarize(_ decision: DecisionRecord) -> String {
        guard let payload = decision.oom else { return decision.envelopeSummary }
        return OOMDecisionText.summary(decision, payload)
    }
}
