import CMMPolicyABI

/// The five kinds of memory-management policy mmpolicy runs.
///
/// A kind fixes a policy's ops table (which callbacks exist, which are
/// required), its decision points in the daemon and how its decisions are
/// carried out. The raw value is the name used in manifests and on the CLI.
public enum PolicyKind: String, CaseIterable, Sendable, Codable {
    case oom
    case readahead
    case ksm
    case tiering
    case memnice

    /// The kind's id in the ABI (`enum mmpolicy_kind`).
    public var abiID: UInt32 {
        switch self {
        case .oom: return UInt32(MMPOLICY_KIND_OOM.rawValue)
        case .readahead: return UInt32(MMPOLICY_KIND_READAHEAD.rawValue)
        case .ksm: return UInt32(MMPOLICY_KIND_KSM.rawValue)
        case .tiering: return UInt32(MMPOLICY_KIND_TIERING.rawValue)
        case .memnice: return UInt32(MMPOLICY_KIND_MEMNICE.rawValue)
        }
    }

    public init?(abiID: UInt32) {
        guard let kind = PolicyKind.allCases.first(where: { $0.abiID == abiID }) else { return nil }
        self = kind
    }

    /// The C struct of the kind's ops table, as named in the object's BTF.
    public var opsStructName: String { "mmpolicy_\(rawValue)_ops" }

    /// The callbacks this kind defines, and whether an ops table must bind each.
    /// `nil` for a kind whose ABI is not defined yet.
    public var callbacks: [(name: String, required: Bool)]? {
        switch self {
        case .oom: return [("select_victim", true)]
        case .readahead, .ksm, .tiering, .memnice: return nil
        }
    }
}

/// The ABI version this build of mmpolicy loads (`MMPOLICY_ABI_VERSION`).
public let mmpolicyABIVersion = UInt32(MMPOLICY_ABI_VERSION)
