import BPFKit
import TOMLKit

/// Turns a parsed TOML document into a ``Manifest``, one key at a time: the
/// keys every manifest shares here, the kind's own sections through its
/// ``PolicyKindDefinition``.
struct ManifestReader {
    let values: TOMLValues
    let kinds: KindRegistry

    var path: String { values.path }

    func fail(_ key: String, _ reason: ManifestError.Reason) -> ManifestError { values.fail(key, reason) }

    func read(_ root: TOMLTable) throws(ManifestError) -> Manifest {
        // The kind decides which extra sections are allowed, so find it first.
        // A kind this mmpolicy does not run is the error to report, not the
        // sections it brought; without a kind, any registered kind's sections
        // pass here and the missing kind is refused below.
        let named = root["kind"]?.string.flatMap { kinds.definition(for: PolicyKind(rawValue: $0)) }
        let known = kinds.kinds.map { ManifestError.quote($0.rawValue) }.joined(separator: ", ")
        let kindRule = kinds.definitions.isEmpty ? "a kind this mmpolicy runs (it runs none)" : "one of \(known)"
        if named == nil, let kindText = root["kind"]?.string {
            throw fail("kind", .invalidValue(expected: kindRule, found: values.found(kindText)))
        }
        var sections: [String] = []
        let candidates: [any PolicyKindDefinition] = named.map { [$0] } ?? kinds.definitions
        for section in candidates.flatMap(\.manifestSections) where !sections.contains(section) {
            sections.append(section)
        }
        try values.checkKeys(root, at: "", known: Manifest.knownKeys + sections)

        let nameRule = "a string of 1 to \(Manifest.maxNameLength) characters from a-z, 0-9 and _"
        let name = try requiredString(root, "name", expected: nameRule)
        guard Manifest.isValidName(name) else {
            throw fail("name", .invalidValue(expected: nameRule, found: values.found(name)))
        }
        if let stem = Manifest.expectedName(forPath: path), stem != name {
            throw fail("name", .nameMismatch(name: name, stem: stem))
        }

        let kindText = try requiredString(root, "kind", expected: "a string, \(kindRule)")
        guard let definition = named else {
            throw fail("kind", .invalidValue(expected: kindRule, found: values.found(kindText)))
        }

        let objectRule = "a non-empty string: a BPF object file name (looked up on the object search path) or a path to one"
        let object = try requiredString(root, "object", expected: objectRule)
        if object.isEmpty || object.hasSuffix("/") || object.unicodeScalars.contains("\0") {
            throw fail("object", .invalidValue(expected: objectRule, found: values.found(object)))
        }

        let descriptionRule = "a non-empty string saying what the policy does"
        let description = try requiredString(root, "description", expected: descriptionRule)
        if description.unicodeScalars.allSatisfy({ $0.properties.isWhitespace }) {
            throw fail("description", .invalidValue(expected: descriptionRule, found: values.found(description)))
        }

        var manifest = Manifest(
            name: name, kind: definition.kind, object: object, description: description, path: path)
        if let value = root["scope"] { manifest.scope = try values.scope(value, at: "scope") }
        if let value = root["mode"] { manifest.mode = try values.mode(value, at: "mode") }
        if let value = root["params"] {
            for (key, param) in try readParams(value) { manifest.setParam(key, to: param) }
        }
        if let value = root["guards"] { manifest.guards = try readGuards(value, definition) }
        if let value = root["protect"] { manifest.protect = try readProtect(value) }
        manifest.kindSettings = try definition.readManifestSections(
            ManifestSectionReader(values: values, root: root, kind: definition.kind))
        return manifest
    }

    func requiredString(_ table: TOMLTable, _ key: String, expected: String) throws(ManifestError) -> String {
        guard let value = table[key] else { throw fail(key, .missingKey(expected: expected)) }
        return try values.string(value, at: key, expected)
    }

    // MARK: params

    func readParams(_ value: TOMLValueConvertible) throws(ManifestError) -> [(String, ParameterValue)] {
        let params = try values.table(value, at: "params")
        let rule = "a C identifier (letters, digits and _, not starting with a digit), "
            + "because it sets the BPF object's global of the same name"
        for key in params.keys.sorted() where !Manifest.isCIdentifier(key) {
            throw fail(values.key(key, under: "params"), .invalidKey(expected: rule))
        }
        var result: [(String, ParameterValue)] = []
        for key in params.keys.sorted() {
            let value = params[key]!
            let expected = "an integer, boolean or string (the value of the BPF global '\(key)')"
            switch value.type {
            case .int: result.append((key, .integer(Int64(value.int!))))
            case .bool: result.append((key, .boolean(value.bool!)))
            case .string: result.append((key, .string(value.string!)))
            default: throw fail("params." + key, .wrongType(expected: expected, found: values.found(value)))
            }
        }
        return result
    }

    // MARK: guards

    /// Checks `[guards]` against the shared table plus the kind's own entries.
    func readGuards(_ value: TOMLValueConvertible, _ definition: any PolicyKindDefinition) throws(ManifestError) -> GuardSettings {
        let guards = try values.table(value, at: "guards")
        let entries = GuardTable.entries(for: definition)
        try values.checkKeys(guards, at: "guards", known: entries.map(\.key))
        var settings = GuardSettings()
        for name in guards.keys.sorted() {
            guard let entry = entries.first(where: { $0.key == name }), let value = guards[name] else { continue }
            let key = "guards." + entry.key
            let range = entry.range
            if range.integer {
                let lower = Int(range.bounds.lowerBound.rounded(.up))
                let upper = range.bounds.upperBound >= Double(Int.max) ? Int.max : Int(range.bounds.upperBound.rounded(.down))
                settings[entry.key] = Double(try values.integer(value, at: key, in: lower...upper, range.rule))
            } else {
                settings[entry.key] = try values.number(value, at: key, in: range.bounds, range.rule)
            }
        }
        return settings
    }

    // MARK: protect

    func readProtect(_ value: TOMLValueConvertible) throws(ManifestError) -> ProtectList {
        let protect = try values.table(value, at: "protect")
        try values.checkKeys(protect, at: "protect", known: ProtectList.knownKeys)
        var list = ProtectList()
        let commRule = "a process name of 1 to \(ProtectList.maxCommBytes) bytes "
            + "(the kernel keeps only \(ProtectList.maxCommBytes) bytes of a task's comm)"
        if let value = protect["comms"] {
            list.comms = try strings(value, "comms", "an array of process names (strings)") { comm in
                (1...ProtectList.maxCommBytes).contains(comm.utf8.count) ? nil : commRule
            }
        }
        if let value = protect["cgroups"] {
            list.cgroups = try strings(value, "cgroups", "an array of cgroup paths (strings)") { cgroup in
                cgroup.isEmpty ? "a non-empty cgroup path" : nil
            }
        }
        return list
    }

    /// Reads an array of strings, `problem` giving the expectation an element fails, if any.
    func strings(
        _ value: TOMLValueConvertible, _ key: String, _ rule: String, problem: (String) -> String?
    ) throws(ManifestError) -> [String] {
        guard let array = value.array else {
            throw fail("protect." + key, .wrongType(expected: rule, found: values.found(value)))
        }
        var result: [String] = []
        for index in 0..<array.count {
            let element = array[index]
            let elementKey = "protect.\(ManifestError.keyPath([key]))[\(index)]"
            let text = try values.string(element, at: elementKey, "a string")
            if let expected = problem(text) {
                throw fail(elementKey, .invalidValue(expected: expected, found: values.found(text)))
            }
            result.append(text)
        }
        return result
    }
}
