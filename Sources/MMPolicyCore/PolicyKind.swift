import CMMPolicyABI

/// The name of a kind of memory-management policy, e.g. `oom`.
///
/// A kind fixes a policy's ops table (which callbacks exist, which are
/// required), its manifest sections, its guards, its decision points in the
/// daemon and how its decisions are carried out. Those facts live with the
/// kind, in its folder under `Sources/MMPolicyKinds/`, as a
/// ``PolicyKindDefinition`` listed in a ``KindRegistry``; this type is only
/// the name, so that Core, the store and the control protocol can carry a
/// kind without knowing any. It encodes as a plain string (the name used in
/// manifests, on the CLI and in the state database).
public struct PolicyKind: RawRepresentable, Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String

    public init(rawValue: String) { self.rawValue = rawValue }

    public var description: String { rawValue }

    public static func < (a: PolicyKind, b: PolicyKind) -> Bool { a.rawValue < b.rawValue }

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// The ABI version this build of mmpolicy loads (`MMPOLICY_ABI_VERSION`).
public let mmpolicyABIVersion = UInt32(MMPOLICY_ABI_VERSION)
