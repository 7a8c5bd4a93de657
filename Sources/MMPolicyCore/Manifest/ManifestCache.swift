import Synchronization

/// Checked manifests by path, reused while a file's bytes are unchanged.
///
/// It exists because parsing is not free of side effects: TOMLKit 0.6 never
/// frees a parsed document (its table, array and value wrappers have no
/// deinit), so every parse leaks the whole tree, about 4.4 KB a manifest. A
/// daemon that read its policy directory again on every `mmpolicy load NAME`
/// grew by that much per manifest per load, all of it locked by mlockall.
/// With the cache a file is parsed once per distinct content; the check
/// that it is unchanged is a byte comparison of the file as read now (no
/// reliance on modification times, which a quick rewrite may not change).
public final class ManifestCache: Sendable {
    private struct Entry: Sendable {
        var bytes: [UInt8]
        var result: Result<Manifest, ManifestError>
    }

    private let kinds: KindRegistry
    private let entries = Mutex<[String: Entry]>([:])

    /// A cache for manifests read against `kinds`.
    public init(kinds: KindRegistry) { self.kinds = kinds }

    /// The manifest at `path`, as ``Manifest/load(path:kinds:)`` gives it,
    /// parsed only if the file's bytes differ from the last time.
    public func load(path: String) throws(ManifestError) -> Manifest {
        let bytes: [UInt8]
        do { bytes = try Manifest.readBytes(path: path) } catch {
            entries.withLock { _ = $0.removeValue(forKey: path) }
            throw error
        }
        if let entry = entries.withLock({ $0[path] }), entry.bytes == bytes { return try entry.result.get() }
        let result = Result { () throws(ManifestError) in try Manifest.parse(bytes: bytes, path: path, kinds: kinds) }
        entries.withLock { $0[path] = Entry(bytes: bytes, result: result) }
        return try result.get()
    }

    /// The catalog of `directory`, each manifest through the cache; entries
    /// of files no longer in the directory are dropped.
    public func catalog(directory: String) -> PolicyCatalog {
        let catalog = PolicyCatalog.load(directory: directory) { path throws(ManifestError) in try load(path: path) }
        let base = directory.hasSuffix("/") ? directory : directory + "/"
        let present = Set(catalog.manifests.map(\.path) + catalog.errors.map(\.path))
        entries.withLock { entries in
            for path in entries.keys where path.hasPrefix(base) && !present.contains(path) { entries.removeValue(forKey: path) }
        }
        return catalog
    }

    /// How many files the cache holds (for tests).
    public var count: Int { entries.withLock { $0.count } }
}
