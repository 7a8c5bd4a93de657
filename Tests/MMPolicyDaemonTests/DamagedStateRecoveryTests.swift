import BPFKit
import Foundation
import Synchronization
import MMPolicyCore
import MMPolicyTestSupport
import Testing
@testable import MMPolicyDaemon

#if canImport(Glibc)
import Glibc
#endif

/// A damaged state database at the daemon's start: found by the integrity
/// check, salvaged, moved aside (never deleted or overwritten), replaced by
/// a fresh one, and reported.
@Suite("DamagedStateRecovery")
struct DamagedStateRecoveryTests {
    static let policy = DesiredPolicy(name: "batch", source: "oom_largest", scope: "/sys/fs/cgroup/memory/batch", mode: "enforce",
                                      overrides: [.init(key: "min_points", value: "10")], addedNs: 42)
    static let entry = KnobJournalEntry(path: "/sys/fs/cgroup/memory/batch/memory.oom_control", original: "0", owner: "batch",
                                        recordedNs: 7)

    /// A state directory whose database holds one desired policy, one journal
    /// entry and `events` events, closed.
    func populated(events: Int = 3) throws -> ScratchDirectory {
        let scratch = try ScratchDirectory()
        do {
            let store = try StateStore(directory: scratch.path)
            try store.setDesired(Self.policy)
            try store.importJournal([Self.entry])
            try store.append(contentsOf: (0..<events).map {
                EventRecord(timeNs: Int64($0), type: .note, policy: nil, summary: "event \($0)")
            })
        }
        return scratch
    }

    func files(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    }

    @Test func aHealthyDatabaseOpensAsItIs() throws {
        let scratch = try populated()
        let health = StateHealth()
        let (store, damage) = try DamagedStateRecovery.open(directory: scratch.path, health: health)
        #expect(damage == nil)
        #expect(try store.desiredPolicies() == [Self.policy])
        #expect(try store.journalEntries() == [Self.entry])
        #expect(health.problems.isEmpty)
        #expect(try files(scratch.path).allSatisfy { !$0.contains("damaged") })
    }

    @Test func theIntegrityCheckFindsACorruptJournalPage() throws {
        let scratch = try populated()
        try DatabaseDamage.corruptRootPage(of: "knob_journal", in: scratch.path + "/state.sqlite")
        let error = #expect(throws: StateStoreError.self) { try StateStore(directory: scratch.path) }
        #expect(error?.kind == .damaged)
        #expect(error?.isDamage == true)
        #expect(error?.description.contains("quick_check") == true, "\(String(describing: error))")
        // Without the check (the guardian's way) it opens, and reading the journal fails.
        let unchecked = try StateStore(directory: scratch.path, checkIntegrity: false)
        #expect(throws: StateStoreError.self) { try unchecked.journalEntries() }
        #expect(unchecked.health.problems.map(\.area) == ["journal"])
    }

    @Test func aCorruptJournalIsMovedAsideAndTheDesiredSetSalvaged() throws {
        let scratch = try populated()
        let path = scratch.path + "/state.sqlite"
        try DatabaseDamage.corruptRootPage(of: "knob_journal", in: path)
        let damagedBytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let health = StateHealth()
        let now: Int64 = 1_795_000_000 * 1_000_000_000  // 2026-11-18T11:06:40Z
        let (store, damage) = try DamagedStateRecovery.open(directory: scratch.path, health: health, nowNs: now)
        let found = try #require(damage)

        let aside = scratch.path + "/state.sqlite.damaged-20261118T110640Z"
        #expect(found.movedTo.first == aside)
        #expect(try Data(contentsOf: URL(fileURLWithPath: aside)) == damagedBytes, "moved as it was, not written to")
        #expect(throws: (any Error).self) { try found.journal.get() }
        #expect(try found.desiredSet.get() == [Self.policy])
        // The fresh database: the salvaged desired set, an empty journal, no old events.
        #expect(try store.desiredPolicies() == [Self.policy])
        #expect(try store.journalEntries().isEmpty)
        #expect(try store.eventCount() == 0)
        #expect(try StateStore(directory: scratch.path).desiredPolicies() == [Self.policy], "the fresh file passes the check")
        let problems = health.problems
        #expect(problems.map(\.area) == ["database"])
        #expect(problems.first?.message.contains(aside) == true)
        #expect(problems.first?.message.contains("knob journal could NOT be read") == true, "\(problems)")
    }

    @Test func aCorruptDesiredSetIsReportedLostAndTheJournalSalvaged() throws {
        let scratch = try populated()
        try DatabaseDamage.corruptRootPage(of: "desired_policy", in: scratch.path + "/state.sqlite")
        let health = StateHealth()
        let (store, damage) = try DamagedStateRecovery.open(directory: scratch.path, health: health)
        let found = try #require(damage)
        #expect(try found.journal.get() == [Self.entry])
        #expect(throws: (any Error).self) { try found.desiredSet.get() }
        #expect(try store.desiredPolicies().isEmpty)
        #expect(health.problems.map(\.area) == ["database", "desired-set"])
        #expect(health.problems.last?.message.contains("starts with no saved policies") == true)
    }

