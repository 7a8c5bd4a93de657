/// The kinds this build of mmpolicy runs, each by its ``PolicyKindDefinition``.
///
/// One list, built in MMPolicyKinds (`KindRegistry.builtIn`) and passed
/// explicitly to whatever reads manifests or objects, so there is no global
/// mutable state and tests can run with kinds of their own (``adding(_:)``).
public struct KindRegistry: Sendable {
    /// The definitions, in registration order.
    public let definitions: [any PolicyKindDefinition]

    /// `definitions` must have distinct names and ABI ids, and no kind may
    /// redefine a shared manifest key or guard (programming errors, caught
    /// the first time the registry is built).
    public init(_ definitions: [any PolicyKindDefinition]) {
        var names = Set<PolicyKind>()
        var ids = Set<UInt32>()
        let sharedGuards = Set(GuardTable.sharedKeys)
        for definition in definitions {
            precondition(names.insert(definition.kind).inserted, "kind \(definition.kind) is registered twice")
            precondition(ids.insert(definition.abiID).inserted, "ABI id \(definition.abiID) is registered twice")
            for section in definition.manifestSections {
                precondition(!Manifest.knownKeys.contains(section), "kind \(definition.kind) redefines manifest key '\(section)'")
            }
            for entry in definition.guards {
                precondition(!sharedGuards.contains(entry.key), "kind \(definition.kind) redefines shared guard '\(entry.key)'")
            }
        }
        self.definitions = definitions
    }

    /// No kinds at all.
    public static let empty = KindRegistry([])

    /// The registered kinds' names, in registration order.
    public var kinds: [PolicyKind] { definitions.map(\.kind) }

    public func definition(for kind: PolicyKind) -> (any PolicyKindDefinition)? {
        definitions.first { $0.kind == kind }
    }

    public func definition(abiID: UInt32) -> (any PolicyKindDefinition)? {
        definitions.first { $0.abiID == abiID }
    }

    /// The definition of `kind`, or an error listing the known kinds.
    public func require(_ kind: PolicyKind) throws(UnknownKindError) -> any PolicyKindDefinition {
        guard let definition = definition(for: kind) else { throw UnknownKindError(kind: kind.rawValue, known: kinds) }
        return definition
    }

    /// This registry plus `definition` (replacing a definition of the same name).
    public func adding(_ definition: any PolicyKindDefinition) -> KindRegistry {
        KindRegistry(definitions.filter { $0.kind != definition.kind } + [definition])
    }
}

/// A kind name no registered definition has.
public struct UnknownKindError: Error, Sendable, Equatable, CustomStringConvertible {
    public var kind: String
    public var known: [PolicyKind]

    public init(kind: String, known: [PolicyKind]) {
        self.kind = kind
        self.known = known
    }

    public var description: String {
        "policy kind '\(kind)' is not one this mmpolicy runs; known kinds: "
            + (known.isEmpty ? "none" : known.map(\.rawValue).joined(separator: ", "))
    }
}
