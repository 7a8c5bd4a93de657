#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a policy manifest could not be loaded, precise enough to fix without
/// reading mmpolicy's source.
///
/// Manifests are written by hand and a rejected one means a policy does not run,
/// so every failure names the file, the key path inside it, what was expected,
/// what was found and what to do about it. ``PolicyCatalog`` collects these so
/// one broken file does not hide the others.
public struct ManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What exactly is wrong.
    public enum Reason: Sendable, Equatable {
        /// The file is not valid TOML (or not UTF-8 text); `line` and `column` are 1-based.
        case syntax(line: Int, column: Int, message: String)
        /// The file (or a catalog's directory) could not be read.
        case unreadable(errno: Int32)
        /// A required key is absent; `expected` says what it must hold.
        case missingKey(expected: String)
        /// The key is not one the table defines; `known` lists the keys it does define.
        case unknownKey(known: [String])
        /// The key's name itself is not acceptable (e.g. a parameter that is not a C identifier).
        case invalidKey(expected: String)
        /// The value has the wrong TOML type.
        case wrongType(expected: String, found: String)
        /// The value has the right type but is out of range or malformed.
        case invalidValue(expected: String, found: String)
        /// `name` differs from the file's name without `.toml`.
        case nameMismatch(name: String, stem: String)
    }

    /// The manifest file (or, for a catalog that could not list its directory, the directory).
    public var path: String
    /// The dotted key path, e.g. `guards.deadline_ms` or `protect.comms[2]`; empty for the whole file.
    public var key: String
    public var reason: Reason

    public init(path: String, key: String, reason: Reason) {
        self.path = path
        self.key = key
        self.reason = reason
    }

    /// One paragraph: file, key, expectation, what was found, and the fix.
    public var description: String {
        switch reason {
        case .syntax(let line, let column, let message):
            return "\(path): not valid TOML at line \(line), column \(column): \(Self.sentence(message)) "
                + "Fix the syntax at that position; nothing in this file was loaded."

        case .unreadable(let code):
            let text = String(cString: strerror(code))
            return "\(path): cannot be read: \(text) (errno \(code)). "
                + "Check that the path exists, names a regular file, and is readable by the user running mmpolicy."

        case .missingKey(let expected):
            let (table, leaf) = Self.split(key)
            let place = table.isEmpty
                ? "at the top of the file, before any [table] header"
                : "in the [\(table)] table"
            return "\(path): required key '\(key)' is missing; it must be \(expected). "
                + "Add a line `\(leaf) = ...` \(place)."

        case .unknownKey(let known):
            let (table, leaf) = Self.split(key)
            let place = table.isEmpty ? "at the top level" : "in table [\(table)]"
            let list = known.isEmpty ? "(none)" : known.joined(separator: ", ")
            var text = "\(path): unknown key '\(key)' \(place); the known keys there are: \(list). "
            if !table.isEmpty, Manifest.knownKeys.contains(leaf) {
                text += "'\(leaf)' is a top-level key: move it above the first [table] header. "
            } else if table.isEmpty, GuardTable.sharedKeys.contains(leaf) {
                text += "'\(leaf)' belongs in the [guards] table. "
            } else if table.isEmpty, ProtectList.knownKeys.contains(leaf) {
                text += "'\(leaf)' belongs in the [protect] table. "
            }
            return text + "Check the spelling, or remove the key."

        case .invalidKey(let expected):
            return "\(path): key '\(key)' is not an acceptable name: it must be \(expected). "
                + "Rename the key."

        case .wrongType(let expected, let found), .invalidValue(let expected, let found):
            return "\(path): key '\(key)' must be \(expected), found \(found). \(fixHint)"

        case .nameMismatch(let name, let stem):
            return "\(path): key 'name' is \(Self.quote(name)) but the file is named \(stem).toml; "
                + "a manifest's name must equal its file name without .toml so the policy can be found by name. "
                + "Set name = \(Self.quote(stem)), or rename the file to \(name).toml."
        }
    }

    /// What to do about a bad value, depending on whether the key may simply be dropped.
    private var fixHint: String {
        if key.hasPrefix("protect.") && key.hasSuffix("]") { return "Fix or remove the entry." }
        if key.hasPrefix("params.") {
            return "Fix the value, or remove the key to use the value compiled into the BPF object."
        }
        if Manifest.requiredKeys.contains(key) { return "Fix the value." }
        return "Fix the value, or remove the key to use the default."
    }

    /// Splits `a.b.c` into (`a.b`, `c`), ignoring dots inside quotes and after `[`.
    private static func split(_ key: String) -> (table: String, leaf: String) {
        var inQuotes = false
        var lastDot: String.Index?
        var index = key.startIndex
        while index < key.endIndex {
            let ch = key[index]
            if ch == "\"" { inQuotes.toggle() }
            if ch == "." && !inQuotes { lastDot = index }
            index = key.index(after: index)
        }
        guard let dot = lastDot else { return ("", key) }
        return (String(key[..<dot]), String(key[key.index(after: dot)...]))
    }

    /// Ends a library message with exactly one period.
    private static func sentence(_ message: String) -> String {
        var text = message
        while let last = text.last, last == " " || last == "\n" || last == "." { text.removeLast() }
        return text + "."
    }

    /// A string as a TOML basic string, for messages; long strings are shortened.
    static func quote(_ text: String, limit: Int = 64) -> String {
        var out = "\""
        var count = 0
        for scalar in text.unicodeScalars {
            if count == limit {
                out += "…"
                break
            }
            count += 1
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    let hex = String(scalar.value, radix: 16, uppercase: true)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    /// Joins key components into a dotted path, quoting components that are not bare TOML keys.
    static func keyPath(_ components: [String]) -> String {
        components.map { component in
            let bare = !component.isEmpty && component.utf8.allSatisfy { byte in
                (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A)
                    || (byte >= 0x30 && byte <= 0x39) || byte == 0x5F || byte == 0x2D
            }
            return bare ? component : quote(component, limit: 200)
        }.joined(separator: ".")
    }
}
