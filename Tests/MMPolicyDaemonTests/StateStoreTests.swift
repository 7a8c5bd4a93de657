import BPFKit
import Foundation
import GRDB
import MMPolicyCore
import MMPolicyTestSupport
import Testing
@testable import MMPolicyDaemon

@Suite("StateStore")
struct StateStoreTests {
    // MARK: helpers

    static func event(_ time: Int64, _ type: EventRecord.EventType = .note, policy: String? = "p",
                      _ summary: String = "", decision: DecisionRecord? = nil) -> EventRecord {
        EventRecord(timeNs: time, type: type, policy: policy, summary: summary.isEmpty ? "event at \(time)" : summary,
                    decision: decision)
    }

    /// A kind's payload, as the store sees it: opaque JSON.
    struct TestPayload: DecisionPayloadBody {
        static let version = 3
        var victim: Int32?
        var values: [Int64]
    }

    static func decision(_ time: Int64, policy: String = "p", _ outcome: DecisionRecord.Outcome,
                         victim: Int32? = nil, kernel: Int32? = nil) -> EventRecord {
        event(time, .decision, policy: policy, "decision at \(time)",
              decision: DecisionRecord(kind: PolicyKind(rawValue: "test"), trigger: "test", scope: "system", origin: "system",
                                       mode: outcome == .observed ? .observe : .enforce, outcome: outcome,
                                       agreement: kernel.map { .init(kernelChoice: "pid \($0)", agrees: victim == $0) },
                                       payload: DecisionPayload(TestPayload(victim: victim, values: [])))
        )
    }

