import MMPolicyTestSupport
import Testing

/// The ready line of `mmpolicy-workload hotcold`, with and without its
/// optional incompressible part: parsers of the old 8-word line must keep
/// working, and the new part must be read when it is there.
@Suite struct HotColdReadyLineTests {
    @Test func theTwoPartLineHasNoIncompressiblePart() throws {
        let parts = try #require(HotColdWorkload.parseReady("ready 42 hot 0x7f0000000000 8388608 cold 0x7f0000800000 16777216"))
        #expect(parts.pid == 42 && parts.hot == (0x7f00_0000_0000, 8 << 20) && parts.cold == (0x7f00_0080_0000, 16 << 20))
        #expect(parts.incompressible == (0, 0))
    }

    @Test func theThreePartLineIsRead() throws {
        let line = "ready 42 hot 0x0 0 cold 0x7f0000800000 16777216 incompressible 0x7f0002000000 33554432"
        let parts = try #require(HotColdWorkload.parseReady(line))
        #expect(parts.hot == (0, 0) && parts.incompressible == (0x7f00_0200_0000, 32 << 20))
    }

    @Test func otherLinesAreRefused() {
        for line in ["touched 12", "ready 42 hot 0x0 0 cold 0x0", "ready 42 hot 0x0 0 cold 0x0 0 random 0x0 0",
                     "ready 42 hot 0x0 0 cold 0x0 0 incompressible 0x0", "ready x hot 0x0 0 cold 0x0 0", "ready 42 hot 12 0 cold 0x0 0"] {
            #expect(HotColdWorkload.parseReady(line) == nil, "\(line)")
        }
    }
}
