#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import MMPolicyCore
import MMPolicyTestSupport
import Testing

/// A tiering policy needs a slow tier: with no swap device active, a load is
/// refused with the fix. Runs with the other live suites (none turns swap
/// on there), and only where no swap is active.
@Suite(.serialized, .enabled(if: SlowTier.current().devices.isEmpty, "a swap device is active on this machine"))
struct TieringWithoutSwapTests {
    static let mib: UInt64 = 1 << 20

    @Test func withoutASwapDeviceALoadIsRefusedClearly() throws {
        let daemon = try DaemonProcess(policies: ["tier_fast": TieringEndToEndTests.fastCold()])
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-tier", limitBytes: 128 * Self.mib)
        let load = try daemon.cli(["load", "tier_fast", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status != 0)
        #expect(load.output.contains("no swap device is active") && load.output.contains("swapon"), "\(load.output)")
        #expect(!(try daemon.cli(["status", "--json"]).output.contains("\"name\" : \"tier_fast\"")), "nothing loaded")
    }
}
