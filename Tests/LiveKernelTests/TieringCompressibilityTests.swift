#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import BPFKit
import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The compressibility check end to end: a real daemon running tier_cold
/// over a process with hot memory, cold memory that compresses and cold
/// memory of random bytes, on a zram device of the test's own. With
/// `incompressible = "skip"` the random part must stay resident (page by
/// page, from /proc/PID/pagemap) and zram must hold almost no whole-stored
/// page; with "demote" the random part must go out, stored whole.
/// Runs in the tiering phase of `make test` (it turns swap on).
@Suite(.serialized)
struct TieringCompressibilityTests {
    static let mib: UInt64 = 1 << 20
    static let page: UInt64 = 4096
    /// The parts, each whole 2 MiB regions.
    static let hot = 8 * mib, cold = 48 * mib, random = 32 * mib

    static func manifest(incompressible: String) -> String {
        """
        name = "tier_compress"
        kind = "tiering"
        object = "\(TestPaths.policyObject("tier_cold"))"
        description = "tier_cold, quick, with the compressibility check"
        mode = "enforce"
        [params]
        cold_after_ms = 1000
        probe_regions = 8
        skip_incompressible = 1
        [tiering]
        interval_ms = 500
        max_demote_mb = 128
        max_demote_mb_per_process = 128
        incompressible = "\(incompressible)"
        compressibility_sample_pages = 8
        """
    }

    /// Where the pages of a part of `workload` are now.
    func residency(_ workload: HotColdWorkload, _ part: (start: UInt64, bytes: UInt64)) throws -> PageResidency {
        try PageResidency.read(try PidFD(pid: workload.pid), ranges: [AddressRange(start: part.start, length: part.bytes)])
    }

    /// Every recorded plan's compressibility check, summed.
    func sampling(_ daemon: DaemonProcess) throws -> CompressibilitySampling {
        try decisions(daemon, policy: "tier_compress").compactMap { $0.tiering?.compressibility }.reduce(into: CompressibilitySampling()) {
            $0.sampledRegions += $1.sampledRegions
            $0.incompressibleRegions += $1.incompressibleRegions
            $0.skippedBytes += $1.skippedBytes
            $0.sampleMicroseconds += $1.sampleMicroseconds
        }
    }

    @Test func incompressibleMemoryStaysResidentAndTheRestGoesToZram() throws {
        // Priority above any device a concurrent test set up without one: our pages go to ours.
        let zram = try ZramSwap(sizeBytes: 512 * Self.mib, ownDevice: true, priority: 1000)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-compress", limitBytes: 1024 * Self.mib)
        let daemon = try DaemonProcess(policies: ["tier_compress": Self.manifest(incompressible: "skip")])
        let mixed = try HotColdWorkload(hotBytes: Self.hot, coldBytes: Self.cold, incompressibleBytes: Self.random,
                                        extra: ["--cgroup", memcg.path])
        #expect(mixed.incompressible.bytes == Self.random && mixed.incompressible.start % (2 * Self.mib) == 0)
        let hugeBefore = try zram.stats().hugePages ?? 0
        let load = try daemon.cli(["load", "tier_compress", "--scope", memcg.path])
        try #require(load.status == 0, "\(load.output)")

        let coldPages = Int(Self.cold / Self.page), randomPages = Int(Self.random / Self.page)
        let out = eventually(60) { ((try? residency(mixed, mixed.cold))?.swappedPages ?? 0) >= coldPages * 9 / 10 }
        #expect(out, "90 % of the compressible cold part goes out within 60 s: \(String(describing: try? residency(mixed, mixed.cold))); log:\n\(daemon.log)")
        #expect(eventually(10) { ((try? sampling(daemon))?.skippedBytes ?? 0) >= Self.random },
                "every incompressible region is skipped: \(String(describing: try? sampling(daemon)))")
        // A few more plans: tier_cold reads the flag and picks the random regions no more.
        usleep(3_000_000)
        let random = try residency(mixed, mixed.incompressible)
        let sampled = try sampling(daemon)
        let stats = try zram.stats()
        let huge = (stats.hugePages ?? 0) - min(stats.hugePages ?? 0, hugeBefore)
        print("compressibility-e2e skip: cold \(try residency(mixed, mixed.cold)), random \(random); \(sampled.sampledRegions) regions sampled in \(decimalString(sampled.sampleMicroseconds, places: 0)) µs (\(decimalString(sampled.sampleMicroseconds / Double(max(1, sampled.sampledRegions)), places: 0)) µs a region), \(sampled.incompressibleRegions) incompressible, \(sampled.skippedBytes >> 20) MiB skipped; zram huge pages +\(huge), stored \(stats.storedBytes >> 20) MiB in \(stats.usedBytes >> 20) MiB")
        #expect(random.residentPages == randomPages, "the random part stays resident: \(random)")
        #expect(huge <= UInt64(randomPages / 50), "zram holds (almost) no whole-stored page: \(huge)")
        #expect(sampled.skippedBytes == Self.random, "each random region is skipped once, then the policy leaves it: \(sampled)")
        #expect(sampled.incompressibleRegions == Int(Self.random / (2 * Self.mib)), "\(sampled)")

        let status = try daemon.cli(["status"]).output
        #expect(status.contains("left resident as incompressible 32.0 MiB"), "\(status)")
        #expect(daemon.stop() == 0)
        _ = zram
    }

    @Test func withDemoteTheRandomPartGoesOutStoredWhole() throws {
        let zram = try ZramSwap(sizeBytes: 512 * Self.mib, ownDevice: true, priority: 1000)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-compress", limitBytes: 1024 * Self.mib)
        let daemon = try DaemonProcess(policies: ["tier_compress": Self.manifest(incompressible: "demote")])
        let mixed = try HotColdWorkload(hotBytes: Self.hot, coldBytes: Self.cold, incompressibleBytes: Self.random,
                                        extra: ["--cgroup", memcg.path])
        let hugeBefore = try zram.stats().hugePages ?? 0
        try #require(try daemon.cli(["load", "tier_compress", "--scope", memcg.path]).status == 0)

        let randomPages = Int(Self.random / Self.page)
        let out = eventually(60) { ((try? residency(mixed, mixed.incompressible))?.swappedPages ?? 0) >= randomPages * 9 / 10 }
        // The plan that moved the last of it is recorded right after.
        let regions = Int(Self.random / (2 * Self.mib))
        _ = eventually(5) { ((try? sampling(daemon))?.incompressibleRegions ?? 0) >= regions }
        let stats = try zram.stats()
        let huge = (stats.hugePages ?? 0) - min(stats.hugePages ?? 0, hugeBefore)
        let sampled = try sampling(daemon)
        print("compressibility-e2e demote: random \(try residency(mixed, mixed.incompressible)); zram huge pages +\(huge); \(sampled)")
        #expect(out, "90 % of the random part goes out within 60 s; log:\n\(daemon.log)")
        #expect(huge >= UInt64(randomPages * 8 / 10), "zram stores the random pages whole: \(huge) of \(randomPages)")
        #expect(sampled.skippedBytes == 0 && sampled.incompressibleRegions >= regions,
                "sampled and found incompressible, not skipped: \(sampled)")
        #expect(daemon.stop() == 0)
        _ = zram
    }
}
