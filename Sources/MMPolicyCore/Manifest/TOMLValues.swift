import TOMLKit

/// Reading checked values out of a parsed TOML document, with errors that
/// name the file and the key path: the helpers the manifest reader, a
/// kind's ``ManifestSectionReader`` and ``PolicySet`` share, so every file
/// mmpolicy reads reports problems the same way.
struct TOMLValues {
    /// The file being read, for messages.
    let path: String

    /// An error at `key`, a dotted key path (``ManifestError/keyPath(_:)``).
    func fail(_ key: String, _ reason: ManifestError.Reason) -> ManifestError {
        ManifestError(path: path, key: key, reason: reason)
    }

    /// `key` under the table at key path `prefix` ("" for the document).
    func key(_ key: String, under prefix: String) -> String {
        prefix.isEmpty ? ManifestError.keyPath([key]) : prefix + "." + ManifestError.keyPath([key])
    }

    /// Parses `text`, turning a syntax error (or a NUL or invalid UTF-8) into
    /// a ``ManifestError`` with line and column.
    func parseDocument(_ text: String) throws(ManifestError) -> TOMLTable {
        if let (line, column, problem) = firstEncodingProblem(Array(text.utf8)) {
            throw ManifestError(path: path, key: "", reason: .syntax(line: line, column: column, message: problem))
        }
        do {
            return try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ManifestError(
                path: path, key: "",
                reason: .syntax(line: error.source.begin.line, column: error.source.begin.column, message: error.description))
        } catch {
            throw ManifestError(path: path, key: "", reason: .syntax(line: 0, column: 0, message: String(describing: error)))
        }
    }

    /// Rejects any key of `table` not in `known`, in sorted order.
    func checkKeys(_ table: TOMLTable, at prefix: String, known: [String]) throws(ManifestError) {
        for name in table.keys.sorted() where !known.contains(name) {
            throw fail(key(name, under: prefix), .unknownKey(known: known))
        }
    }

    func table(_ value: TOMLValueConvertible, at key: String) throws(ManifestError) -> TOMLTable {
        guard let table = value.table else {
            throw fail(key, .wrongType(expected: "a table ([\(key)])", found: found(value)))
        }
        return table
    }

    func string(_ value: TOMLValueConvertible, at key: String, _ rule: String) throws(ManifestError) -> String {
        guard let text = value.string else { throw fail(key, .wrongType(expected: rule, found: found(value))) }
        return text
    }

    func bool(_ value: TOMLValueConvertible, at key: String, _ rule: String) throws(ManifestError) -> Bool {
        guard let flag = value.bool else { throw fail(key, .wrongType(expected: rule, found: found(value))) }
        return flag
    }

    /// An integer within `range`.
    func integer(_ value: TOMLValueConvertible, at key: String, in range: ClosedRange<Int>, _ rule: String) throws(ManifestError) -> Int {
        guard let number = value.int else { throw fail(key, .wrongType(expected: rule, found: found(value))) }
        guard range.contains(number) else { throw fail(key, .invalidValue(expected: rule, found: found(value))) }
        return number
    }

    /// A number (integer or floating point) within `range`; NaN is out of every range.
    func number(_ value: TOMLValueConvertible, at key: String, in range: ClosedRange<Double>, _ rule: String) throws(ManifestError) -> Double {
        let number: Double
        if let double = value.double {
            number = double
        } else if let int = value.int {
            number = Double(int)
        } else {
            throw fail(key, .wrongType(expected: rule, found: found(value)))
        }
        guard range.contains(number) else { throw fail(key, .invalidValue(expected: rule, found: found(value))) }
        return number
    }

    /// `enforce` or `observe`.
    func mode(_ value: TOMLValueConvertible, at key: String) throws(ManifestError) -> PolicyMode {
        let rule = PolicyMode.allCases.map { ManifestError.quote($0.rawValue) }.joined(separator: " or ")
        let text = try string(value, at: key, "a string, \(rule)")
        guard let mode = PolicyMode(rawValue: text) else {
            throw fail(key, .invalidValue(expected: rule, found: found(text)))
        }
        return mode
    }

    /// `system` or a cgroup path, checked by ``ScopeSpec``.
    func scope(_ value: TOMLValueConvertible, at key: String) throws(ManifestError) -> ScopeSpec {
        let text = try string(value, at: key, "a string, \(ScopeSpec.expectation)")
        do {
            return try ScopeSpec(parsing: text)
        } catch {
            throw fail(key, .invalidValue(expected: ScopeSpec.expectation, found: "\(found(text)) (\(error.problem))"))
        }
    }

    // MARK: describing values

    func found(_ text: String) -> String {
        "string \(ManifestError.quote(text))"
    }

    func found(_ value: TOMLValueConvertible) -> String {
        func shortened(_ text: String) -> String {
            let flat = text.split(whereSeparator: { $0 == "\n" }).map { $0.trimmingSpaces }.joined(separator: " ")
            return flat.count > 64 ? String(flat.prefix(63)) + "…" : flat
        }
        switch value.type {
        case .string: return found(value.string ?? "")
        case .int: return "integer \(value.int ?? 0)"
        case .double: return "floating-point number \(value.double ?? 0)"
        case .bool: return "boolean \(value.bool ?? false)"
        case .array: return "array \(shortened(value.debugDescription))"
        case .table: return "a table"
        case .date: return "date \(shortened(value.debugDescription))"
        case .time: return "time \(shortened(value.debugDescription))"
        case .dateTime: return "date-time \(shortened(value.debugDescription))"
        }
    }
}

extension Substring {
    fileprivate var trimmingSpaces: Substring {
        var text = self
        while let first = text.first, first == " " || first == "\t" { text.removeFirst() }
        while let last = text.last, last == " " || last == "\t" || last == "\r" { text.removeLast() }
        return text
    }
}