    @Test func aFileThatIsNotADatabaseIsMovedAside() throws {
        let scratch = try populated()
        let path = scratch.path + "/state.sqlite"
        try DatabaseDamage.overwriteHeader(path)
        let health = StateHealth()
        let now: Int64 = 1_795_000_000 * 1_000_000_000
        let base = "state.sqlite.damaged-20261118T110640Z"
        do {
            let (store, damage) = try DamagedStateRecovery.open(directory: scratch.path, health: health, nowNs: now)
            let found = try #require(damage)
            #expect(throws: (any Error).self) { try found.journal.get() }
            #expect(throws: (any Error).self) { try found.desiredSet.get() }
            #expect(found.movedTo.first == scratch.path + "/" + base)
            #expect(try store.desiredPolicies().isEmpty)
            #expect(health.problems.map(\.area) == ["database", "desired-set"])
        }

        // A second damage in the same second does not replace the first.
        try DatabaseDamage.overwriteHeader(path)
        let (_, again) = try DamagedStateRecovery.open(directory: scratch.path, health: StateHealth(), nowNs: now)
        #expect(again?.movedTo.first == scratch.path + "/" + base + "-2")
        #expect(access(scratch.path + "/" + base, F_OK) == 0)
    }

    @Test func theDatabaseMovesAsideWithTheFilesBesideIt() throws {
        let scratch = try ScratchDirectory()
        for name in ["state.sqlite", "state.sqlite-wal", "state.sqlite-shm"] { _ = try scratch.write(name, name) }
        let now: Int64 = 1_795_000_000 * 1_000_000_000
        let moved = try DamagedStateRecovery.moveAside(directory: scratch.path, nowNs: now)
        let base = scratch.path + "/state.sqlite.damaged-20261118T110640Z"
        #expect(moved == [base, base + "-wal", base + "-shm"])
        #expect(try readFile(base + "-wal") == "state.sqlite-wal")
        #expect(try files(scratch.path) == ["state.sqlite.damaged-20261118T110640Z", "state.sqlite.damaged-20261118T110640Z-shm",
                                            "state.sqlite.damaged-20261118T110640Z-wal"])
    }

    @Test func healthReportsAFailureOnceAndClearsItOnSuccess() throws {
        let scratch = try populated()
        let recorded = Recorded()
        let health = StateHealth()
        health.connect { recorded.append($0) }
        let store = try StateStore(directory: scratch.path, health: health)
        try DatabaseDamage.refuseInserts(into: "knob_journal", in: store.path)
        for _ in 0..<3 {
            #expect(throws: StateStoreError.self) { try store.journalOriginal(path: "/x", original: "0", owner: "p") }
        }
        #expect(health.problems.map(\.area) == ["journal"])
        #expect(health.problems.first?.failures == 3)
        #expect(health.problems.first?.message.contains("writing the knob journal failed") == true)
        #expect(recorded.summaries.count == 1, "recorded once, not per failure")

        try DatabaseDamage.heal("knob_journal", in: store.path)
        #expect(try store.journalOriginal(path: "/x", original: "0", owner: "p"))
        #expect(health.problems.isEmpty)
        #expect(recorded.summaries.last?.contains("works again") == true)

        health.report(.database, "found at start")
        _ = try store.journalEntries()
        #expect(health.problems.map(\.message) == ["found at start"], "a finding stays")
    }

    @Test func theSweepRootsAreTheDesiredSetsV1ScopesOrTheWholeHierarchy() {
        let v1 = MemoryCgroupMount(version: .v1, path: "/sys/fs/cgroup/memory")
        func policy(_ scope: String) -> DesiredPolicy {
            DesiredPolicy(name: "p", source: "s", scope: scope, mode: "enforce", overrides: [], addedNs: 0)
        }
        let desired = [policy("/sys/fs/cgroup/memory/a"), policy("/sys/fs/cgroup/memory/a/b"), policy("system"),
                       policy("/sys/fs/cgroup/memory/c")]
        #expect(KnobRecovery.sweepRoots(desiredSet: .success(desired), mount: v1).roots
                == ["/sys/fs/cgroup/memory/a", "/sys/fs/cgroup/memory/c"])
        #expect(KnobRecovery.sweepRoots(desiredSet: .success([policy("system")]), mount: v1).roots.isEmpty)
        let unreadable = StateStoreError(kind: .notADatabase, path: "/s", operation: "read", underlying: nil, fix: "")
        let whole = KnobRecovery.sweepRoots(desiredSet: .failure(unreadable), mount: v1)
        #expect(whole.roots == ["/sys/fs/cgroup/memory"])
        #expect(whole.rule.contains("every memcg of the v1 hierarchy"))
        #expect(KnobRecovery.sweepRoots(desiredSet: .failure(unreadable),
                                        mount: MemoryCgroupMount(version: .v2, path: "/sys/fs/cgroup")).roots.isEmpty)
        #expect(KnobRecovery.sweepRoots(desiredSet: .failure(unreadable), mount: nil).roots.isEmpty)
    }
}

/// Events handed to a sink, for assertions.
final class Recorded: Sendable {
    private let events = Mutex<[EventRecord]>([])
    func append(_ event: EventRecord) { events.withLock { $0.append(event) } }
    var summaries: [String] { events.withLock { $0.map(\.summary) } }
}
