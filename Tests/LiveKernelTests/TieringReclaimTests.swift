#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import BPFKit
import CMMPolicyABI
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyKinds
import MMPolicyTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Reclaim targets end to end: a real daemon and CLI, a zram device of the
/// test's own, real memcgs (cgroup v1 here: the stepped, journaled
/// lower-and-raise of memory.limit_in_bytes) and real workloads. Runs in
/// make test's last phase, with the other suites that turn swap on.
@Suite(.serialized)
struct TieringReclaimTests {
    static let mib: UInt64 = 1 << 20

    /// tier_fixed_target, planning every `intervalMs`.
    static func fixedTarget(intervalMs: Int = 300, maxDemoteMB: Int = 256) -> String {
        """
        name = "tier_fixed"
        kind = "tiering"
        object = "\(TestPaths.fixture("tier_fixed_target"))"
        description = "asks for what it is told"
        [tiering]
        interval_ms = \(intervalMs)
        max_demote_mb = \(maxDemoteMB)
        """
    }

    func limitText(_ path: String) throws -> String { try readFile(path + "/memory.limit_in_bytes") }

    /// The directory's inode number: the cgroup id a policy names it by.
    func cgroupID(_ path: String) throws -> UInt64 {
        var info = stat()
        guard stat(path, &info) == 0 else { throw Errno(rawValue: errno) }
        return UInt64(info.st_ino)
    }

    @Test func aFixedTargetReclaimsAboutThatMuchAndTheLimitIsBackRightAfter() throws {
        let zram = try ZramSwap(sizeBytes: 512 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-reclaim", limitBytes: 1024 * Self.mib)
        let held = try workload(["hold", "--rss", "160M", "--cgroup", memcg.path])
        let original = try limitText(memcg.path)
        let cacheBefore = try memcgCacheBytes(memcg.path)
        let daemon = try DaemonProcess(policies: ["tier_fixed": Self.fixedTarget()])
        let load = try daemon.cli(["load", "tier_fixed", "--scope", memcg.path, "--mode", "enforce",
                                   "--set", "reclaim_bytes=\(64 * Self.mib)", "--set", "reclaim_plans=1"])
        #expect(load.status == 0, "\(load.output)")
        let reclaimed = { (try? decisions(daemon, policy: "tier_fixed").first { !($0.tiering?.reclaims.isEmpty ?? true) }) ?? nil }
        #expect(eventually(20) { reclaimed() != nil }, "log:\n\(daemon.log)")
        // The record is written after the limit is raised back.
        #expect(try limitText(memcg.path) == original, "the limit reads back exactly the original right after the plan")
        let record = try #require(reclaimed())
        let entry = try #require(record.tiering?.reclaims.first)
        print("tiering-reclaim: \(entry.reclaimedBytes >> 20) MiB of \(entry.askedBytes >> 20) MiB asked in \(entry.steps) steps, \(decimalString(entry.durationUs / 1000, places: 1)) ms (\(entry.stop ?? "-")); summary: \(TieringKind().summarize(record))")
        #expect(record.outcome == .carriedOut, "\(record)")
        #expect(entry.cgroup == memcg.path && entry.failure == nil && entry.grantedBytes == 64 * Self.mib)
        #expect(entry.reclaimedBytes >= 48 * Self.mib && entry.reclaimedBytes <= 80 * Self.mib, "about what was asked: \(entry)")
        let swapped = try ProcessMemoryStatus.read(pid: held.pid).swapBytes
        let cacheDropped = cacheBefore - min(cacheBefore, try memcgCacheBytes(memcg.path))
        #expect(swapped + cacheDropped >= 40 * Self.mib,
                "the anonymous memory went to zram (\(swapped >> 20) MiB) or page cache was dropped (\(cacheDropped >> 20) MiB)")
        let status = try daemon.cli(["status"]).output
        let figure = KindFigure("reclaimed", Double(entry.reclaimedBytes), unit: "bytes").text
        #expect(status.contains(figure), "status shows '\(figure)': \(status)")
        #expect(try daemon.cli(["unload", "tier_fixed"]).status == 0)
        #expect(try limitText(memcg.path) == original, "and after unload")
        #expect(daemon.stop() == 0)
        _ = zram
    }

