import BPFKit

/// The static facts of one kind of policy: its ABI id, its ops table's
/// callback slots, its own manifest sections and its own guards.
///
/// "A kind is a folder": everything that makes `oom` different from another
/// kind is declared by one conformer in that kind's folder under
/// `Sources/MMPolicyKinds/` and listed in ``KindRegistry``. Core (the
/// manifest reader, the ops-table loader, the guard table) and the
/// watchdog ask the definition instead of naming any kind, so adding a kind
/// is adding a folder and one registry line. It is a protocol, not a class
/// hierarchy: the static facts and the runtime (its engine factory and how
/// its decision payload renders) sit side by side.
public protocol PolicyKindDefinition: Sendable {
    /// The kind's name, as manifests and the CLI write it.
    var kind: PolicyKind { get }
    /// The kind's id in the ABI (`enum mmpolicy_kind` in abi_common.h), as an
    /// object's `.mmpolicy.header` names it.
    var abiID: UInt32 { get }
    /// One line for people, e.g. for `mmpolicy guards` and error messages.
    var summary: String { get }
    /// The callbacks its ops table may bind, and which it must.
    var callbacks: [CallbackSlot] { get }
    /// The C struct of the kind's ops table, as named in the object's BTF.
    var opsStructName: String { get }
    /// The top-level manifest tables of its own (e.g. oom: `trigger`).
    var manifestSections: [String] { get }
    /// Reads and checks its own sections of a manifest; nil when the manifest
    /// has none of them (the kind's defaults apply).
    func readManifestSections(_ reader: ManifestSectionReader) throws(ManifestError) -> (any KindManifestSettings)?
    /// `[guards]` keys of its own, beside the shared ``GuardTable/shared``.
    var guards: [GuardEntry] { get }
    /// Its defaults for shared guards, by key, replacing the shared default.
    var guardDefaults: [String: GuardDefault] { get }
    /// Whether its policies move memory to swap and so rely on a swap area
    /// being active: the daemon will not tear down the last one mmpolicy set
    /// up while such a policy is loaded. False by default.
    var needsSwap: Bool { get }

    // MARK: runtime

    /// The kind's engine: one per daemon, made when the daemon starts. It
    /// owns the kind's decision points and carries out its decisions.
    func makeEngine(_ environment: KindEnvironment) throws -> any KindEngine
    /// How one of its decisions reads in `mmpolicy events` and `status`: a
    /// line from the envelope and the kind's payload (default: the envelope
    /// alone).
    func summarize(_ decision: DecisionRecord) -> String
}

extension PolicyKindDefinition {
    public var opsStructName: String { "mmpolicy_\(kind)_ops" }
    public var manifestSections: [String] { [] }
    public func readManifestSections(_ reader: ManifestSectionReader) throws(ManifestError) -> (any KindManifestSettings)? { nil }
    public var guards: [GuardEntry] { [] }
    public var guardDefaults: [String: GuardDefault] { [:] }
    public var needsSwap: Bool { false }
    public func summarize(_ decision: DecisionRecord) -> String { decision.envelopeSummary }
}

/// One callback of a kind's ops table.
public struct CallbackSlot: Sendable, Equatable {
    /// The member of the ops struct, e.g. `select_victim`.
    public var name: String
    /// Whether an ops table must bind it.
    public var required: Bool
    /// The program type it must be bound to (today always `syscall`: the
    /// daemon runs callbacks with BPF_PROG_RUN).
    public var programType: BPFProgramType

    public init(name: String, required: Bool, programType: BPFProgramType = .syscall) {
        self.name = name
        self.required = required
        self.programType = programType
    }
}

/// What a kind read from its own manifest sections (e.g. oom's `[trigger]`).
///
/// Kept as an existential in ``Manifest/kindSettings`` so Core can carry it
/// without knowing the kind; `isEqual(to:)` keeps ``Manifest`` Equatable.
public protocol KindManifestSettings: Sendable {
    func isEqual(to other: any KindManifestSettings) -> Bool
}

extension KindManifestSettings where Self: Equatable {
    public func isEqual(to other: any KindManifestSettings) -> Bool {
        (other as? Self) == self
    }
}
