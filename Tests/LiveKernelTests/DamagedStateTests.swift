#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A damaged state database and a knob journal that cannot be written,
/// against real v1 memcgs: the kernel OOM killer is back on wherever
/// mmpolicy could have turned it off, the damaged file is moved aside (never
/// deleted), `status`, the log and the audit trail say what happened, and no
/// policy shows as enforcing where the kernel's killer is on. Every memcg a
/// test makes, and the daemon, are gone when it ends, pass or fail; the
/// sweeps here reach only the test's own memcgs (the desired set's scopes).
@Suite(.serialized)
struct DamagedStateTests {
    static let mib: UInt64 = 1 << 20

    /// What these tests read of `status --json`.
    struct Status: Decodable {
        struct Policy: Decodable { var name: String; var mode: String; var degraded: [String]? }
        struct Failed: Decodable { var name: String; var error: String }
        var policies: [Policy]
        var failedPolicies: [Failed]
        var stateProblems: [StateProblem]
    }

    func status(_ daemon: DaemonProcess) throws -> Status {
        let output = try daemon.cli(["status", "--json"]).output
        return try JSONDecoder().decode(Status.self, from: Data(output.utf8))
    }

    func killerOff(_ memcg: String) -> Bool {
        ((try? readFile(memcg + "/memory.oom_control")) ?? "").contains("oom_kill_disable 1")
    }

