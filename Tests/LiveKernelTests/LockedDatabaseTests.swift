#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import BPFKit
import GRDB
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Fault injection: another process holds the state database's write lock
/// (someone's `sqlite3` with an open transaction) for longer than SQLite's
/// busy timeout while a governed memcg runs out of memory. The OOM is
/// resolved at once; the decision and every other event are written once
/// the lock goes, none lost, and `status` never reports a loss.
@Suite(.serialized)
struct LockedDatabaseTests {
    static let mib: UInt64 = 1 << 20

    @Test func anOOMDuringALongLockIsResolvedAndItsRecordIsKept() throws {
        let daemon = try DaemonProcess()
        let memcg = try TemporaryMemcg(prefix: "mmpolicy-locked", limitBytes: 96 * Self.mib)
        #expect(try daemon.cli(["load", "oom_largest", "--scope", memcg.path, "--mode", "enforce"]).status == 0)
        let holder = try workload(["hold", "--rss", "16M", "--cgroup", memcg.path])

        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = true  // the BEGIN stays open across accesses
        let lock = try DatabaseQueue(path: daemon.stateDirectory + "/state.sqlite", configuration: configuration)
        try execute(lock, "BEGIN IMMEDIATE")
        var locked = true
        defer { if locked { try? execute(lock, "ROLLBACK") } }

        let started = monotonicNanoseconds()
        let grower = try workload(["grow", "--rate", "200M", "--max", "256M", "--cgroup", memcg.path])
        #expect(eventually(3) { isGone(grower.pid) }, "the policy kills while the database is locked; log:\n\(daemon.log)")
        let resolvedMs = Double(monotonicNanoseconds() - started) / 1e6
        print("locked-database: the grower was killed \(decimalString(resolvedMs, places: 0)) ms after it started")
        #expect(!isGone(holder.pid))
        // Past SQLite's 5 s busy timeout: the daemon's event writes fail and are retried.
        usleep(6_500_000)
        try execute(lock, "ROLLBACK")
        locked = false

        let events = try JSONDecoder().decode([EventRecord].self, from: Data(daemon.events(["--policy", "oom_largest"]).utf8))
        let decision = try #require(events.compactMap(\.decision).first { $0.outcome == .carriedOut },
                                    "the decision made during the lock is kept: \(events.map(\.summary))")
        #expect(decision.origin == memcg.path)
        let status = try daemon.cli(["status", "--json"]).output
        #expect(!status.contains("lostEvents") || status.contains("\"lostEvents\" : 0"), "nothing lost: \(status)")
        #expect(daemon.log.contains("locked by another process"), "the wait is logged")
        #expect(daemon.stop() == 0, "a clean exit; log:\n\(daemon.log)")
        #expect(try !MemcgV1(path: memcg.path).oomControl().oomKillDisable, "nothing is left changed in the kernel")
    }
}
