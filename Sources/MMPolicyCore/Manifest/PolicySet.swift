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
        let values = TOMLValues(path: path)
        let root = try values.parseDocument(toml)
        try values.checkKeys(root, at: "", known: ["policy"])
        guard let value = root["policy"] else { return PolicySet(path: path, entries: []) }
        guard let array = value.array else {
            throw values.fail("policy", .wrongType(expected: "an array of tables, written [[policy]]", found: values.found(value)))
        }
        var entries: [Entry] = []
        for index in 0..<array.count {
            let element = array[index]
            let key = "policy[\(index)]"
            let table = try values.table(element, at: key)
            try values.checkKeys(table, at: key, known: knownKeys)
            let nameRule = "a policy name (1 to \(Manifest.maxNameLength) characters from a-z, 0-9 and _)"
            guard let nameValue = table["name"] else { throw values.fail(key + ".name", .missingKey(expected: nameRule)) }
            let name = try values.string(nameValue, at: key + ".name", nameRule)
            guard Manifest.isValidName(name) else {
                throw values.fail(key + ".name", .invalidValue(expected: nameRule, found: values.found(name)))
            }
            var entry = Entry(name: name)
            if let scope = table["scope"] {
                // Checked here so a broken set is refused before the daemon starts; kept as written.
                _ = try values.scope(scope, at: key + ".scope")
                entry.scope = scope.string
            }
            if let mode = table["mode"] { entry.mode = try values.mode(mode, at: key + ".mode") }
            if let set = table["set"] {
                let sets = try values.table(set, at: key + ".set")
                entry.set = sets.keys.sorted().map { ($0, sets[$0].map { v in v.string ?? "\(v)" } ?? "") }
            }
            entries.append(entry)
        }
        return PolicySet(path: path, entries: entries)
    }
}
