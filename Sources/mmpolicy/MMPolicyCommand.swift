import ArgumentParser
import BPFKit
import CLibBPF
import CMMPolicyABI
import MMPolicyCore
import MMPolicyKinds

/// The `mmpolicy` command line: operators' and policy authors' entry point.
@main
struct MMPolicyCommand: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "mmpolicy",
        abstract: "Run Linux memory-management policies written as BPF programs, safely.",
        version: "mmpolicy \(version) (policy ABI \(mmpolicy_abi_version()), libbpf \(libbpfVersion))",
        subcommands: [ListCommand.self, InspectCommand.self, VerifyCommand.self, DaemonCommand.self, LoadCommand.self,
                      UnloadCommand.self, StatusCommand.self, EventsCommand.self, GuardianCommand.self,
                      GuardsCommand.self, TierCommand.self]
    )
}

/// Options shared by commands that look up in-tree or installed policies.
struct PolicyLocationOptions: ParsableArguments {
    @Option(name: .customLong("policy-dir"), help: "Directory of policy manifests (default: $MMPOLICY_POLICY_DIR, ./policies, /etc/mmpolicy/policies).")
    var policyDirectory: String?

    /// The policies directory, or an error that says how to name one.
    func directory() throws -> String {
        guard let dir = PolicyCatalog.locatePolicyDirectory(explicit: policyDirectory) else {
            throw CommandError("no policy directory found: none given with --policy-dir, MMPOLICY_POLICY_DIR is unset, there is no policies/ next to a Package.swift above the current directory, and /etc/mmpolicy/policies does not exist. Pass --policy-dir DIR.")
        }
        return dir
    }

    /// Opens `target`: a path to a `.bpf.o` file, or the name of a policy in the catalog.
    func open(_ target: String, overrides: [(String, ParameterValue)] = []) throws -> Policy {
        if target.contains("/") || target.hasSuffix(".o") {
            return try Policy.open(objectPath: target, kinds: .builtIn, overrides: overrides)
        }
        let dir = try directory()
        let catalog = PolicyCatalog.load(directory: dir, kinds: .builtIn)
        guard let manifest = catalog.manifest(named: target) else {
            if let broken = catalog.errors.first(where: { $0.path.hasSuffix("/\(target).toml") }) { throw broken }
            let known = catalog.manifests.map(\.name)
            throw CommandError("no policy named '\(target)' in \(dir) (known: \(known.isEmpty ? "none" : known.joined(separator: ", "))). Give a policy name from `mmpolicy list` or a path to a .bpf.o file.")
        }
        return try Policy.open(manifest: manifest, searchPath: .standard(policyDirectory: dir), kinds: .builtIn, overrides: overrides)
    }
}

/// An error of the command line itself, printed as given.
struct CommandError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Parses `--set key=value`.
struct ParameterAssignment: ExpressibleByArgument {
    var key: String
    var value: ParameterValue
    /// The value as typed (the daemon parses it again against the object's BTF).
    var text: String

    init?(argument: String) {
        guard let eq = argument.firstIndex(of: "="), eq != argument.startIndex else { return nil }
        key = String(argument[..<eq])
        text = String(argument[argument.index(after: eq)...])
        value = ParameterValue(parsing: text)
    }
}

let libbpfVersion = "\(libbpf_major_version()).\(libbpf_minor_version())"
