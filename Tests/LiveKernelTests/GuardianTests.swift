#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import BPFKit
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The dead-man's switch, end to end: a real daemon with `oom_largest` in
/// enforce mode on real v1 memcgs (the kernel OOM killer off), killed with
/// SIGKILL, stopped with SIGTERM, started twice on one state directory, and
/// raced by its own restart. Every wait is bounded; every daemon, guardian,
/// workload and memcg a test makes is gone when it ends, pass or fail.
@Suite(.serialized)
struct GuardianTests {
    static let mib: UInt64 = 1 << 20

    func killerDisabled(_ memcg: String) throws -> Bool {
        try readFile(memcg + "/memory.oom_control").contains("oom_kill_disable 1")
    }

    /// Polls every 10 ms until no memcg of `memcgs` has the kernel killer off,
    /// at most `seconds`; the seconds since `since` when that was first seen.
    func secondsUntilKillerOn(_ memcgs: [String], since: UInt64, within seconds: Double) -> Double? {
        let deadline = since + UInt64(seconds * 1e9)
        while true {
            let now = monotonicNanoseconds()
            if memcgs.allSatisfy({ (try? killerDisabled($0)) == false }) { return Double(now - since) / 1e9 }
            if now >= deadline { return nil }
            usleep(10_000)
        }
    }

    /// True if every memcg of `memcgs` keeps the kernel killer off for
    /// `seconds`, sampled every 10 ms.
    func killerStaysOff(_ memcgs: [String], for seconds: Double) -> Bool {
        let end = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while monotonicNanoseconds() < end {
            guard memcgs.allSatisfy({ (try? killerDisabled($0)) == true }) else { return false }
            usleep(10_000)
        }
        return true
    }

