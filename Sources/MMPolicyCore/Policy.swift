import BPFKit

#if canImport(Glibc)
import Glibc
#endif

/// Where policy objects (`*.bpf.o`) are looked for: `$MMPOLICY_OBJECT_PATH`
/// (colon-separated), the source tree's `build/bpf` next to the policies
/// directory, then the installed `/usr/lib/mmpolicy/bpf`.
public struct ObjectSearchPath: Sendable, Equatable {
    public var directories: [String]

    public init(directories: [String]) { self.directories = directories }

    public static func standard(policyDirectory: String?) -> ObjectSearchPath {
        var dirs: [String] = []
        if let env = getenv("MMPOLICY_OBJECT_PATH") {
            dirs += String(cString: env).split(separator: ":").map(String.init)
        }
        if let policyDirectory {
            dirs.append(parentDirectory(of: policyDirectory) + "/build/bpf")
        }
        dirs.append("/usr/lib/mmpolicy/bpf")
        var seen = Set<String>()
        return ObjectSearchPath(directories: dirs.filter { seen.insert($0).inserted })
    }

    /// The file `manifest.object` names: a path (absolute, or relative to the
    /// manifest) if it has a '/', else the first match on the search path.
    public func resolve(_ manifest: Manifest) throws(PolicyOpenError) -> String {
        let object = manifest.object
        if object.contains("/") {
            let dir = manifest.path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            let full = object.hasPrefix("/") ? object : (dir.isEmpty ? object : dir + "/" + object)
            guard access(full, R_OK) == 0 else {
                throw PolicyOpenError(policy: manifest.name, reason: "its manifest \(manifest.path) names object '\(object)', and \(full) cannot be read",
                                      fix: "Build the object (`make build`) or fix the manifest's `object` key")
            }
            return full
        }
        for dir in directories where access(dir + "/" + object, R_OK) == 0 { return dir + "/" + object }
        throw PolicyOpenError(policy: manifest.name,
                              reason: "its manifest \(manifest.path) names object '\(object)', which is in none of \(directories.joined(separator: ", "))",
                              fix: "Run `make build` to build the in-tree objects, or add the object's directory to MMPOLICY_OBJECT_PATH")
    }
}

/// The directory containing `path` ("/a/b/" and "/a/b" both give "/a").
public func parentDirectory(of path: String) -> String {
    var components = path.split(separator: "/", omittingEmptySubsequences: true)
    guard !components.isEmpty else { return "/" }
    components.removeLast()
    if path.hasPrefix("/") { return "/" + components.joined(separator: "/") }
    return components.isEmpty ? "." : components.joined(separator: "/")
}

/// A policy opened from disk: its BPF object (not yet loaded), its ops
/// table, and the manifest it came from, if any.
///
/// Opening checks everything that can be checked without the kernel (the
/// ELF, the ops table, the manifest's kind and parameters), so `load()` can
/// only fail in the verifier.
public final class Policy {
    public let manifest: Manifest?
    public let object: BPFObject
    public let ops: OpsTable
    public let objectPath: String

    /// The policy's name: the manifest's, else the ops table's, else the file's.
    public var name: String { manifest?.name ?? (ops.name.isEmpty ? object.name : ops.name) }

    /// The object's own parameter values, before the manifest or overrides.
    private let defaults: [String: ParameterValue]

    private init(manifest: Manifest?, object: BPFObject, ops: OpsTable, objectPath: String) {
        self.manifest = manifest
        self.object = object
        self.ops = ops
        self.objectPath = objectPath
        var defaults: [String: ParameterValue] = [:]
        for variable in object.parameters { defaults[variable.name] = object.currentValue(of: variable) }
        self.defaults = defaults
    }

    /// The value compiled into the object for `variable`.
    public func defaultValue(of variable: GlobalVariable) -> ParameterValue? { defaults[variable.name] }

    /// Opens the object `manifest` names, checks it against the manifest and
    /// applies the manifest's parameters, then `overrides` (e.g. `--set`).
    /// `kinds` are the kinds the object's ops table may be of.
    public static func open(manifest: Manifest, searchPath: ObjectSearchPath, kinds: KindRegistry,
                            overrides: [(String, ParameterValue)] = []) throws -> Policy {
        let path = try searchPath.resolve(manifest)
        let object = try BPFObject(path: path)
        let ops = try OpsTable(reading: object, kinds: kinds)
        guard ops.kind == manifest.kind else {
            throw PolicyOpenError(policy: manifest.name,
                                  reason: "its manifest \(manifest.path) says kind '\(manifest.kind.rawValue)' but object \(path) holds a \(ops.kind.rawValue) ops table",
                                  fix: "Make the manifest's `kind` match the object's MMPOLICY_OPS(\(ops.kind.rawValue))")
        }
        let policy = Policy(manifest: manifest, object: object, ops: ops, objectPath: path)
        try policy.apply(manifest.orderedParams.map { ($0.name, $0.value) }, source: "\(manifest.path) [params]")
        try policy.apply(overrides, source: "--set")
        return policy
    }

    /// Opens a bare object file (no manifest).
    public static func open(objectPath: String, kinds: KindRegistry, overrides: [(String, ParameterValue)] = []) throws -> Policy {
        let object = try BPFObject(path: objectPath)
        let ops = try OpsTable(reading: object, kinds: kinds)
        let policy = Policy(manifest: nil, object: object, ops: ops, objectPath: objectPath)
        try policy.apply(overrides, source: "--set")
        return policy
    }

    private func apply(_ values: [(String, ParameterValue)], source: String) throws {
        for (key, value) in values {
            do {
                try object.setParameter(key, to: value)
            } catch {
                throw PolicyOpenError(policy: name, reason: "parameter '\(key)' from \(source) is refused: \(error.reason)",
                                      fix: error.fix ?? "Fix the value")
            }
        }
    }

    /// Verifies and loads the object's programs and maps into the kernel.
    public func load() throws(BPFError) { try object.load() }
}

/// A policy that cannot be opened: names the policy, what is wrong and the fix.
public struct PolicyOpenError: Error, Sendable, CustomStringConvertible {
    public var policy: String
    public var reason: String
    public var fix: String
    public var description: String { "policy '\(policy)' cannot be opened: \(reason). \(fix)." }
}
