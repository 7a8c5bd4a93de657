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

/// Fault injection: a daemon stopped (SIGSTOP) while it holds a v1 memcg's
/// OOM. The guardian, outside the daemon, must hand the OOM to the kernel
/// killer within the policy's deadline plus a margin (1 s by default), in
/// enforce and in observe mode; the daemon, continued, records it and turns
/// the killer off again; a daemon that is late but within the bound still
/// decides, and its record counts from the OOM's onset.
@Suite(.serialized)
struct StoppedDaemonTests {
    static let mib: UInt64 = 1 << 20


    func control(_ memcg: TemporaryMemcg) throws -> MemcgV1.OOMControl {
        try MemcgV1(path: memcg.path).oomControl()
    }

    /// Polls every 2 ms, at most `seconds`, until `memcg` is under OOM; when.
    func onset(of memcg: TemporaryMemcg, within seconds: Double) -> UInt64? {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while monotonicNanoseconds() < deadline {
            if (try? control(memcg).underOOM) == true { return monotonicNanoseconds() }
            usleep(2_000)
        }
        return nil
    }

    /// Stops the daemon, makes `memcg` run out of memory and measures how
    /// long the OOM lasted while the daemon could not act.
    func stoppedDaemonOOM(mode: String) throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-stopped", limitBytes: 64 * Self.mib)
        let load = try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", mode])
        #expect(load.status == 0, "\(load.output)")
        #expect(try control(memcg).oomKillDisable, "\(mode) mode on v1 holds the OOM: the kernel killer is off")
        let killsBefore = try control(memcg).oomKillCount

        kill(daemon.pid, SIGSTOP)
        var continued = false
        defer { if !continued { kill(daemon.pid, SIGCONT) } }
        let grower = try workload(["grow", "--rate", "200M", "--max", "256M", "--cgroup", memcg.path])
        let began = try #require(onset(of: memcg, within: 10), "the memcg runs out of memory")
        #expect(eventually(5) { isGone(grower.pid) }, "the kernel killer resolves the OOM while the daemon is stopped; log:\n\(daemon.log)")
        let lasted = Double(monotonicNanoseconds() - began) / 1e9
        print("stopped-daemon (\(mode)): the OOM lasted \(decimalString(lasted * 1000, places: 0)) ms with the daemon stopped")
        #expect(lasted < 1.5, "handed to the kernel within 1 s of its onset (plus polling slack): \(lasted) s")
        #expect(try control(memcg).oomKillCount > killsBefore, "the kernel killed")
        #expect(try !control(memcg).oomKillDisable, "the guardian left the kernel killer on while the daemon is stopped")

        kill(daemon.pid, SIGCONT)
        continued = true
        #expect(eventually(5) { (try? decisions(daemon, policy: "oom_largest").contains { $0.wokenBy == "guardian" }) == true },
                "the continued daemon records the handover; log:\n\(daemon.log)")
        let record = try #require(try decisions(daemon, policy: "oom_largest").first { $0.wokenBy == "guardian" })
        #expect(record.outcome == .fellBack && record.origin == memcg.path)
        #expect(record.detail.contains("stopped or stuck") && record.detail.contains("guardian"), "\(record.detail)")
        let handedMs = try #require(record.timing.us(OOMStep.handedOver)) / 1000
        #expect(handedMs >= 900 && handedMs < 1200, "handed over at the bound: \(handedMs) ms")
        #expect(eventually(5) { (try? control(memcg).oomKillDisable) == true }, "the daemon holds the memcg's OOMs again once it is over")
        #expect(try daemon.cli(["status"]).output.contains("oom_largest"))
        #expect(daemon.log.contains("handed the OOM in \(memcg.path)"), "the daemon logs it")
        #expect(daemon.stop() == 0, "a clean exit; log:\n\(daemon.log)")
        #expect(try !control(memcg).oomKillDisable, "nothing is left changed in the kernel")
    }

    @Test func aStoppedDaemonsOOMGoesToTheKernelWithinASecond() throws {
        try stoppedDaemonOOM(mode: "enforce")
    }

    @Test func observeModeDoesNotHoldAnOOMWhileTheDaemonIsStopped() throws {
        try stoppedDaemonOOM(mode: "observe")
    }

    @Test func aMemcgMadeWhileTheDaemonIsStoppedIsWatchedToo() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-stopped", limitBytes: 256 * Self.mib)
        #expect(try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        let daemonPID = daemon.pid
        kill(daemonPID, SIGSTOP)
        defer { kill(daemonPID, SIGCONT) }
        // Copies oom_kill_disable=1 at mkdir; the stopped daemon never sees it.
        let child = try memcg.child("late")
        try writeFile(child + "/memory.limit_in_bytes", String(32 * Self.mib))
        #expect(try MemcgV1(path: child).oomControl().oomKillDisable)
        let grower = try workload(["grow", "--rate", "200M", "--max", "256M", "--cgroup", child])
        #expect(eventually(5) { isGone(grower.pid) }, "the guardian found the new memcg and handed its OOM over; log:\n\(daemon.log)")
        #expect(try !MemcgV1(path: child).oomControl().oomKillDisable)
        kill(daemonPID, SIGCONT)
        #expect(daemon.stop() == 0, "a clean exit; log:\n\(daemon.log)")
        for path in [memcg.path, child] { #expect(try !MemcgV1(path: path).oomControl().oomKillDisable, "\(path) is left as it was") }
    }

    @Test func aLateDaemonStillDecidesAndItsRecordCountsFromTheOnset() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-stopped", limitBytes: 96 * Self.mib)
        #expect(try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        let holder = try workload(["hold", "--rss", "16M", "--cgroup", memcg.path])
        let killsBefore = try control(memcg).oomKillCount

        kill(daemon.pid, SIGSTOP)
        var continued = false
        defer { if !continued { kill(daemon.pid, SIGCONT) } }
        let grower = try workload(["grow", "--rate", "200M", "--max", "256M", "--cgroup", memcg.path])
        _ = try #require(onset(of: memcg, within: 10), "the memcg runs out of memory")
        usleep(400_000)
        kill(daemon.pid, SIGCONT)
        continued = true

        #expect(eventually(5) { isGone(grower.pid) }, "log:\n\(daemon.log)")
        #expect(!isGone(holder.pid), "one victim: the largest")
        #expect(eventually(5) { (try? decisions(daemon, policy: "oom_largest").contains { $0.outcome == .carriedOut }) == true },
                "log:\n\(daemon.log)")
        let record = try #require(try decisions(daemon, policy: "oom_largest").first { $0.outcome == .carriedOut })
        #expect(try control(memcg).oomKillCount == killsBefore, "the daemon's policy decided, not the kernel")
        let wokeMs = try #require(record.timing.wakeUs, "the record knows when the OOM began") / 1000
        print("late-daemon: woke \(decimalString(wokeMs, places: 1)) ms after the OOM began")
        #expect(wokeMs >= 350 && wokeMs < 900, "the daemon woke ~400 ms late: \(wokeMs) ms")
        let events = try daemon.events(["--policy", "oom_largest"])
        #expect(events.contains("since the OOM began: woke"), "\(events)")
        #expect(try decisions(daemon, policy: "oom_largest").allSatisfy { $0.wokenBy != "guardian" }, "no handover within the bound")
        _ = holder
    }
}
