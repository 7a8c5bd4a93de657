import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's manifest cache: one parse per file content, a new parse when
/// the bytes change, errors cached like manifests, removed files forgotten.
@Suite struct ManifestCacheTests {
    static func manifest(_ name: String, description: String = "d") -> String {
        "name = \"\(name)\"\nkind = \"oom\"\nobject = \"\(name).bpf.o\"\ndescription = \"\(description)\"\n"
    }

    @Test func anUnchangedFileIsReadFromTheCacheAndAChangedOneAgain() throws {
        let directory = try ScratchDirectory()
        let path = try directory.write("alpha.toml", Self.manifest("alpha"))
        let cache = ManifestCache(kinds: .builtIn)
        let first = try cache.load(path: path)
        #expect(try cache.load(path: path) == first)
        #expect(cache.count == 1)
        _ = try directory.write("alpha.toml", Self.manifest("alpha", description: "changed"))
        #expect(try cache.load(path: path).description == "changed")
        #expect(try cache.load(path: path) == Manifest.load(path: path, kinds: .builtIn))
    }

    @Test func aBrokenFileKeepsGivingItsError() throws {
        let directory = try ScratchDirectory()
        let path = try directory.write("broken.toml", "name = \"broken\"\nkind = \n")
        let cache = ManifestCache(kinds: .builtIn)
        let first = #expect(throws: ManifestError.self) { try cache.load(path: path) }
        let second = #expect(throws: ManifestError.self) { try cache.load(path: path) }
        #expect(first == second && first != nil)
        _ = try directory.write("broken.toml", Self.manifest("broken"))
        #expect(try cache.load(path: path).name == "broken")
    }

    @Test func theCatalogForgetsRemovedFilesAndMatchesAFreshRead() throws {
        let directory = try ScratchDirectory()
        _ = try directory.write("alpha.toml", Self.manifest("alpha"))
        let beta = try directory.write("beta.toml", Self.manifest("beta"))
        let cache = ManifestCache(kinds: .builtIn)
        let cached = cache.catalog(directory: directory.path)
        let fresh = PolicyCatalog.load(directory: directory.path, kinds: .builtIn)
        #expect(cached.manifests == fresh.manifests && cached.errors == fresh.errors)
        #expect(cache.count == 2)
        #expect(unlink(beta) == 0)
        #expect(cache.catalog(directory: directory.path).manifests.map(\.name) == ["alpha"])
        #expect(cache.count == 1)
        #expect(throws: ManifestError.self) { try cache.load(path: beta) }
    }
}
