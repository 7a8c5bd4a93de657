import MMPolicyCore
import MMPolicyKinds
import Testing

/// `[tiering] setup_zram`: read from the manifest, checked, refused with the
/// key and the rule.
struct TieringSetupZramTests {
    func manifest(_ tiering: String) throws(ManifestError) -> Manifest {
        try Manifest.parse(toml: """
            name = "tier_cold"
            kind = "tiering"
            object = "tier_cold.bpf.o"
            description = "test"
            [tiering]
            \(tiering)
            """, path: "policies/tier_cold.toml", kinds: .builtIn)
    }

    func settings(_ tiering: String) throws -> TieringSettings {
        try #require(try manifest(tiering).kindSettings as? TieringSettings)
    }

    @Test func readsTheSize() throws {
        #expect(try settings("setup_zram = \"1G\"").setupZram == ByteSize(bytes: 1 << 30))
        #expect(try settings("setup_zram = \"512MiB\"").setupZram == ByteSize(bytes: 512 << 20))
        #expect(try settings("interval_ms = 1000").setupZram == nil, "absent: no zram is set up, swap must exist")
        #expect(TieringSettings.defaults.setupZram == nil)
    }

    @Test func refusesWhatIsNotAUsableSize() {
        for (value, found) in [("\"lots\"", "string \"lots\""), ("\"512K\"", "string \"512K\"")] {
            let error = #expect(throws: ManifestError.self) { try manifest("setup_zram = \(value)") }
            #expect(error?.key == "tiering.setup_zram")
            #expect(error?.reason == .invalidValue(
                expected: "a zram swap size such as \"1G\" or \"512M\" (binary units K, M, G, T), at least 1M", found: found))
        }
        let number = #expect(throws: ManifestError.self) { try manifest("setup_zram = 1024") }
        if case .wrongType = number?.reason {} else { Issue.record("a number is the wrong type: \(String(describing: number))") }
    }

    @Test func onlyTieringNeedsSwap() {
        #expect(TieringKind().needsSwap)
        #expect(!OOMKind().needsSwap)
    }
}