    /// A second, independent connection to the store's file.
    static func otherConnection(_ store: StateStore, unsafeTransactions: Bool = false) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.allowsUnsafeTransactions = unsafeTransactions
        return try DatabaseQueue(path: store.path, configuration: configuration)
    }

    // MARK: opening

    @Test func reopenPersistsDesiredSetEventsAndJournal() throws {
        let scratch = try ScratchDirectory()
        let policy = DesiredPolicy(name: "oom-a", source: "largest-rss", scope: "/sys/fs/cgroup/a", mode: "observe",
                                   overrides: [.init(key: "min_score", value: "10"), .init(key: "x", value: "a=b")],
                                   addedNs: 42)
        let stored: EventRecord
        do {
            let store = try StateStore(directory: scratch.path)
            try store.setDesired(policy)
            stored = try store.append(Self.decision(7, .carriedOut, victim: 12))
            #expect(try store.journalOriginal(path: "/proc/sys/vm/panic_on_oom", original: "0\n", owner: "oom-a"))
        }
        let reopened = try StateStore(directory: scratch.path)
        #expect(try reopened.desiredPolicies() == [policy])
        #expect(try reopened.events(EventQuery()) == [stored])
        let journal = try reopened.journalEntries()
        #expect(journal.map(\.path) == ["/proc/sys/vm/panic_on_oom"])
        #expect(journal.first?.original == "0\n")
        #expect(journal.first?.owner == "oom-a")
    }

    @Test func exitEventsRoundTripAndTheNewestPerPolicyIsFound() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        func exit(_ time: Int64, _ policy: String, _ guardName: String) -> EventRecord {
            EventRecord(timeNs: time, type: .exit, policy: policy, summary: "\(policy) ejected by \(guardName)",
                        exit: PolicyExit(guardName: guardName, metric: "m", comparison: "above", threshold: 0.5,
                                         values: [0.6, 0.7, 0.8], windows: 3, windowSeconds: 1, description: "d",
                                         restoredKnobs: ["/x=0"], cooldownUntilNs: time + 300))
        }
        let first = try store.append(exit(10, "a", "max_refault_ratio"))
        _ = try store.append(Self.decision(15, policy: "a", .fellBack))
        let second = try store.append(exit(20, "a", "max_kills_per_minute"))
        let other = try store.append(exit(30, "b", "max_rejections"))
        #expect(try store.lastExit(policy: "a") == second)
        #expect(try store.lastExit(policy: "c") == nil)
        #expect(try store.recentExits(sinceNs: 0) == [other, second])
        #expect(try store.recentExits(sinceNs: 25) == [other])
        #expect(try store.events(EventQuery(policy: "a")).first == first)
    }

    /// The database as an older mmpolicy left it: schema v1 (issue 3) or v2
    /// (the watchdog's exit column), written by hand as those versions shipped.
    static func shippedDatabase(_ scratch: ScratchDirectory, throughVersion version: Int) throws -> DatabaseQueue {
        let queue = try DatabaseQueue(path: scratch.path + "/" + StateStore.fileName)
        var old = DatabaseMigrator()
        old.registerMigration("v1") { db in
            try db.create(table: "desired_policy") { t in
                t.primaryKey("name", .text)
                for column in ["source", "scope", "mode", "overrides"] { t.column(column, .text).notNull() }
                t.column("added_ns", .integer).notNull()
            }
            try db.create(table: "event") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("time_ns", .integer).notNull()
                t.column("type", .text).notNull()
                t.column("policy", .text)
                t.column("summary", .text).notNull()
                t.column("decision", .text)
                t.column("decision_outcome", .text)
                t.column("agreement", .integer)
            }
            try db.create(table: "knob_journal") { t in
                t.primaryKey("path", .text)
                t.column("original", .text).notNull()
                t.column("owner", .text).notNull()
                t.column("recorded_ns", .integer).notNull()
            }
        }
        if version >= 2 {
            old.registerMigration("v2: watchdog exits") { db in
                try db.alter(table: "event") { t in t.add(column: "exit", .text) }
            }
        }
        try old.migrate(queue)
        return queue
    }

    @Test func aVersion1DatabaseGainsTheExitColumn() throws {
        let scratch = try ScratchDirectory()
        // The schema as issue 3 shipped it, with one event in it.
        let queue = try Self.shippedDatabase(scratch, throughVersion: 1)
        try queue.write { db in
            try db.execute(sql: "INSERT INTO event (time_ns, type, policy, summary) VALUES (5, 'loaded', 'p', 'old')")
        }
        try queue.close()
        let store = try StateStore(directory: scratch.path)
        #expect(try store.events(EventQuery()).map(\.summary) == ["old"])
        let exit = EventRecord(timeNs: 9, type: .exit, policy: "p", summary: "ejected",
                               exit: PolicyExit(guardName: "g", metric: "m", comparison: "below", threshold: 0.1,
                                                values: [0], windows: 3, windowSeconds: 1, description: "d",
                                                restoredKnobs: [], cooldownUntilNs: 10))
        #expect(try store.append(exit).exit == exit.exit)
        #expect(try store.lastExit(policy: "p")?.exit?.guardName == "g")
    }

    /// Decisions written before the envelope (schema v2, oom only) read back
    /// as envelopes: outcome renamed, mode recovered from the policy's
    /// `loaded` event, steps and payload filled from the old fields.
    @Test func aVersion2DatabaseKeepsItsDecisionsReadable() throws {
        let scratch = try ScratchDirectory()
        do {
            let queue = try Self.shippedDatabase(scratch, throughVersion: 2)
            try queue.write { db in
                let rows: [(Int64, String, String?, String, String?, String?, Int?)] = [
                    (1, "loaded", "obs", "loaded /x/oom_largest.bpf.o on system in observe mode (verified in 9.0 ms)", nil, nil, nil),
                    (2, "decision", "obs", "would kill",
                     #"{"candidates":3,"detail":"","kernelVictimPID":42,"latency":{"decisionUs":10.5,"callbackUs":4},"origin":"system","outcome":"observed","reason":"largest","scope":"system","score":900,"trigger":"low-memory","victimComm":"w","victimPID":42}"#,
                     "observed", 1),
                    (3, "decision", "obs", "fell back",
                     #"{"candidates":0,"detail":"select_victim failed: errno 22","latency":{},"origin":"system","outcome":"fallback","scope":"system","trigger":"low-memory"}"#,
                     "fallback", nil),
                    (4, "loaded", "enf", "loaded /x/oom_growth.bpf.o on /sys/fs/cgroup/memory/a in enforce mode (verified in 9.0 ms)", nil, nil, nil),
                    (5, "decision", "enf", "killed",
                     #"{"candidates":2,"detail":"","latency":{"decisionUs":100,"killUs":200,"releasedUs":9000,"clearedUs":9500,"wakeUs":3},"origin":"/sys/fs/cgroup/memory/a","outcome":"enforced","reason":"growth","scope":"/sys/fs/cgroup/memory/a","score":7,"trigger":"memcg-oom","victimComm":"leak","victimPID":77,"victimRSSBytes":1048576,"wokenBy":"memcg-eventfd"}"#,
                     "enforced", nil),
                    (6, "decision", "enf", "rejected",
                     #"{"candidates":2,"detail":"pid 1 is protected","latency":{},"origin":"/sys/fs/cgroup/memory/a","outcome":"rejected","scope":"/sys/fs/cgroup/memory/a","trigger":"memcg-oom","victimPID":1}"#,
                     "rejected", nil),
                ]
                for row in rows {
                    try db.execute(sql: "INSERT INTO event (time_ns, type, policy, summary, decision, decision_outcome, agreement) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                   arguments: [row.0, row.1, row.2, row.3, row.4, row.5, row.6])
                }
            }
        }
        let store = try StateStore(directory: scratch.path)
        let decisions = try store.events(EventQuery()).compactMap(\.decision)
        #expect(decisions.map(\.outcome) == [.observed, .error, .carriedOut, .rejected])
        #expect(decisions.map(\.mode) == [.observe, .observe, .enforce, .enforce])
        #expect(decisions.allSatisfy { $0.kind.rawValue == "oom" })
        #expect(decisions[0].agreement == .init(kernelChoice: "pid 42", agrees: true))
        #expect(decisions[0].timing.decidedUs == 10.5)
        #expect(decisions[0].payload.body["victimPID"] == .integer(42))
        #expect(decisions[0].payload.body["score"] == .integer(900))
        #expect(decisions[1].detail == "select_victim failed: errno 22")
        #expect(decisions[2].timing.steps == [.init("SIGKILL", 200), .init("released", 9000), .init("cleared", 9500)])
        #expect(decisions[2].timing.wakeUs == 3)
        #expect(decisions[2].wokenBy == "memcg-eventfd")
        #expect(decisions[2].payload.body["victimRSSBytes"] == .integer(1_048_576))
        #expect(try store.decisionCounts(policy: "obs") == DecisionCounts(total: 2, observed: 1, errors: 1, agreements: 1))
        #expect(try store.decisionCounts(policy: "enf") == DecisionCounts(total: 2, carriedOut: 1, rejected: 1))
    }

    @Test func journalModeIsWAL() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let mode = try Self.otherConnection(store).read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
    }

    /// Another process's connection (an operator's `sqlite3`, a test, the
    /// guardian) closing must not take the store's -wal and -shm with it:
    /// the store's writes would go on into deleted files, and be lost.
    @Test(.enabled(if: access("/usr/bin/sqlite3", X_OK) == 0, "needs the sqlite3 program"))
    func anotherProcessClosingTheDatabaseLeavesTheStoresWALInPlace() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        func policy(_ name: String) -> DesiredPolicy {
            DesiredPolicy(name: name, source: "s", scope: "system", mode: "observe", overrides: [], addedNs: 1)
        }
        try store.setDesired(policy("a"))
        let first = try runCommand("/usr/bin/sqlite3", [store.path, "SELECT count(*) FROM desired_policy"])
        #expect(first.output.hasPrefix("1"), "\(first.output)")
        #expect(access(store.path + "-wal", F_OK) == 0, "the store's -wal is still there")
        try store.setDesired(policy("b"))
        let second = try runCommand("/usr/bin/sqlite3", [store.path, "SELECT count(*) FROM desired_policy"])
        #expect(second.output.hasPrefix("2"), "another process sees what the store wrote since: \(second.output)")
    }

    @Test func createsMissingDirectoryWithMode0700() throws {
        let scratch = try ScratchDirectory()
        let directory = scratch.path + "/var/lib/mmpolicy"
        let store = try StateStore(directory: directory)
        #expect(store.path == directory + "/state.sqlite")
        var stats = stat()
        #expect(stat(directory, &stats) == 0)
        #expect(stats.st_mode & 0o777 == 0o700)
        #expect(access(store.path, F_OK) == 0)
    }

    @Test func garbageFileIsReportedWithItsPath() throws {
        let scratch = try ScratchDirectory()
        let file = try scratch.write(StateStore.fileName, String(repeating: "this is not an SQLite database\n", count: 200))
        let error = #expect(throws: StateStoreError.self) { try StateStore(directory: scratch.path) }
        #expect(error?.kind == .notADatabase)
        #expect(error?.path == file)
        #expect(error?.description.contains(file) == true)
        #expect(error?.description.contains("moves a damaged file aside") == true)
    }

    @Test func uncreatableDirectoryIsReported() throws {
        let scratch = try ScratchDirectory()
        let file = try scratch.write("plain-file", "x")
        let directory = file + "/state"
        let error = #expect(throws: StateStoreError.self) { try StateStore(directory: directory) }
        #expect(error?.kind == .cannotCreateDirectory)
        #expect(error?.path == directory)
        #expect(error?.description.contains(directory) == true)
        #expect(error?.description.contains("Not a directory") == true)
    }

    @Test func newerSchemaIsRefused() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        try Self.otherConnection(store).write { db in
            try db.execute(sql: "INSERT INTO grdb_migrations (identifier) VALUES ('v2-from-the-future')")
        }
        let error = #expect(throws: StateStoreError.self) { try StateStore(directory: scratch.path) }
        #expect(error?.kind == .newerSchema)
        #expect(error?.description.contains(store.path) == true)
        #expect(error?.description.contains("v2-from-the-future") == true)
    }

    // MARK: desired set

    @Test func setDesiredReplacesByNameAndListsByAddedTime() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let b = DesiredPolicy(name: "b", source: "s", scope: "system", mode: "enforce", overrides: [], addedNs: 5)
        let a = DesiredPolicy(name: "a", source: "s", scope: "system", mode: "enforce", overrides: [], addedNs: 5)
        let early = DesiredPolicy(name: "z", source: "s", scope: "system", mode: "observe", overrides: [], addedNs: 1)
        try store.setDesired(b)
        try store.setDesired(a)
        try store.setDesired(early)
        #expect(try store.desiredPolicies().map(\.name) == ["z", "a", "b"])

        var replaced = a
        replaced.mode = "observe"
        replaced.overrides = [.init(key: "k", value: "v")]
        try store.setDesired(replaced)
        #expect(try store.desiredPolicies() == [early, replaced, b])
    }

    @Test func removeDesiredReportsWhetherItExisted() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        try store.setDesired(DesiredPolicy(name: "a", source: "s", scope: "system", mode: "enforce", overrides: [], addedNs: 1))
        #expect(try store.removeDesired(name: "unknown") == false)
        #expect(try store.removeDesired(name: "a") == true)
        #expect(try store.removeDesired(name: "a") == false)
        #expect(try store.desiredPolicies().isEmpty)
    }

    // MARK: events

    @Test func eventQueriesFilterAndKeepTheNewest() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        // Appended out of time order: queries order by time, not by insertion.
        try store.append(contentsOf: [
            Self.event(30, policy: "a"), Self.event(10, policy: "a"), Self.event(20, policy: "b"),
            Self.event(40, .daemonStart, policy: nil), Self.event(50, policy: "a"),
        ])
        #expect(try store.events(EventQuery()).map(\.timeNs) == [10, 20, 30, 40, 50])
        #expect(try store.events(EventQuery(policy: "a")).map(\.timeNs) == [10, 30, 50])
        #expect(try store.events(EventQuery(sinceNs: 30)).map(\.timeNs) == [30, 40, 50])
        #expect(try store.events(EventQuery(limit: 2)).map(\.timeNs) == [40, 50])
        #expect(try store.events(EventQuery(policy: "a", sinceNs: 11, limit: 1)).map(\.timeNs) == [50])
        #expect(try store.events(EventQuery(policy: "nobody")).isEmpty)
        #expect(try store.events(EventQuery(limit: 0)).isEmpty)
    }

    @Test func eventQueryDefaultsToTheNewestThousand() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        try store.append(contentsOf: (1...1005).map { Self.event(Int64($0)) })
        let events = try store.events(EventQuery())
        #expect(events.count == StateStore.defaultEventLimit)
        #expect(events.first?.timeNs == 6)
        #expect(events.last?.timeNs == 1005)
    }

    @Test func appendReturnsIncreasingIds() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let first = try store.append(Self.event(1))
        var withStaleID = Self.event(2)
        withStaleID.id = first.id
        let second = try store.append(withStaleID)
        #expect(first.id > 0)
        #expect(second.id > first.id)
        #expect(try store.events(EventQuery()).map(\.id) == [first.id, second.id])
    }

    @Test func everyFieldRoundTrips() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let full = DecisionRecord(
            kind: PolicyKind(rawValue: "test"), trigger: "memcg-oom", scope: "/sys/fs/cgroup/a", origin: "/sys/fs/cgroup/a/b",
            mode: .observe, outcome: .observed, detail: "quoted \"detail\"\nwith newline", wokenBy: "psi",
            timing: .init(wakeUs: 3, decidedUs: 12.5, callbackUs: nil, steps: [.init("SIGKILL", 30.25), .init("cleared", 1e9)]),
            agreement: .init(kernelChoice: "pid 4243", agrees: false),
            policyError: PolicyErrorInfo(code: -22, message: "no candidate ☃"),
            payload: DecisionPayload(TestPayload(victim: 4242, values: [-9_000_000_000, Int64.max])))
        let sparse = DecisionRecord(kind: PolicyKind(rawValue: "test"), trigger: "test", scope: "system", origin: "system",
                                    mode: .enforce, outcome: .fellBack, detail: "deadline missed")
        var written = [Self.event(1, .decision, policy: "p", "full", decision: full),
                       Self.event(2, .decision, policy: "p", "sparse", decision: sparse)]
        written += EventRecord.EventType.allCases.enumerated().map { index, type in
            Self.event(Int64(10 + index), type, policy: index.isMultiple(of: 2) ? nil : "p", "type \(type.rawValue)")
        }
        try store.append(contentsOf: written)
        let read = try store.events(EventQuery())
        #expect(read.allSatisfy { $0.id > 0 })
        #expect(read.map { var e = $0; e.id = 0; return e } == written)
        #expect(read[0].decision?.payload.decode(TestPayload.self) == TestPayload(victim: 4242, values: [-9_000_000_000, Int64.max]))
        #expect(read[0].decision?.payload.decode(OtherVersion.self) == nil)
    }

    /// The same payload at another version: a reader of another version gets nil, not a misreading.
    struct OtherVersion: DecisionPayloadBody {
        static let version = 4
        var victim: Int32?
        var values: [Int64]
    }

    @Test func nonFiniteLatenciesAreStored() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let odd = DecisionRecord(kind: PolicyKind(rawValue: "test"), trigger: "test", scope: "system", origin: "system",
                                 mode: .enforce, outcome: .carriedOut,
                                 timing: .init(decidedUs: .nan, callbackUs: .infinity, steps: [.init("SIGKILL", -.infinity)]))
        try store.append(Self.event(1, .decision, decision: odd))
        let timing = try store.lastDecision(policy: "p")?.decision?.timing
        #expect(timing?.decidedUs?.isNaN == true)
        #expect(timing?.callbackUs == .infinity)
        #expect(timing?.us("SIGKILL") == -.infinity)
        #expect(timing?.us("released") == nil)
    }

    @Test func decisionCountsSplitOutcomesAndAgreement() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        try store.append(contentsOf: [
            Self.decision(1, .carriedOut, victim: 10),
            Self.decision(2, .carriedOut, victim: 11),
            Self.decision(3, .observed, victim: 20, kernel: 20),  // agreement
            Self.decision(4, .observed, victim: 21, kernel: 22),  // disagreement
            Self.decision(5, .observed, victim: nil, kernel: 23), // disagreement: policy chose nobody
            Self.decision(6, .observed, victim: 24),              // kernel's choice not seen: neither
            Self.decision(7, .rejected, victim: 30),
            Self.decision(8, .fellBack),
            Self.decision(9, .observed, victim: 40, kernel: 40),  // agreement
            Self.decision(9, .error),
            Self.decision(9, policy: "other", .carriedOut, victim: 1),
            Self.event(9, .kernelKill, policy: "p", "the kernel killed 40"),
        ])
        #expect(try store.decisionCounts(policy: "p") ==
                DecisionCounts(total: 10, carriedOut: 2, observed: 5, rejected: 1, fellBack: 1, errors: 1,
                               agreements: 2, disagreements: 2))
        #expect(try store.decisionCounts(policy: "p", sinceNs: 4) ==
                DecisionCounts(total: 7, carriedOut: 0, observed: 4, rejected: 1, fellBack: 1, errors: 1,
                               agreements: 1, disagreements: 2))
        #expect(try store.decisionCounts(policy: "nobody") == DecisionCounts())
    }

    @Test func lastDecisionIgnoresOtherEventsAndPolicies() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        #expect(try store.lastDecision(policy: "p") == nil)
        try store.append(contentsOf: [
            Self.decision(1, .carriedOut, victim: 1),
            Self.decision(5, .rejected, victim: 2),
            Self.decision(3, .fellBack),
            Self.event(9, .unloaded, policy: "p"),
            Self.decision(10, policy: "other", .carriedOut, victim: 3),
        ])
        let last = try store.lastDecision(policy: "p")
        #expect(last?.timeNs == 5)
        #expect(last?.decision?.outcome == .rejected)
        #expect(last?.id ?? 0 > 0)
    }

    @Test func pruneKeepsTheNewestByTime() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        try store.append(contentsOf: [5, 1, 4, 2, 3].map { Self.event($0) })
        #expect(try store.pruneEvents(keepingNewest: 10) == 0)
        #expect(try store.pruneEvents(keepingNewest: 2) == 3)
        #expect(try store.events(EventQuery()).map(\.timeNs) == [4, 5])
        #expect(try store.pruneEvents(keepingNewest: 0) == 2)
        #expect(try store.events(EventQuery()).isEmpty)
    }

    @Test func pruneByAgeDeletesOnlyOlderEvents() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        try store.append(contentsOf: [5, 1, 4, 2, 3].map { Self.event($0) })
        #expect(try store.pruneEvents(olderThanNs: 1) == 0)
        #expect(try store.pruneEvents(olderThanNs: 3) == 2)  // 1 and 2; 3 itself stays
        #expect(try store.events(EventQuery()).map(\.timeNs) == [3, 4, 5])
    }

    @Test func retentionPrunesByAgeThenByCount() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let day: Int64 = 86_400 * 1_000_000_000
        let now: Int64 = 100 * day
        // One event a day for the last 40 days (the oldest first), and one now.
        try store.append(contentsOf: (0...40).map { Self.event(now - Int64(40 - $0) * day) })
        let thirtyDays = EventRetention(days: 30, count: nil)
        #expect(thirtyDays.cutoffNs(now: now) == now - 30 * day)
        #expect(try store.pruneEvents(thirtyDays, nowNs: now) == 10)  // 40..31 days old
        #expect(try store.events(EventQuery(limit: 100)).count == 31)
        #expect(try store.events(EventQuery(limit: 100)).first?.timeNs == now - 30 * day)

        #expect(try store.pruneEvents(EventRetention(days: 30, count: 5), nowNs: now) == 26)
        #expect(try store.events(EventQuery(limit: 100)).map(\.timeNs) == (0..<5).map { now - Int64(4 - $0) * day })
        // Within both limits: nothing goes.
        #expect(try store.pruneEvents(EventRetention(days: 30, count: 5), nowNs: now) == 0)
        #expect(try store.pruneEvents(.unlimited, nowNs: now) == 0)
        #expect(try store.events(EventQuery(limit: 100)).count == 5)
    }

    // MARK: knob journal

    @Test func journalKeepsTheFirstOriginal() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let knob = "/proc/sys/vm/overcommit_memory"
        #expect(try store.journalOriginal(path: knob, original: "0", owner: "a"))
        #expect(try store.journalOriginal(path: knob, original: "1", owner: "b") == false)
        #expect(try store.journalOriginal(path: "/proc/sys/vm/swappiness", original: "60", owner: "b"))

        let all = try store.journalEntries()
        #expect(all.map(\.path) == [knob, "/proc/sys/vm/swappiness"])
        #expect(all.first?.original == "0")
        #expect(all.first?.owner == "a")
        #expect(all.allSatisfy { $0.recordedNs > 1_600_000_000_000_000_000 })
        #expect(try store.journalEntries(owner: "b").map(\.path) == ["/proc/sys/vm/swappiness"])

        try store.forgetJournal(path: knob)
        try store.forgetJournal(path: "/never/journaled")
        #expect(try store.journalEntries().map(\.path) == ["/proc/sys/vm/swappiness"])
        // Once forgotten, the next change journals the value then current.
        #expect(try store.journalOriginal(path: knob, original: "2", owner: "b"))
        #expect(try store.journalEntries(owner: "b").first { $0.path == knob }?.original == "2")
    }

    // MARK: EventRecorder

    @Test func recorderStoresEveryEventInPerProducerOrder() async throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let recorder = EventRecorder(store: store)
        let producers = 4, perProducer = 2_500
        await withTaskGroup(of: Void.self) { group in
            for producer in 0..<producers {
                group.addTask {
                    for i in 0..<perProducer {
                        recorder.record(Self.event(1, policy: "producer-\(producer)", "\(i)"))
                    }
                }
            }
        }
        await recorder.flush()
        let events = try store.events(EventQuery(limit: producers * perProducer + 1))
        #expect(events.count == producers * perProducer)
        #expect(recorder.lostEventCount == 0)
        let byID = events.sorted { $0.id < $1.id }
        for producer in 0..<producers {
            let sequence = byID.filter { $0.policy == "producer-\(producer)" }.map(\.summary)
            #expect(sequence == (0..<perProducer).map(String.init))
        }
    }

    @Test func recorderPrunesAfterWritesByCountAndAge() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        // Prune after the first batch, then after every 10 events (never by time in this test).
        let retention = EventRetention(maxAgeSeconds: 3600, maxCount: 20, pruneIntervalSeconds: 3600, pruneEveryEvents: 10)
        let recorder = EventRecorder(store: store, retention: retention)
        let now = wallClockNanoseconds()
        // An event two hours old goes with the first batch's prune.
        recorder.record(Self.event(now - 7200 * 1_000_000_000, policy: nil, "too old"))
        recorder.flush()
        #expect(try store.events(EventQuery()).isEmpty)
        #expect(recorder.prunedEventCount == 1)

        // 1...25, a batch each: prunes run after 10 and 20 (within the count: nothing goes).
        for i in 1...25 {
            recorder.record(Self.event(now + Int64(i), policy: nil, "\(i)"))
            recorder.flush()
        }
        #expect(try store.events(EventQuery()).map(\.summary) == (1...25).map(String.init))
        #expect(recorder.prunedEventCount == 1)

        // The 10th event since the last prune (the 30th) brings one: the newest 20 stay.
        for i in 26...30 { recorder.record(Self.event(now + Int64(i), policy: nil, "\(i)")) }
        recorder.close()
        #expect(try store.events(EventQuery()).map(\.summary) == (11...30).map(String.init))
        #expect(recorder.prunedEventCount == 11)
        #expect(recorder.lostEventCount == 0)
    }

    @Test func aRecorderWithoutLimitsNeverPrunes() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let recorder = EventRecorder(store: store, retention: .unlimited)
        for i in 0..<50 { recorder.record(Self.event(Int64(i))) }
        recorder.close()
        #expect(try store.events(EventQuery()).count == 50)
        #expect(recorder.prunedEventCount == 0)
    }

    @Test func recordDoesNotWaitForTheWriteLock() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let recorder = EventRecorder(store: store)
        let other = try Self.otherConnection(store, unsafeTransactions: true)
        try other.writeWithoutTransaction { db in try db.execute(sql: "BEGIN IMMEDIATE") }

        // With the write lock held elsewhere, a synchronous write would wait
        // out the busy timeout and fail; record() must just queue.
        for i in 0..<10 { recorder.record(Self.event(Int64(i))) }
        usleep(100_000)  // let the writer start waiting for the lock
        #expect(try store.events(EventQuery()).isEmpty)

        try other.writeWithoutTransaction { db in try db.execute(sql: "COMMIT") }
        recorder.flush()
        #expect(try store.events(EventQuery()).count == 10)
        #expect(recorder.lostEventCount == 0)
    }

    @Test func recorderKeepsGoingAfterAFailedWrite() throws {
        let scratch = try ScratchDirectory()
        let store = try StateStore(directory: scratch.path)
        let recorder = EventRecorder(store: store)
        try Self.otherConnection(store).write { db in
            try db.execute(sql: """
                CREATE TRIGGER poison BEFORE INSERT ON event WHEN NEW.summary = 'poison'
                BEGIN SELECT RAISE(ABORT, 'poisoned event'); END
                """)
        }
        recorder.record(Self.event(1, .note, policy: nil, "poison"))
        recorder.flush()
        #expect(recorder.lostEventCount == 1)

        recorder.record(Self.event(2, .note, policy: nil, "kept"))
        recorder.close()
        #expect(try store.events(EventQuery()).map(\.summary) == ["kept"])
        #expect(recorder.lostEventCount == 1)

        recorder.record(Self.event(3, .note, policy: nil, "after close"))
        recorder.flush()
        #expect(recorder.lostEventCount == 2)
        #expect(try store.events(EventQuery()).count == 1)
    }
}
