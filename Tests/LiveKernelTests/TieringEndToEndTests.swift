#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import BPFKit
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The tiering kind end to end: a real daemon and the CLI, zram swap of the
/// test's own, real processes with hot and cold memory in a real memcg.
/// Runs in its own test phase (make test): it turns swap on, which would
/// keep other suites' memcgs from running out of memory.
@Suite(.serialized)
struct TieringEndToEndTests {
    static let mib: UInt64 = 1 << 20

    /// A tier_cold manifest that acts within seconds, not minutes.
    static func fastCold(mode: String = "enforce", protect: String = "") -> String {
        """
        name = "tier_fast"
        kind = "tiering"
        object = "\(TestPaths.policyObject("tier_cold"))"
        description = "tier_cold, quick"
        mode = "\(mode)"
        [params]
        cold_after_ms = 1000
        probe_regions = 8
        [tiering]
        interval_ms = 500
        max_demote_mb = 128
        max_demote_mb_per_process = 128
        \(protect)
        """
    }

    func memory(_ pid: Int32) throws -> ProcessMemoryStatus { try ProcessMemoryStatus.read(pid: pid) }

    /// A loaded policy's figures (status --json), by name.
    func figures(_ daemon: DaemonProcess, policy: String) -> [String: Double]? {
        struct Status: Decodable {
            struct Policy: Decodable {
                var name: String
                var figures: [KindFigure]?
            }
            var policies: [Policy]
        }
        guard let text = try? daemon.cli(["status", "--json"]).output,
              let status = try? JSONDecoder().decode(Status.self, from: Data(text.utf8)),
              let figures = status.policies.first(where: { $0.name == policy })?.figures else { return nil }
        return Dictionary(figures.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first })
    }

    /// The names of the policies loaded now (status --json).
    func loaded(_ daemon: DaemonProcess) -> [String] {
        struct Status: Decodable {
            struct Policy: Decodable { var name: String }
            var policies: [Policy]
        }
        guard let text = try? daemon.cli(["status", "--json"]).output,
              let status = try? JSONDecoder().decode(Status.self, from: Data(text.utf8)) else { return [] }
        return status.policies.map(\.name)
    }


    @Test func theColdSetGoesOutTheHotSetStaysAndProtectedMemoryIsNotTouched() throws {
        let zram = try ZramSwap(sizeBytes: 512 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-tier", limitBytes: 1024 * Self.mib)
        let keep = try memcg.child("keep")
        let daemon = try DaemonProcess(policies: ["tier_fast": Self.fastCold(protect: "[protect]\ncgroups = [\"\(keep)\"]")])
        let mixed = try HotColdWorkload(hotBytes: 32 * Self.mib, coldBytes: 96 * Self.mib, extra: ["--cgroup", memcg.path])
        let kept = try workload(["hold", "--rss", "32M", "--cgroup", keep])
        let load = try daemon.cli(["load", "tier_fast", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status == 0, "\(load.output)")

        let start = monotonicNanoseconds()
        let out = eventually(60) { ((try? memory(mixed.pid).swapBytes) ?? 0) >= 60 * 96 * Self.mib / 100 }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let status = try memory(mixed.pid)
        print("tiering-e2e: \(status.swapBytes >> 20) MiB of the cold 96 MiB out after \(decimalString(seconds, places: 1)) s; \(status.rssAnonBytes >> 20) MiB resident")
        #expect(out, "60 % of the cold set goes out within 60 s; log:\n\(daemon.log)")
        #expect(status.rssAnonBytes >= 28 * Self.mib, "the hot set stays resident: \(status.rssAnonBytes >> 20) MiB")
        #expect(try memory(kept.pid).swapBytes == 0, "a protected process is never touched")
        let moved = try decisions(daemon, policy: "tier_fast").filter { $0.outcome == .carriedOut }
        #expect(!moved.isEmpty && moved.allSatisfy { ($0.tiering?.demotedBytes ?? 0) > 0 })
        let statusText = try daemon.cli(["status"]).output
        #expect(statusText.contains("tier_fast: demoted"), "\(statusText)")
        // Every figure status promises, with values that add up.
        // What is out now is read every 5 s.
        var shown: [String: Double] = [:]
        _ = eventually(12) {
            shown = figures(daemon, policy: "tier_fast") ?? [:]
            return (shown["out now"] ?? 0) > 0
        }
        for name in ["demoted", "promoted", "refaulted pages", "out now", "saved", "slow tier size", "slow tier used", "zram disksize",
                     "slow tier compression"] {
            #expect(shown[name] != nil, "status shows '\(name)': \(statusText)")
        }
        let outNow = shown["out now"] ?? 0, saved = shown["saved"] ?? -1
        #expect(outNow > 0 && saved > 0 && saved <= outNow, "saved is what is out less what zram holds for it: \(shown)")
        #expect((shown["slow tier size"] ?? 0) >= Double(500 * Self.mib) && (shown["zram disksize"] ?? 0) >= Double(512 * Self.mib)
                && (shown["slow tier used"] ?? 0) > 0, "\(shown)")
        print("tiering-e2e status: \((try? daemon.cli(["status"]).output) ?? "")")
        #expect((shown["demoted"] ?? 0) >= outNow * 0.9 && (shown["slow tier compression"] ?? 0) > 1, "\(shown)")
        #expect(daemon.stop() == 0)
        _ = (zram, kept)
    }

    @Test func observeModeRecordsThePlanAndMovesNothing() throws {
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-tier", limitBytes: 512 * Self.mib)
        let daemon = try DaemonProcess(policies: ["tier_fast": Self.fastCold(mode: "observe")])
        let mixed = try HotColdWorkload(hotBytes: 8 * Self.mib, coldBytes: 32 * Self.mib, extra: ["--cgroup", memcg.path])
        #expect(try daemon.cli(["load", "tier_fast", "--scope", memcg.path]).status == 0)
        #expect(eventually(20) { (try? decisions(daemon, policy: "tier_fast").contains { $0.outcome == .observed }) == true },
                "log:\n\(daemon.log)")
        let observed = try #require(try decisions(daemon, policy: "tier_fast").first { $0.outcome == .observed })
        #expect((observed.tiering?.demotedBytes ?? 0) > 0, "the plan would move something")
        #expect((observed.tiering?.compressibility?.sampledRegions ?? 0) > 0, "observe mode samples what it would demote")
        #expect(try memory(mixed.pid).swapBytes == 0, "observe mode moves nothing")
        _ = zram
    }

    @Test func actionsOutsideTheScopeForADeadProcessOrOutsideItsMemoryAreRefused() throws {
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-tier", limitBytes: 512 * Self.mib)
        let outsider = try workload(["hold", "--rss", "16M"])
        let manifest = """
            name = "tier_fixed"
            kind = "tiering"
            object = "\(TestPaths.fixture("tier_fixed_target"))"
            description = "names one process whatever its scope"
            [tiering]
            interval_ms = 300
            """
        let daemon = try DaemonProcess(policies: ["tier_fixed": manifest])
        let inside = try workload(["hold", "--rss", "16M", "--cgroup", memcg.path])
        let cases: [(pid: Int32, start: UInt64, phrase: String)] = [
            (outsider.pid, 0x7f00_0000_0000, "outside the policy's scope"),
            (99_999_999, 0, "outside the policy's scope"),
            (inside.pid, 0x1000, "is not in pid \(inside.pid)'s anonymous memory"),
        ]
        for (index, c) in cases.enumerated() {
            let name = "fixed\(index)"
            let load = try daemon.cli(["load", "tier_fixed", "--name", name, "--scope", memcg.path, "--mode", "enforce",
                                       "--set", "target_pid=\(c.pid)", "--set", "target_start=\(c.start)"])
            #expect(load.status == 0, "\(load.output)")
            #expect(eventually(10) { (try? decisions(daemon, policy: name).contains { $0.outcome == .rejected }) == true },
                    "case \(index); log:\n\(daemon.log)")
            let record = try #require(try decisions(daemon, policy: name).first { $0.outcome == .rejected })
            #expect(record.tiering?.refusals.first?.reason.contains(c.phrase) == true, "case \(index): \(record.tiering?.refusals ?? [])")
            #expect(try daemon.cli(["unload", name]).status == 0)
        }
        #expect(try memory(outsider.pid).swapBytes == 0 && memory(inside.pid).swapBytes == 0, "nothing moved")
        _ = zram
    }

    @Test func aPolicyThatDemotesTheHotSetIsEjectedByTheRefaultGuard() throws {
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-tier", limitBytes: 256 * Self.mib)
        let manifest = """
            name = "tier_bad"
            kind = "tiering"
            object = "\(TestPaths.fixture("tier_demote_all"))"
            description = "demotes everything, hot or not"
            [tiering]
            interval_ms = 200
            max_demote_mb = 64
            max_demote_mb_per_process = 64
            [guards]
            breach_windows = 2
            """
        let daemon = try DaemonProcess(policies: ["tier_bad": manifest])
        let hot = try workload(["thrash", "--rss", "48M", "--cgroup", memcg.path])
        #expect(try daemon.cli(["load", "tier_bad", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        #expect(eventually(30) { !loaded(daemon).contains("tier_bad") },
                "the watchdog ejects it; log:\n\(daemon.log)")
        // The exit is recorded right after the unload.
        #expect(eventually(5) { ((try? daemon.events(["--policy", "tier_bad", "--limit", "1000"])) ?? "").contains("refault") },
                "ejected for refaults: \((try? daemon.events(["--policy", "tier_bad", "--limit", "1000"])) ?? "")")
        _ = (zram, hot)
    }
}

