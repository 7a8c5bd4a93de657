#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

import SystemPackage

/// Every policy manifest in a directory, read and checked in one pass.
///
/// The daemon and the CLI look policies up by name; the catalog is where names
/// resolve. A broken manifest is reported in ``errors`` next to the good ones
/// rather than hiding them, so one typo does not take every policy down.
public struct PolicyCatalog: Sendable {
    /// The directory the manifests were read from.
    public var directory: String
    /// The valid manifests, sorted by name.
    public var manifests: [Manifest]
    /// One error per file that could not be loaded (or one for the directory itself), sorted by path.
    public var errors: [ManifestError]

    public init(directory: String, manifests: [Manifest] = [], errors: [ManifestError] = []) {
        self.directory = directory
        self.manifests = manifests
        self.errors = errors
    }

    /// The file in a policy directory that lists a set of policies to load; it is not itself a policy.
    public static let setFileName = "default.toml"

    /// The environment variable naming the policy directory.
    public static let environmentVariable = "MMPOLICY_POLICY_DIR"

    /// Where an installed mmpolicy keeps its policies.
    public static let systemDirectory = "/etc/mmpolicy/policies"

    /// Loads every `*.toml` in `directory` except ``setFileName`` and hidden
    /// files; `kinds` are the kinds a manifest may be of.
    public static func load(directory: String, kinds: KindRegistry) -> PolicyCatalog {
        load(directory: directory) { path throws(ManifestError) in try Manifest.load(path: path, kinds: kinds) }
    }

    /// The catalog of `directory`, each manifest read by `read` (e.g. a ``ManifestCache``).
    public static func load(directory: String, read: (String) throws(ManifestError) -> Manifest) -> PolicyCatalog {
        var catalog = PolicyCatalog(directory: directory)
        let names: [String]
        switch listDirectory(directory) {
        case .success(let entries): names = entries
        case .failure(let code):
            catalog.errors = [ManifestError(path: directory, key: "", reason: .unreadable(errno: code.rawValue))]
            return catalog
        }
        let base = directory.hasSuffix("/") ? directory : directory + "/"
        for name in names.sorted()
        where name.hasSuffix(".toml") && name.count > 5 && !name.hasPrefix(".") && name != setFileName {
            do {
                catalog.manifests.append(try read(base + name))
            } catch {
                catalog.errors.append(error)
            }
        }
        catalog.manifests.sort { $0.name < $1.name }
        catalog.errors.sort { $0.path < $1.path }
        return catalog
    }

    /// The manifest called `name`, if it loaded.
    public func manifest(named name: String) -> Manifest? {
        manifests.first { $0.name == name }
    }

    /// Finds the policy directory: `explicit` if given; else `$MMPOLICY_POLICY_DIR`
    /// if set and non-empty; else a `policies/` directory beside a `Package.swift`
    /// in the current directory or one of its parents (a source checkout); else
    /// `/etc/mmpolicy/policies` if it exists. `nil` if none applies.
    public static func locatePolicyDirectory(explicit: String?) -> String? {
        let environment = getenv(environmentVariable).map { String(cString: $0) }
        return locatePolicyDirectory(
            explicit: explicit, environment: environment, currentDirectory: currentDirectory(),
            systemDirectory: systemDirectory)
    }

    /// ``locatePolicyDirectory(explicit:)`` with its inputs spelled out, for tests.
    static func locatePolicyDirectory(
        explicit: String?, environment: String?, currentDirectory: String?, systemDirectory: String
    ) -> String? {
        if let explicit, !explicit.isEmpty { return explicit }
        if let environment, !environment.isEmpty { return environment }
        if var directory = currentDirectory, directory.hasPrefix("/") {
            while true {
                let prefix = directory == "/" ? "/" : directory + "/"
                if isRegularFile(prefix + "Package.swift") && isDirectory(prefix + "policies") {
                    return prefix + "policies"
                }
                if directory == "/" { break }
                directory = parent(of: directory)
            }
        }
        return isDirectory(systemDirectory) ? systemDirectory : nil
    }

    private static func parent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "/" }
        let head = trimmed[..<slash]
        return head.isEmpty ? "/" : String(head)
    }

    private static func currentDirectory() -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        guard getcwd(&buffer, buffer.count) != nil else { return nil }
        return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private static func fileType(_ path: String) -> mode_t? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return info.st_mode & 0o170000
    }

    private static func isDirectory(_ path: String) -> Bool { fileType(path) == 0o040000 }

    private static func isRegularFile(_ path: String) -> Bool { fileType(path) == 0o100000 }

    /// The names in a directory, without `.` and `..`.
    private static func listDirectory(_ path: String) -> Result<[String], Errno> {
        guard let handle = opendir(path) else { return .failure(Errno(rawValue: errno)) }
        defer { closedir(handle) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(handle) else {
                return errno == 0 ? .success(names) : .failure(Errno(rawValue: errno))
            }
            let name = withUnsafePointer(to: &entry.pointee.d_name) { pointer in
                pointer.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: pointer.pointee)) {
                    String(cString: $0)
                }
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }
}
