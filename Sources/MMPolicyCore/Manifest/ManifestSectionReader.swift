import TOMLKit

/// A kind's view of a manifest while it reads its own sections (e.g. oom's
/// `[trigger]`): checked values by section and key, and errors naming the
/// file and the key path exactly as the rest of the manifest's do.
///
/// Kinds never import TOMLKit; everything they may ask of a manifest is
/// here. Every getter returns nil when the key (or the whole section) is
/// absent, and throws a ``ManifestError`` when it is present but wrong.
public struct ManifestSectionReader {
    let values: TOMLValues
    let root: TOMLTable
    /// The manifest's kind.
    public let kind: PolicyKind

    init(values: TOMLValues, root: TOMLTable, kind: PolicyKind) {
        self.values = values
        self.root = root
        self.kind = kind
    }

    /// The manifest file, for messages.
    public var path: String { values.path }

    /// Whether the manifest has a top-level `section`.
    public func has(_ section: String) -> Bool { root.contains(key: section) }

    /// The keys of `section`, sorted; empty when it is absent. Fails if
    /// `section` is not a table.
    public func keys(_ section: String) throws(ManifestError) -> [String] {
        try table(section)?.keys.sorted() ?? []
    }

    /// Fails on the first key of `section` (sorted) not in `known`, listing `known`.
    public func checkKeys(section: String, known: [String]) throws(ManifestError) {
        guard let table = try table(section) else { return }
        try values.checkKeys(table, at: ManifestError.keyPath([section]), known: known)
    }

    /// A number (integer or floating point) within `range`; `rule` says what is expected, e.g.
    /// "a number from 0 to 100 (percent of MemTotal)".
    public func number(_ section: String, _ key: String, in range: ClosedRange<Double>, _ rule: String) throws(ManifestError) -> Double? {
        guard let value = try value(section, key) else { return nil }
        return try values.number(value, at: path(section, key), in: range, rule)
    }

    /// An integer within `range`.
    public func integer(_ section: String, _ key: String, in range: ClosedRange<Int>, _ rule: String) throws(ManifestError) -> Int? {
        guard let value = try value(section, key) else { return nil }
        return try values.integer(value, at: path(section, key), in: range, rule)
    }

    /// `true` or `false`.
    public func bool(_ section: String, _ key: String, _ rule: String = "true or false") throws(ManifestError) -> Bool? {
        guard let value = try value(section, key) else { return nil }
        return try values.bool(value, at: path(section, key), rule)
    }

    /// A string (check its content yourself; refuse it with ``invalid(_:_:expected:)``).
    public func string(_ section: String, _ key: String, _ rule: String) throws(ManifestError) -> String? {
        guard let value = try value(section, key) else { return nil }
        return try values.string(value, at: path(section, key), rule)
    }

    /// The error for a value of the right type that the kind refuses: `expected`
    /// says what it must be; the message quotes what the file holds.
    public func invalid(_ section: String, _ key: String, expected: String) -> ManifestError {
        let found = (try? value(section, key)).flatMap { $0 }.map(values.found) ?? "nothing"
        return fail(section, key, .invalidValue(expected: expected, found: found))
    }

    /// An error at `section.key` for any other reason.
    public func fail(_ section: String, _ key: String, _ reason: ManifestError.Reason) -> ManifestError {
        values.fail(path(section, key), reason)
    }

    // MARK: -

    private func path(_ section: String, _ key: String) -> String {
        ManifestError.keyPath([section, key])
    }

    private func table(_ section: String) throws(ManifestError) -> TOMLTable? {
        guard let value = root[section] else { return nil }
        return try values.table(value, at: ManifestError.keyPath([section]))
    }

    private func value(_ section: String, _ key: String) throws(ManifestError) -> TOMLValueConvertible? {
        try table(section)?[key]
    }
}