    /// Files in the state directory moved aside as damaged.
    func damagedFiles(_ daemon: DaemonProcess) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: daemon.stateDirectory).filter { $0.contains(".damaged-") }.sorted()
    }

    /// Kills the daemon and its guardian together (the guardian held back
    /// first, so it restores nothing): the knobs stay as the daemon left them.
    func crashWithGuardian(_ daemon: DaemonProcess) throws {
        let guardians = daemon.guardians()
        try #require(guardians.count == 1, "one guardian runs")
        for guardian in guardians { kill(guardian.pid, SIGSTOP) }
        daemon.stop(signal: SIGKILL)
        for guardian in guardians {
            kill(guardian.pid, SIGKILL)
            _ = reap(guardian.pid, timeoutSeconds: 5)
        }
    }

    /// A daemon, a memcg with a child, and `oom_largest` enforcing on it (the kernel killer off on both).
    func enforcing() throws -> (DaemonProcess, TemporaryMemcg, [String]) {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-damaged", limitBytes: 64 * Self.mib)
        let child = try memcg.child("batch")
        let load = try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"])
        try #require(load.status == 0, "\(load.output)")
        try #require(killerOff(memcg.path) && killerOff(child))
        return (daemon, memcg, [memcg.path, child])
    }

    @Test func aCrashedDaemonsKillersComeBackOnWhenItsJournalPageIsCorrupt() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        try crashWithGuardian(daemon)
        #expect(memcgs.allSatisfy(killerOff), "the crash left the kernel killer off")
        try DatabaseDamage.corruptRootPage(of: "knob_journal", in: daemon.stateDirectory + "/state.sqlite")
        // The policy cannot come back, so the start's own work is what is seen.
        let manifest = daemon.policyDirectory + "/oom_largest.toml"
        let text = try readFile(manifest)
        #expect(unlink(manifest) == 0)

        try daemon.start()
        #expect(!memcgs.contains(where: killerOff), "the kernel killer is back on without the journal; log:\n\(daemon.log)")
        let moved = try damagedFiles(daemon)
        #expect(moved.contains { $0.hasPrefix("state.sqlite.damaged-") && !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") }, "\(moved)")
        let aside = daemon.stateDirectory + "/" + (moved.first { !$0.hasSuffix("-wal") && !$0.hasSuffix("-shm") } ?? "?")
        var info = stat()
        #expect(stat(aside, &info) == 0 && info.st_size > 0, "the damaged file is kept")
        let shown = try status(daemon)
        #expect(shown.stateProblems.map(\.area) == ["database", "journal"], "\(shown.stateProblems)")
        #expect(shown.stateProblems.first?.message.contains(aside) == true)
        #expect(shown.stateProblems.last?.message.contains(memcg.path) == true, "the sweep names what it reset")
        #expect(shown.failedPolicies.map(\.name) == ["oom_largest"], "the salvaged desired set was tried")
        let human = try daemon.cli(["status"]).output
        #expect(human.contains("STATE DATABASE PROBLEMS"), "\(human)")
        #expect(try daemon.events().contains("the knob journal could not be read"))
        #expect(daemon.log.contains("error") && daemon.log.contains("damaged"))

        // The fresh database works: an enforce load turns the killer off, journaled, and SIGTERM puts it back.
        _ = try scratchWrite(manifest, text)
        let load = try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status == 0, "\(load.output)")
        #expect(killerOff(memcg.path))
        #expect(daemon.stop() == 0)
        #expect(!memcgs.contains(where: killerOff), "nothing is left with the killer off")
        #expect(try damagedFiles(daemon) == moved, "the damaged file stays where it was put")
    }

    @Test func aCorruptDesiredSetIsReportedLostAndTheJournalStillRestores() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        try crashWithGuardian(daemon)
        try DatabaseDamage.corruptRootPage(of: "desired_policy", in: daemon.stateDirectory + "/state.sqlite")

        try daemon.start()
        #expect(!memcgs.contains(where: killerOff), "restored from the salvaged journal; log:\n\(daemon.log)")
        let shown = try status(daemon)
        #expect(shown.policies.isEmpty && shown.failedPolicies.isEmpty)
        #expect(shown.stateProblems.map(\.area) == ["database", "desired-set"], "\(shown.stateProblems)")
        #expect(shown.stateProblems.last?.message.contains("no saved policies") == true)
        #expect(try daemon.events().contains("a previous daemon left changed"))
        #expect(try !damagedFiles(daemon).isEmpty)

        let load = try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"])
        #expect(load.status == 0, "\(load.output)")
        #expect(killerOff(memcg.path))
        #expect(daemon.stop() == 0)
        #expect(!memcgs.contains(where: killerOff))
    }

    @Test func aGuardianWhoseJournalIsCorruptTurnsTheKillersBackOn() throws {
        let (daemon, memcg, memcgs) = try enforcing()
        defer { withExtendedLifetime((daemon, memcg)) {} }
        let guardian = try #require(daemon.guardians().first)
        kill(guardian.pid, SIGSTOP)
        daemon.stop(signal: SIGKILL)
        try DatabaseDamage.corruptRootPage(of: "knob_journal", in: daemon.stateDirectory + "/state.sqlite")
        kill(guardian.pid, SIGCONT)
        #expect(reap(guardian.pid, timeoutSeconds: 10) == 1, "the guardian says not everything came from the journal")
        #expect(!memcgs.contains(where: killerOff), "log:\n\(daemon.log)")
        #expect(daemon.log.contains("the knob journal could not be read") && daemon.log.contains(memcg.path), "\(daemon.log)")
    }

    @Test func aJournalThatCannotBeWrittenLeavesTheKernelKillerOnAndSaysSo() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-damaged", limitBytes: 64 * Self.mib)
        let database = daemon.stateDirectory + "/state.sqlite"
        defer { try? DatabaseDamage.heal("knob_journal", in: database) }
        try DatabaseDamage.refuseInserts(into: "knob_journal", in: database)

        // An enforce load whose knobs cannot be journaled is refused, and nothing is left changed.
        let refused = try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"])
        #expect(refused.status != 0)
        #expect(refused.output.contains("knob journal could not be written"), "\(refused.output)")
        #expect(!killerOff(memcg.path))
        var shown = try status(daemon)
        #expect(shown.policies.isEmpty)
        #expect(shown.stateProblems.first { $0.area == "journal" }?.message.contains("writing the knob journal failed") == true,
                "\(shown.stateProblems)")

        try DatabaseDamage.heal("knob_journal", in: database)
        let loaded = try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"])
        #expect(loaded.status == 0, "\(loaded.output)")
        #expect(killerOff(memcg.path))
        #expect(try status(daemon).stateProblems.isEmpty, "a write that works again clears the problem")

        // A memcg made while the journal refuses writes: it copied "off" from its parent at mkdir;
        // the engine cannot journal it, so turns its killer back on and says so.
        try DatabaseDamage.refuseInserts(into: "knob_journal", in: database)
        let child = try memcg.child("late")
        #expect(eventually(5) { !killerOff(child) && (try? status(daemon).policies.first?.degraded?.isEmpty == false) == true },
                "log:\n\(daemon.log)")
        shown = try status(daemon)
        #expect(shown.policies.first?.degraded?.first?.contains(child) == true, "\(shown.policies)")
        #expect(try daemon.cli(["status"]).output.contains("DEGRADED"))
        #expect(!killerOff(child), "the kernel resolves its OOMs meanwhile")

        try DatabaseDamage.heal("knob_journal", in: database)
        #expect(eventually(5) { killerOff(child) && (try? status(daemon).policies.first?.degraded == nil) == true },
                "governed once the journal takes it; log:\n\(daemon.log)")
        #expect(daemon.stop() == 0)
        #expect(!killerOff(memcg.path) && !killerOff(child), "nothing is left with the killer off")
    }

    /// Writes `text` to `path` (created 0644).
    func scratchWrite(_ path: String, _ text: String) throws -> String {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DaemonHarnessError.spawn(errno: errno) }
        defer { close(fd) }
        _ = text.withCString { write(fd, $0, strlen($0)) }
        return path
    }
}
