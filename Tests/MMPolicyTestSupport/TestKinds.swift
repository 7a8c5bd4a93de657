import MMPolicyCore

/// A kind for tests of the kind-agnostic machinery (manifests, the registry,
/// the guard table): any name and ABI id, optionally one section `[tuning]`
/// with an integer `level` (1...10), guards of its own and defaults.
public struct TestKind: PolicyKindDefinition {
    public var kind: PolicyKind
    public var abiID: UInt32
    public var summary: String { "a kind that exists only in tests" }
    public var callbacks: [CallbackSlot] { [CallbackSlot(name: "decide", required: true)] }
    public var manifestSections: [String]
    public var guards: [GuardEntry]
    public var guardDefaults: [String: GuardDefault]

    /// What `[tuning]` held.
    public struct Tuning: KindManifestSettings, Equatable {
        public var level: Int
        public var label: String?
        public init(level: Int, label: String? = nil) {
            self.level = level
            self.label = label
        }
    }

    public init(_ name: String, abiID: UInt32, tuning: Bool = false, guards: [GuardEntry] = [],
                guardDefaults: [String: GuardDefault] = [:]) {
        kind = PolicyKind(rawValue: name)
        self.abiID = abiID
        manifestSections = tuning ? ["tuning"] : []
        self.guards = guards
        self.guardDefaults = guardDefaults
    }

    public func readManifestSections(_ reader: ManifestSectionReader) throws(ManifestError) -> (any KindManifestSettings)? {
        guard manifestSections.contains("tuning"), reader.has("tuning") else { return nil }
        try reader.checkKeys(section: "tuning", known: ["level", "label"])
        var tuning = Tuning(level: try reader.integer("tuning", "level", in: 1...10, "an integer from 1 to 10") ?? 5)
        if let label = try reader.string("tuning", "label", "a string") {
            guard !label.isEmpty else { throw reader.invalid("tuning", "label", expected: "a non-empty string") }
            tuning.label = label
        }
        return tuning
    }

    /// It has static facts only: a daemon cannot run it.
    public func makeEngine(_ environment: KindEnvironment) throws -> any KindEngine {
        throw StaticOnlyKind(kind: kind)
    }
}

/// The error a static-only test kind gives a daemon that tries to run it.
public struct StaticOnlyKind: Error, CustomStringConvertible {
    public var kind: PolicyKind
    public var description: String { "test kind \(kind) has static facts only and no engine" }
}

extension KindRegistry {
    /// `base` plus test kinds `readahead` (ABI id 101) and `ksm` (102), with no sections.
    public static func withTestKinds(_ base: KindRegistry) -> KindRegistry {
        base.adding(TestKind("readahead", abiID: 101)).adding(TestKind("ksm", abiID: 102))
    }
}