    /// What each open descriptor of `pid` refers to (readlink of /proc/PID/fd/N).
    func descriptorTargets(_ pid: Int32) -> [String] {
        guard let directory = opendir("/proc/\(pid)/fd") else { return [] }
        defer { closedir(directory) }
        var targets: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != ".", name != ".." else { continue }
            var buffer = [CChar](repeating: 0, count: 4096)
            let n = readlink("/proc/\(pid)/fd/\(name)", &buffer, buffer.count - 1)
            if n > 0 { targets.append("\(name) -> " + String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)) }
        }
        return targets
    }

    func journal(_ daemon: DaemonProcess) throws -> [KnobJournalEntry] {
        try StateStore(directory: daemon.stateDirectory).journalEntries()
    }

    func storedEvents(_ daemon: DaemonProcess) throws -> [EventRecord] {
        try StateStore(directory: daemon.stateDirectory).events(EventQuery(limit: 1000))
    }

    /// Starts a daemon, a memcg with a child, and `oom_largest` in enforce mode on it.
    func enforcing(limitBytes: UInt64 = 64 * mib) throws -> (DaemonProcess, TemporaryMemcg, [String]) {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-guard", limitBytes: limitBytes)
        let child = try memcg.child("batch")
        let load = try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status == 0, "\(load.output)")
        return (daemon, memcg, [memcg.path, child])
    }

    @Test func aKilledDaemonsGuardianHandsOOMsBackToTheKernelWithinASecond() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        for path in memcgs { #expect(try killerDisabled(path), "enforce mode on v1 disables the kernel killer on \(path)") }
        let guardian = try #require(daemon.guardians().first, "a guardian runs; log:\n\(daemon.log)")
        #expect(daemon.guardians().count == 1 && guardian.ppid == daemon.pid)
        let status = try readFile("/proc/\(guardian.pid)/status")
        let rss = status.split(separator: "\n").filter { $0.hasPrefix("VmRSS") || $0.hasPrefix("RssAnon") || $0.hasPrefix("RssFile") }
        print("guardian-idle: pid \(guardian.pid) \(rss.map { $0.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ") }.joined(separator: ", "))")
        #expect(try readFile("/proc/\(guardian.pid)/stat").split(separator: " ")[5] != String(daemon.pid), "a session of its own")
        let held = descriptorTargets(guardian.pid)
        #expect(!held.contains { $0.contains("bpf") || $0.contains(daemon.stateDirectory) || $0.contains("mmpolicy.sock") },
                "the guardian holds nothing of the daemon's: \(held)")

        // Made just before the kill: it copies the disabled killer and the
        // daemon (which looks at the tree once a second) may not have journaled it.
        let late = try memcg.child("late")
        #expect(try killerDisabled(late))
        let daemonPID = daemon.pid
        let killed = monotonicNanoseconds()
        kill(daemonPID, SIGKILL)
        // Measured from the signal, not from reaping the daemon (its BPF objects take a while to tear down).
        let seconds = secondsUntilKillerOn(memcgs + [late], since: killed, within: 5)
        #expect(daemon.stop(signal: SIGKILL) == 128 + SIGKILL)
        let measured = try #require(seconds, "the kernel killer is back on every memcg; log:\n\(daemon.log)")
        print("guardian-timing: oom_kill_disable=0 on \(memcgs.count + 1) memcgs \(decimalString(measured * 1000, places: 1)) ms after SIGKILL")
        #expect(measured <= 1.0)
        #expect(reap(guardian.pid, timeoutSeconds: 5) == 0, "the guardian exits 0 once it restored everything")
        #expect(daemon.guardians().isEmpty)

        // A task that hits the limit now is killed by the kernel instead of waiting.
        let grower = try workload(["grow", "--rate", "200M", "--max", "256M", "--cgroup", memcgs[1]])
        #expect(eventually(15) { isGone(grower.pid) }, "the kernel OOM killer resolves the OOM")
        let kills = try MemcgV1(path: memcgs[1]).oomControl().oomKillCount
        #expect(kills >= 1)

        let note = try #require(try storedEvents(daemon).last { $0.type == .note && $0.summary.contains("guardian pid \(guardian.pid)") })
        print("guardian-note: \(note.summary)")
        #expect(note.summary.contains("daemon pid \(daemonPID) ended without a clean shutdown"), "\(note.summary)")
        for path in memcgs + [late] { #expect(note.summary.contains(path + "/memory.oom_control=0"), "\(note.summary)") }
        #expect(try journal(daemon).isEmpty, "every journaled knob is restored and forgotten")
    }

    @Test func aDaemonRestartedAfterACrashTakesOverCleanly() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        let first = try #require(daemon.guardians().first)
        daemon.stop(signal: SIGKILL)
        #expect(secondsUntilKillerOn(memcgs, since: monotonicNanoseconds(), within: 5) != nil)
        #expect(reap(first.pid, timeoutSeconds: 5) == 0)

        let restarted = wallClockNanoseconds()
        try daemon.start()
        let status = try daemon.cli(["status"])
        #expect(status.output.contains("oom_largest") && status.output.contains(memcg.path), "the desired policy is back: \(status.output)")
        #expect(eventually(5) { memcgs.allSatisfy { (try? killerDisabled($0)) == true } }, "the new daemon disables the killer again")
        let entries = try journal(daemon)
        #expect(Set(entries.map(\.path)) == Set(memcgs.map { $0 + "/memory.oom_control" }), "\(entries)")
        #expect(entries.allSatisfy { $0.owner == "oom_largest" && $0.original == "0" && $0.recordedNs >= restarted },
                "only the new daemon's own writes are journaled: \(entries)")
        let guardians = daemon.guardians()
        #expect(guardians.count == 1 && guardians.first?.ppid == daemon.pid && guardians.first?.pid != first.pid,
                "exactly one fresh guardian, the new daemon's: \(guardians.map(\.pid))")
        let events = try storedEvents(daemon)
        #expect(events.contains { $0.summary.contains("guardian pid \(first.pid)") })
        #expect(!events.contains { $0.summary.contains("a previous daemon left changed") },
                "the guardian left nothing for the new daemon to restore")
    }

    @Test func sigtermStopsTheDaemonAndItsGuardian() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        let guardian = try #require(daemon.guardians().first)
        #expect(daemon.stop() == 0, "a clean exit; log:\n\(daemon.log)")
        #expect(eventually(2) { isGone(guardian.pid) }, "the guardian exits with its daemon")
        #expect(daemon.guardians().isEmpty)
        #expect(reap(guardian.pid, timeoutSeconds: 0) == -1, "the daemon reaped it itself")
        for path in memcgs { #expect(try !killerDisabled(path)) }
        #expect(try journal(daemon).isEmpty)
        let events = try storedEvents(daemon)
        #expect(events.last?.type == .daemonStop)
        #expect(!events.contains { $0.summary.hasPrefix("guardian pid") }, "after a clean exit the guardian restores nothing")
    }

    @Test func aGuardianKilledWhileTheDaemonRunsIsReplaced() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        let first = try #require(daemon.guardians().first)
        kill(first.pid, SIGKILL)
        #expect(eventually(10) { daemon.guardians().contains { $0.pid != first.pid && $0.ppid == daemon.pid } },
                "the daemon starts another guardian; log:\n\(daemon.log)")
        #expect(daemon.guardians().count == 1)
        for path in memcgs { #expect(try killerDisabled(path), "the guardian's death changes nothing") }
        let events = try daemon.events()
        #expect(events.contains("the guardian (pid \(first.pid)) ended while the daemon runs (killed by signal 9)"), "\(events)")

        let second = try #require(daemon.guardians().first)
        kill(daemon.pid, SIGKILL)
        #expect(secondsUntilKillerOn(memcgs, since: monotonicNanoseconds(), within: 5) != nil, "the replacement guards as well")
        #expect(daemon.stop(signal: SIGKILL) == 128 + SIGKILL)
        #expect(reap(second.pid, timeoutSeconds: 5) == 0)
    }

    @Test func aSecondDaemonOnTheSameStateDirectoryIsRefused() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        let second = try runBounded(TestPaths.product("mmpolicy"),
                                    ["daemon", "--socket", daemon.socket, "--state-dir", daemon.stateDirectory,
                                     "--policy-dir", daemon.policyDirectory],
                                    environment: ["MMPOLICY_OBJECT_PATH=\(TestPaths.objectDirectory)", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
                                    timeoutSeconds: 20)
        #expect(second.status != nil && second.status != 0, "it exits with an error: \(second.output)")
        #expect(second.output.contains("state directory \(daemon.stateDirectory) is in use"), "\(second.output)")
        #expect(second.output.contains("pid \(daemon.pid)") && second.output.contains("--state-dir"), "\(second.output)")
        #expect(second.seconds >= 2.5, "it waited for the lock before giving up (\(second.seconds) s)")

        let status = try daemon.cli(["status"])
        #expect(status.status == 0 && status.output.contains("pid \(daemon.pid)") && status.output.contains("oom_largest"),
                "the first daemon still answers on its socket: \(status.output)")
        for path in memcgs { #expect(try killerDisabled(path)) }
        #expect(daemon.guardians().count == 1)
    }

    @Test func aRestartRacingTheOldGuardianEndsInTheNewDaemonsState() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        for round in 1...3 {
            let old = try #require(daemon.guardians().first, "round \(round)")
            daemon.stop(signal: SIGKILL)
            try daemon.start()
            #expect(reap(old.pid, timeoutSeconds: 5) == 0, "round \(round): the old guardian is done")
            #expect(eventually(5) { memcgs.allSatisfy { (try? killerDisabled($0)) == true } }, "round \(round)")
            #expect(killerStaysOff(memcgs, for: 0.5), "round \(round): nothing undoes the new daemon's work")
            let restoredByOld = try storedEvents(daemon).contains { $0.summary.contains("guardian pid \(old.pid)") }
            print("guardian-race: round \(round): the old guardian \(restoredByOld ? "restored before the new daemon took the lock" : "left the restore to the new daemon")")
            #expect(try daemon.cli(["status"]).output.contains("oom_largest"))
            #expect(Set(try journal(daemon).map(\.owner)) == ["oom_largest"])
            #expect(daemon.guardians().map(\.ppid) == [daemon.pid], "round \(round): one guardian, the new daemon's")
        }
    }

    @Test func anOldGuardianLateToTheLockLeavesTheNewDaemonAlone() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        let old = try #require(daemon.guardians().first)
        let oldDaemon = daemon.pid
        // Hold the old guardian back so the new daemon gets the lock first.
        kill(old.pid, SIGSTOP)
        defer { kill(old.pid, SIGCONT) }
        daemon.stop(signal: SIGKILL)
        try daemon.start()
        #expect(memcgs.allSatisfy { (try? killerDisabled($0)) == true })
        let events = try storedEvents(daemon)
        #expect(events.contains { $0.summary.contains("a previous daemon left changed") },
                "the new daemon restored the old one's knobs itself at start")

        kill(old.pid, SIGCONT)
        #expect(reap(old.pid, timeoutSeconds: 5) == 0, "the old guardian ends without an error")
        #expect(killerStaysOff(memcgs, for: 1.0), "and without touching a knob")
        #expect(daemon.log.contains("guardian pid \(old.pid): daemon pid \(oldDaemon) died, but daemon pid \(daemon.pid) already holds"),
                "log:\n\(daemon.log)")
        #expect(!(try storedEvents(daemon)).contains { $0.summary.contains("guardian pid \(old.pid)") })
        #expect(daemon.guardians().map(\.ppid) == [daemon.pid])
    }
}
