import BPFKit
import SystemPackage
import TOMLKit

/// A set of policies to load together: `policies/default.toml`, the safe
/// set a daemon starts with when it has no saved state.
///
/// ```toml
/// [[policy]]
/// name = "oom_largest"   # a manifest in the same directory
/// scope = "system"       # optional: the manifest's scope
/// mode = "observe"       # optional: the manifest's mode
/// ```
public struct PolicySet: Sendable, Equatable {
    /// One `[[policy]]` entry.
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var scope: String?
        public var mode: PolicyMode?
        public var set: [(key: String, value: String)]

        public init(name: String, scope: String? = nil, mode: PolicyMode? = nil, set: [(key: String, value: String)] = []) {
            self.name = name
            self.scope = scope
            self.mode = mode
            self.set = set
        }

        public static func == (a: Entry, b: Entry) -> Bool {
            a.name == b.name && a.scope == b.scope && a.mode == b.mode
                && a.set.map(\.key) == b.set.map(\.key) && a.set.map(\.value) == b.set.map(\.value)
        }
    }

    public var path: String
    public var entries: [Entry]

    public init(path: String, entries: [Entry]) {
        self.path = path
        self.entries = entries
    }

    public static let knownKeys = ["name", "scope", "mode", "set"]

    /// Reads and checks a set file; errors name the file, the entry and the fix.
    public static func load(path: String) throws(ManifestError) -> PolicySet {
        let text: String
        do { text = try String(contentsOfProcFile: path) } catch {
            throw ManifestError(path: path, key: "", reason: .unreadable(errno: (error as? Errno)?.rawValue ?? 0))
        }
        return try parse(toml: text, path: path)
    }

    public static func parse(toml: String, path: String) throws(ManifestError) -> PolicySet {
        let root: TOMLTable
        do { root = try TOMLTable(string: toml) } catch let error as TOMLParseError {
            throw ManifestError(path: path, key: "", reason: .syntax(line: error.source.begin.line, column: error.source.begin.column, message: error.description))
        } catch {
            throw ManifestError(path: path, key: "", reason: .syntax(line: 0, column: 0, message: "\(error)"))
        }
        for key in root.keys where key != "policy" {
            throw ManifestError(path: path, key: key, reason: .unknownKey(known: ["policy"]))
        }
        guard let value = root["policy"] else { return PolicySet(path: path, entries: []) }
        guard let array = value.array else {
            throw ManifestError(path: path, key: "policy", reason: .wrongType(expected: "an array of tables, written [[policy]]", found: "\(value.type)"))
        }
        var entries: [Entry] = []
        for (index, element) in array.enumerated() {
            let key = "policy[\(index)]"
            guard let table = element.table else {
                throw ManifestError(path: path, key: key, reason: .wrongType(expected: "a table", found: "\(element.type)"))
            }
            for entryKey in table.keys where !knownKeys.contains(entryKey) {
                throw ManifestError(path: path, key: key + "." + entryKey, reason: .unknownKey(known: knownKeys))
            }
            guard let name = table["name"]?.string, Manifest.isValidName(name) else {
                throw ManifestError(path: path, key: key + ".name", reason: .wrongType(expected: "a policy name ([a-z0-9_]{1,31})", found: table["name"].map { "\($0)" } ?? "nothing"))
            }
            var entry = Entry(name: name)
            if let scope = table["scope"] {
                guard let text = scope.string else {
                    throw ManifestError(path: path, key: key + ".scope", reason: .wrongType(expected: "\"system\" or a cgroup path", found: "\(scope.type)"))
                }
                entry.scope = text
            }
            if let mode = table["mode"] {
                guard let text = mode.string, let parsed = PolicyMode(rawValue: text) else {
                    throw ManifestError(path: path, key: key + ".mode", reason: .invalidValue(expected: "\"enforce\" or \"observe\"", found: "\(mode)"))
                }
                entry.mode = parsed
            }
            if let set = table["set"] {
                guard let sets = set.table else {
                    throw ManifestError(path: path, key: key + ".set", reason: .wrongType(expected: "a table of parameter values", found: "\(set.type)"))
                }
                entry.set = sets.keys.sorted().map { ($0, sets[$0].map { v in v.string ?? "\(v)" } ?? "") }
            }
            entries.append(entry)
        }
        return PolicySet(path: path, entries: entries)
    }
}