    @Test func observeModeRecordsTheTargetAndReclaimsNothing() throws {
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-reclaim", limitBytes: 512 * Self.mib)
        let held = try workload(["hold", "--rss", "64M", "--cgroup", memcg.path])
        let original = try limitText(memcg.path)
        let usage = try KernelFile.readUInt64(memcg.path + "/memory.usage_in_bytes")
        let daemon = try DaemonProcess(policies: ["tier_fixed": Self.fixedTarget()])
        let load = try daemon.cli(["load", "tier_fixed", "--scope", memcg.path, "--mode", "observe",
                                   "--set", "reclaim_bytes=\(32 * Self.mib)"])
        #expect(load.status == 0, "\(load.output)")
        let observed = { (try? decisions(daemon, policy: "tier_fixed").first { $0.outcome == .observed }) ?? nil }
        #expect(eventually(10) { observed() != nil }, "log:\n\(daemon.log)")
        let record = try #require(observed())
        let payload = try #require(record.tiering)
        #expect(payload.reclaims.map(\.grantedBytes) == [32 * Self.mib] && payload.reclaimedBytes == 32 * Self.mib,
                "the bytes it would have asked for: \(payload.reclaims)")
        #expect(payload.reclaims.first?.steps == 0 && payload.reclaims.first?.stop == nil, "nothing was run")
        #expect(TieringKind().summarize(record).contains("would reclaim 32.0 MiB from \(memcg.path)"), "\(TieringKind().summarize(record))")
        #expect(try limitText(memcg.path) == original)
        #expect(try ProcessMemoryStatus.read(pid: held.pid).swapBytes == 0)
        let after = try KernelFile.readUInt64(memcg.path + "/memory.usage_in_bytes")
        #expect(after + 8 * Self.mib >= usage, "the group kept its memory: \(usage >> 20) -> \(after >> 20) MiB")
        #expect(try daemon.cli(["status"]).output.contains("reclaimed 0 B"), "observe mode adds nothing to the totals")
        _ = zram
    }

    @Test func aTargetOutsideTheScopeOrOfNoCgroupIsRefusedAndCounted() throws {
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-reclaim", limitBytes: 512 * Self.mib)
        let outside = try TemporaryMemcg(prefix: "mmpolicy-reclaim-out", limitBytes: 512 * Self.mib)
        let outsider = try workload(["hold", "--rss", "32M", "--cgroup", outside.path])
        let outsideLimit = try limitText(outside.path)
        let daemon = try DaemonProcess(policies: ["tier_fixed": Self.fixedTarget()])
        let cases: [(id: UInt64, phrase: String)] = [
            (try cgroupID(outside.path), "is outside the policy's scope \(memcg.path)"),
            (4_000_000_001, "cgroup 4000000001 is not a memory cgroup"),
        ]
        for (index, c) in cases.enumerated() {
            let name = "fixed\(index)"
            let load = try daemon.cli(["load", "tier_fixed", "--name", name, "--scope", memcg.path, "--mode", "enforce",
                                       "--set", "reclaim_cgroup_id=\(c.id)", "--set", "reclaim_bytes=\(16 * Self.mib)"])
            #expect(load.status == 0, "\(load.output)")
            #expect(eventually(10) { (try? decisions(daemon, policy: name).contains { $0.outcome == .rejected }) == true },
                    "case \(index); log:\n\(daemon.log)")
            let record = try #require(try decisions(daemon, policy: name).first { $0.outcome == .rejected })
            let payload = try #require(record.tiering)
            #expect(payload.targetsAsked == 1 && payload.refusedCount == 1 && payload.reclaims.isEmpty)
            #expect(payload.targetRefusals.first?.reason.contains(c.phrase) == true, "case \(index): \(payload.targetRefusals)")
            let status = try daemon.cli(["status"]).output
            #expect(status.contains("refused actions"), "counted: \(status)")
            #expect(try daemon.cli(["unload", name]).status == 0)
        }
        #expect(try limitText(outside.path) == outsideLimit, "nothing outside the scope was touched")
        #expect(try ProcessMemoryStatus.read(pid: outsider.pid).swapBytes == 0)
        _ = zram
    }

    /// tier_senpai as shipped, planning every second. Its stall target is
    /// 1 % instead of 0.1 %: on cgroup v1 the PSI it reads is the whole
    /// machine's, which other builds and tests share (since boot this host
    /// averaged about 0.5 % some-stall, and the suites that run beside this
    /// one swap on purpose); the refault target, the scope's own, is as
    /// shipped.
    static func senpai() throws -> String {
        var text = try readFile(TestPaths.policies + "/tier_senpai.toml")
        for (line, replacement) in [("mode = \"observe\"", "mode = \"enforce\""), ("interval_ms = 2000", "interval_ms = 1000"),
                                    ("stall_target_us_per_s = 1000", "stall_target_us_per_s = 10000")] {
            guard text.contains(line) else { throw ManifestLineMissing(line: line) }
            text = text.replacingFirst(line, with: replacement)
        }
        return text
    }

    struct ManifestLineMissing: Error { var line: String }

    @Test func tierSenpaiMovesTheColdSetOutAndLeavesTheHotSetResident() throws {
        let zram = try ZramSwap(sizeBytes: 512 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-senpai", limitBytes: 1024 * Self.mib)
        let mixed = try HotColdWorkload(hotBytes: 32 * Self.mib, coldBytes: 96 * Self.mib, extra: ["--cgroup", memcg.path])
        let original = try limitText(memcg.path)
        let daemon = try DaemonProcess(policies: ["tier_senpai": try Self.senpai()])
        let load = try daemon.cli(["load", "tier_senpai", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status == 0, "\(load.output)")
        let pidfd = try PidFD(pid: mixed.pid)
        let hot = [AddressRange(start: mixed.hot.start, length: mixed.hot.bytes)]
        let cold = [AddressRange(start: mixed.cold.start, length: mixed.cold.bytes)]
        let coldPages = Int(mixed.cold.bytes / 4096), hotPages = Int(mixed.hot.bytes / 4096)

        // Twice a second: how much of each part is out and in. About 15 s on
        // a quiet host; 40 s leaves room for back-offs on a busy one.
        let start = monotonicNanoseconds()
        var coldOut = 0, samples: [String] = [], out = false
        while !out, monotonicNanoseconds() - start < 40_000_000_000 {
            usleep(500_000)
            guard let c = try? PageResidency.read(pidfd, ranges: cold), let h = try? PageResidency.read(pidfd, ranges: hot) else { continue }
            coldOut = c.swappedPages
            samples.append("\(decimalString(Double(monotonicNanoseconds() - start) / 1e9, places: 1)) s \(coldOut * 100 / coldPages)/\(h.residentPages * 100 / hotPages)")
            out = coldOut * 100 >= coldPages * 60
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        let records = try decisions(daemon, policy: "tier_senpai")
        let reclaims = records.compactMap(\.tiering).flatMap(\.reclaims)
        let total = reclaims.reduce(0) { $0 + $1.reclaimedBytes }
        let hotAtEnd = (try? PageResidency.read(pidfd, ranges: hot).residentPages) ?? 0
        print("tier-senpai: cold \(coldOut * 100 / coldPages) % out after \(decimalString(seconds, places: 1)) s; hot \(hotAtEnd * 100 / hotPages) % resident; \(reclaims.count) reclaims, \(total >> 20) MiB in all, steps asked (MiB): \(reclaims.map { $0.grantedBytes >> 20 })")
        print("tier-senpai: time, % of the cold part out / % of the hot part resident: " + samples.joined(separator: ", "))
        #expect(out, "60 % of the cold set out within 40 s; log:\n\(daemon.log.suffix(3000))")
        #expect(hotAtEnd * 100 >= hotPages * 80, "the hot set stays mostly resident: \(hotAtEnd) of \(hotPages) pages")
        #expect(reclaims.allSatisfy { $0.failure == nil }, "\(reclaims.compactMap(\.failure))")
        #expect(reclaims.count >= 3, "it grew by steps, not all at once")
        #expect(try daemon.cli(["unload", "tier_senpai"]).status == 0)
        #expect(try limitText(memcg.path) == original)
        _ = zram
    }

    @Test func tierSenpaiBacksOffWhenWhatItReclaimsComesStraightBack() throws {
        let zram = try ZramSwap(sizeBytes: 512 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-senpai", limitBytes: 1024 * Self.mib)
        let hot = try workload(["thrash", "--rss", "128M", "--cgroup", memcg.path])
        let daemon = try DaemonProcess(policies: ["tier_senpai": try Self.senpai()])
        let load = try daemon.cli(["load", "tier_senpai", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status == 0, "\(load.output)")
        usleep(12_000_000)  // 12 plans
        let usage = try KernelFile.readUInt64(memcg.path + "/memory.usage_in_bytes")
        let reclaims = try decisions(daemon, policy: "tier_senpai").compactMap(\.tiering).flatMap(\.reclaims)
        let resident = try ProcessMemoryStatus.read(pid: hot.pid).rssAnonBytes
        print("tier-senpai: on a thrashing 128 MiB, \(reclaims.count) reclaims in 12 s, asked (KiB): \(reclaims.map { $0.grantedBytes >> 10 }); \(resident >> 20) MiB resident")
        #expect(!reclaims.isEmpty, "it tried; log:\n\(daemon.log.suffix(3000))")
        // Always under target, its 11 plans after the first would ask 5, 10,
        // 20, 40, then 50 per mille of usage each: 425 per mille in all. Each
        // step's pages come straight back, so it backs off and starts small
        // again (a step whose refaults stay just under target may double once
        // or twice).
        let openLoop = usage * 425 / 1000
        let asked = reclaims.reduce(0) { $0 + $1.grantedBytes }
        #expect(asked * 3 <= openLoop, "\(asked >> 10) KiB asked; without feedback \(openLoop >> 10) KiB")
        #expect(reclaims.count <= 10, "it backs off: \(reclaims.count) reclaims in 12 plans")
        #expect(resident >= 120 * Self.mib, "the hot memory stays resident")
        #expect(try daemon.cli(["unload", "tier_senpai"]).status == 0)
        _ = zram
    }

    @Test func tierSenpaiInTheSystemScopeDemotesTheRegionsQuietTheLongest() throws {
        // Observe mode: the whole machine is in scope, and nothing may move.
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true)
        let daemon = try DaemonProcess(policies: ["tier_senpai": try Self.senpai()])
        let load = try daemon.cli(["load", "tier_senpai", "--scope", "system", "--mode", "observe",
                                   "--set", "stall_target_us_per_s=1000000"])  // the machine's stalls are not this test's
        #expect(load.status == 0, "\(load.output)")
        let observed = { (try? decisions(daemon, policy: "tier_senpai").first { $0.outcome == .observed }) ?? nil }
        #expect(eventually(20) { observed() != nil }, "log:\n\(daemon.log.suffix(3000))")
        let record = try #require(observed())
        let payload = try #require(record.tiering)
        print("tier-senpai: system scope, \(payload.actionsAsked) regions asked, \(payload.demotedBytes >> 20) MiB would move, \(payload.refusedCount) refused; \(TieringKind().summarize(record))")
        #expect(payload.targetsAsked == 0, "no cgroup to reclaim: regions instead")
        #expect(payload.actionsAsked > 0 && payload.demotedBytes > 0)
        #expect(payload.actionsAsked <= Int(MMPOLICY_TIER_MAX_ACTIONS))
        // The daemon and its guardian are never the policy's to move.
        let own = Set([daemon.pid] + daemon.guardians().map(\.pid))
        #expect(!own.isEmpty && payload.processes.allSatisfy { !own.contains($0.pid) }, "\(payload.processes)")
        #expect(try daemon.cli(["unload", "tier_senpai"]).status == 0)
        _ = zram
    }

    @Test func aDaemonKilledWhileTheLimitIsLoweredLeavesItRestored() throws {
        let zram = try ZramSwap(sizeBytes: 1024 * Self.mib, ownDevice: true)
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-reclaim", limitBytes: 2048 * Self.mib)
        let held = try workload(["hold", "--rss", "640M", "--cgroup", memcg.path])
        let original = try limitText(memcg.path)
        let daemon = try DaemonProcess(policies: ["tier_fixed": Self.fixedTarget(maxDemoteMB: 1024)])
        let load = try daemon.cli(["load", "tier_fixed", "--scope", memcg.path, "--mode", "enforce",
                                   "--set", "reclaim_bytes=\(512 * Self.mib)", "--set", "reclaim_plans=1"])
        #expect(load.status == 0, "\(load.output)")
        // The first step takes a quarter; while the next ones reclaim, the limit reads lowered.
        var lowered: String?
        _ = eventually(20) {
            let text = (try? limitText(memcg.path)) ?? original
            if text != original { lowered = text }
            return lowered != nil
        }
        let status = daemon.stop(signal: SIGKILL)
        let loweredText = try #require(lowered, "the limit was seen lowered; log:\n\(daemon.log)")
        print("tiering-reclaim: daemon killed (status \(status)) with memory.limit_in_bytes at \(loweredText.trimmedLine) (original \(original.trimmedLine))")
        #expect(eventually(15) { (try? limitText(memcg.path)) == original }, "the guardian puts it back")
        try daemon.start()
        #expect(try limitText(memcg.path) == original, "and it stays back after a restart")
        let events = try daemon.events()
        #expect(events.contains("memory.limit_in_bytes=\(original.trimmedLine)"), "the restore is recorded: \(events.suffix(2000))")
        #expect(try daemon.cli(["unload", "tier_fixed"]).status == 0)
        #expect(try limitText(memcg.path) == original)
        #expect(ProcessSnapshot.isAlive(pid: held.pid), "no OOM kill")
        _ = zram
    }
}
