import BPFKit
import Foundation
import GRDB
import MMPolicyCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's durable state: the desired policy set, the audit trail of
/// events and decisions, and the knob journal, in one SQLite database (WAL)
/// at `<stateDirectory>/state.sqlite`.
///
/// It exists so that a restarted daemon loads the same policies, `mmpolicy
/// events` can show what happened before the restart, and kernel knobs
/// changed by a daemon that crashed can be put back. Every method is a
/// short transaction; calls from any thread are safe (GRDB serialises
/// writes and runs reads concurrently with them). Decision events on the
/// OOM path should go through ``EventRecorder`` instead of ``append(_:)``.
public final class StateStore: Sendable {
    /// The database file.
    public let path: String
    private let pool: DatabasePool

    /// The database's file name inside the state directory.
    public static let fileName = "state.sqlite"
    /// What ``events(_:)`` returns at most when the query sets no limit.
    public static let defaultEventLimit = 1000

    /// What was tightened while opening (the directory's or a file's mode),
    /// one sentence each, for the daemon's log.
    public let notices: [String]
    /// Where every read and write reports how it went (`status` shows the failures).
    public let health: StateHealth

    /// How many lines of SQLite's integrity check a ``StateStoreError/Kind/damaged`` error keeps.
    static let integrityCheckLines = 10

    /// The database and the files SQLite keeps beside it.
    static let fileNames = [fileName, fileName + "-wal", fileName + "-shm", fileName + "-journal"]

    /// Opens (creating if needed) the store in `directory`: makes the
    /// directory (mode 0700) if it is missing, opens the database in WAL mode
    /// and brings its schema up to date.
    ///
    /// The directory is opened through ``SecureDirectory`` (no symbolic
    /// links, owned by root, not writable by others, tightened to 0700).
    /// SQLite opens files by path, so right before it does, `state.sqlite`
    /// and its `-wal`, `-shm` and `-journal` files are checked through the
    /// directory's descriptor (regular files, not links, owned by root, one
    /// link each, tightened to 0600), and a missing `state.sqlite` is created
    /// empty with mode 0600 (SQLite takes an empty file as a new database,
    /// and creates its -wal and -shm files with the database's mode).
    ///
    /// With `checkIntegrity` (the daemon's start), SQLite's `PRAGMA
    /// quick_check` runs before anything is written, and damage found
    /// throws ``StateStoreError/Kind/damaged`` (see ``DamagedStateRecovery``).
    /// quick_check rather than integrity_check: on a 60 MB database holding
    /// 100,000 audit events (the default retention), quick_check took 60-80 ms
    /// and integrity_check 120-190 ms with the file in the page cache (it
    /// also cross-checks every index against its table); from a cold cache
    /// both are bound by reading the file (1.2-1.3 s on the development
    /// machine's disk). quick_check still verifies every page, so a damaged
    /// page of the knob journal or the desired set is found. The guardian
    /// skips the check: it must restore within milliseconds, and a journal
    /// it cannot read makes it fall back to the kernel defaults anyway.
    public init(directory: String, checkIntegrity: Bool = true, health: StateHealth = StateHealth()) throws(StateStoreError) {
        let path = directory.hasSuffix("/") ? directory + Self.fileName : directory + "/" + Self.fileName
        self.path = path
        self.health = health
        let secure: SecureDirectory
        do throws(SecureDirectoryError) {
            secure = try SecureDirectory(directory, purpose: "state directory", access: .ownerOnly)
            for name in Self.fileNames { try secure.checkFile(name) }
            try secure.createFileIfMissing(Self.fileName)
        } catch {
            throw StateStoreError.insecure(error, directory: directory)
        }

        var configuration = Configuration()
        configuration.label = "mmpolicy.state"
        // The daemon is the only writer; wait out a brief lock by someone
        // inspecting the file (sqlite3 CLI) rather than failing at once.
        configuration.busyMode = .timeout(5)
        // Reads are rare (control socket requests); each reader is a connection with its own page cache.
        configuration.maximumReaderCount = 2
        configuration.prepareDatabase { db in
            // WAL + NORMAL survives a daemon crash (the case the knob journal is
            // for); only a power loss can drop the last commits, and a reboot
            // resets kernel knobs anyway.
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
            // SQLite's page cache grows with the database up to 2 MiB per
            // connection by default, all of it locked by the daemon's
            // mlockall. The daemon's queries are small: 512 KiB each is plenty.
            try db.execute(sql: "PRAGMA cache_size = -512")
        }

        // Before the pool: opening a pool writes (GRDB makes SQLite create the -wal).
        if checkIntegrity { try Self.checkIntegrity(path: path) }

        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw StateStoreError.database(error, path: path, operation: "open", opening: true)
        }
        self.pool = pool

        let migrator = Self.migrator
        do {
            let superseded = try pool.read { db in try migrator.hasBeenSuperseded(db) }
            if superseded {
                let known = try pool.read { db in try migrator.appliedIdentifiers(db) }
                throw StateStoreError(
                    kind: .newerSchema, path: path, operation: "open", underlying: nil,
                    fix: "Run the newer mmpolicy, or stop the daemon and move the file aside (losing the saved state); this version knows migrations \(migrator.migrations.joined(separator: ", ")) but the file has \(known.sorted().joined(separator: ", ")).")
            }
            try migrator.migrate(pool)
        } catch {
            throw StateStoreError.database(error, path: path, operation: "migrate", opening: true)
        }
        // The -wal and -shm files SQLite just created: mode 0600 like the
        // database. Without opening them: closing a descriptor of a file
        // SQLite holds would drop its locks (see checkFileWithoutOpening).
        do throws(SecureDirectoryError) {
            for name in Self.fileNames { try secure.checkFileWithoutOpening(name) }
        } catch {
            throw StateStoreError.insecure(error, directory: directory)
        }
        notices = secure.notices
    }

    /// Runs `PRAGMA quick_check` on the file at `path` through a read-only
    /// connection (which never writes the file, nor checkpoints its -wal
    /// into it); throws ``StateStoreError/Kind/damaged`` if it finds damage.
    static func checkIntegrity(path: String) throws(StateStoreError) {
        let lines: [String]
        do {
            lines = try readOnlyConnection(path).read { db in
                try String.fetchAll(db, sql: "PRAGMA quick_check(\(integrityCheckLines))")
            }
        } catch let error as DatabaseError where error.resultCode == .SQLITE_CORRUPT {
            // Damage bad enough that the check itself stops.
            throw StateStoreError.damaged(IntegrityCheckFailure(lines: ["\(error.message ?? "corrupt") (\(error.resultCode))"]), path: path)
        } catch {
            throw StateStoreError.database(error, path: path, operation: "check integrity", opening: true)
        }
        if lines != ["ok"] { throw StateStoreError.damaged(IntegrityCheckFailure(lines: lines), path: path) }
    }

    /// A read-only connection to the database at `path`: for checking and
    /// salvaging a file that must not be changed.
    static func readOnlyConnection(_ path: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.label = "mmpolicy.state.readonly"
        configuration.readonly = true
        configuration.busyMode = .timeout(5)
        return try DatabaseQueue(path: path, configuration: configuration)
    }

    // MARK: - Desired policies

    /// Saves `policy`, replacing any saved policy with the same name.
    public func setDesired(_ policy: DesiredPolicy) throws(StateStoreError) {
        try write(.desiredSet, "save desired policy \(policy.name)") { db in
            try DesiredPolicyRow(policy).upsert(db)
        }
    }

    /// Forgets the desired policy `name`; false if there was none.
    @discardableResult
    public func removeDesired(name: String) throws(StateStoreError) -> Bool {
        try write(.desiredSet, "remove desired policy \(name)") { db in
            try DesiredPolicyRow.deleteOne(db, key: name)
        }
    }

    /// The desired set, oldest first (ties by name), as the daemon should load it.
    public func desiredPolicies() throws(StateStoreError) -> [DesiredPolicy] {
        try read(.desiredSet, "read desired policies") { db in
            try DesiredPolicyRow
                .order(DesiredPolicyRow.Columns.addedNs, DesiredPolicyRow.Columns.name)
                .fetchAll(db)
                .map(\.policy)
        }
    }

    // MARK: - Events

    /// Stores `event` and returns it with its row id.
    @discardableResult
    public func append(_ event: EventRecord) throws(StateStoreError) -> EventRecord {
        try write(.events, "append event") { db in
            var row = EventRow(event)
            try row.insert(db)
            return row.record
        }
    }

    /// Stores `events` in one transaction: all of them or, on error, none.
    public func append(contentsOf events: [EventRecord]) throws(StateStoreError) {
        guard !events.isEmpty else { return }
        try write(.events, "append \(events.count) events") { db in
            for event in events {
                var row = EventRow(event)
                try row.insert(db)
            }
        }
    }

    /// The newest `query.limit` (default ``defaultEventLimit``) events
    /// matching `query`, returned oldest first.
    public func events(_ query: EventQuery) throws(StateStoreError) -> [EventRecord] {
        let limit = max(0, query.limit ?? Self.defaultEventLimit)
        return try read(.events, "read events") { db in
            var request = EventRow.all()
            if let policy = query.policy { request = request.filter(EventRow.Columns.policy == policy) }
            if let since = query.sinceNs { request = request.filter(EventRow.Columns.timeNs >= since) }
            let newestFirst = try request
                .order(EventRow.Columns.timeNs.desc, EventRow.Columns.id.desc)
                .limit(limit)
                .fetchAll(db)
            return newestFirst.reversed().map(\.record)
        }
    }

    /// How `policy`'s decisions (at or after `sinceNs`) ended.
    public func decisionCounts(policy: String, sinceNs: Int64? = nil) throws(StateStoreError) -> DecisionCounts {
        try read(.events, "count decisions of \(policy)") { db in
            var sql = """
                SELECT COUNT(*),
                       COALESCE(SUM(decision_outcome = 'carried-out'), 0),
                       COALESCE(SUM(decision_outcome = 'observed'), 0),
                       COALESCE(SUM(decision_outcome = 'rejected'), 0),
                       COALESCE(SUM(decision_outcome = 'fell-back'), 0),
                       COALESCE(SUM(decision_outcome = 'error'), 0),
                       COALESCE(SUM(agreement = 1), 0),
                       COALESCE(SUM(agreement = 0), 0)
                FROM event WHERE policy = ? AND type = ?
                """
            var arguments: StatementArguments = [policy, EventRecord.EventType.decision.rawValue]
            if let sinceNs {
                sql += " AND time_ns >= ?"
                arguments += [sinceNs]
            }
            guard let row = try Row.fetchOne(db, sql: sql, arguments: arguments) else { return DecisionCounts() }
            return DecisionCounts(total: row[0], carriedOut: row[1], observed: row[2], rejected: row[3],
                                  fellBack: row[4], errors: row[5], agreements: row[6], disagreements: row[7])
        }
    }

    /// `policy`'s most recent decision event, if any.
    public func lastDecision(policy: String) throws(StateStoreError) -> EventRecord? {
        try read(.events, "read last decision of \(policy)") { db in
            try EventRow
                .filter(EventRow.Columns.policy == policy && EventRow.Columns.type == EventRecord.EventType.decision.rawValue)
                .order(EventRow.Columns.timeNs.desc, EventRow.Columns.id.desc)
                .fetchOne(db)?
                .record
        }
    }

    /// `policy`'s most recent watchdog exit, if any.
    public func lastExit(policy: String) throws(StateStoreError) -> EventRecord? {
        try read(.events, "read last exit of \(policy)") { db in
            try EventRow
                .filter(EventRow.Columns.policy == policy && EventRow.Columns.type == EventRecord.EventType.exit.rawValue)
                .order(EventRow.Columns.timeNs.desc, EventRow.Columns.id.desc)
                .fetchOne(db)?
                .record
        }
    }

    /// Every watchdog exit at or after `sinceNs`, newest first (one per policy).
    public func recentExits(sinceNs: Int64) throws(StateStoreError) -> [EventRecord] {
        try read(.events, "read recent exits") { db in
            let rows = try EventRow
                .filter(EventRow.Columns.type == EventRecord.EventType.exit.rawValue && EventRow.Columns.timeNs >= sinceNs)
                .order(EventRow.Columns.timeNs.desc, EventRow.Columns.id.desc)
                .fetchAll(db)
            var seen = Set<String>()
            return rows.map(\.record).filter { seen.insert($0.policy ?? "").inserted }
        }
    }

    /// How many events the store holds.
    public func eventCount() throws(StateStoreError) -> Int {
        try read(.events, "count events") { db in try EventRow.fetchCount(db) }
    }

    /// Deletes all but the newest `n` events (by time); returns how many were deleted.
    @discardableResult
    public func pruneEvents(keepingNewest n: Int) throws(StateStoreError) -> Int {
        precondition(n >= 0, "pruneEvents(keepingNewest:) needs a count >= 0, got \(n)")
        return try write(.events, "prune events") { db in
            try db.execute(sql: """
                DELETE FROM event WHERE id NOT IN
                    (SELECT id FROM event ORDER BY time_ns DESC, id DESC LIMIT ?)
                """, arguments: [n])
            return db.changesCount
        }
    }

    /// Deletes every event older than `cutoffNs` (wall clock, ns since the
    /// epoch); returns how many were deleted.
    @discardableResult
    public func pruneEvents(olderThanNs cutoffNs: Int64) throws(StateStoreError) -> Int {
        try write(.events, "prune events by age") { db in
            try db.execute(sql: "DELETE FROM event WHERE time_ns < ?", arguments: [cutoffNs])
            return db.changesCount
        }
    }

    /// Applies `retention` as of `nowNs`: events older than its age go, then
    /// all but its newest `maxCount`. Returns how many were deleted.
    @discardableResult
    public func pruneEvents(_ retention: EventRetention, nowNs: Int64 = wallClockNanoseconds()) throws(StateStoreError) -> Int {
        var deleted = 0
        if let cutoff = retention.cutoffNs(now: nowNs) { deleted += try pruneEvents(olderThanNs: cutoff) }
        if let count = retention.maxCount {
            // Cheap check first: the NOT IN delete scans the table.
            let total = try read(.events, "count events") { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM event") ?? 0 }
            if total > count { deleted += try pruneEvents(keepingNewest: count) }
        }
        return deleted
    }

    // MARK: - Knob journal

    /// Records `original` as the value of the kernel knob at `path` before
    /// `owner` first changes it. The first original wins: if the knob is
    /// already journaled (by anyone) nothing changes and the result is false.
    /// Call it, and let it succeed, before writing the knob.
    @discardableResult
    public func journalOriginal(path knob: String, original: String, owner: String) throws(StateStoreError) -> Bool {
        try write(.journal, "journal knob \(knob)") { db in
            let entry = KnobJournalRow(path: knob, original: original, owner: owner, recordedNs: wallClockNanoseconds())
            try entry.insert(db, onConflict: .ignore)
            return db.changesCount == 1
        }
    }

    /// The journaled knobs (of `owner`, or all), in the order they were first changed.
    public func journalEntries(owner: String? = nil) throws(StateStoreError) -> [KnobJournalEntry] {
        try read(.journal, "read knob journal") { db in
            var request = KnobJournalRow.all()
            if let owner { request = request.filter(KnobJournalRow.Columns.owner == owner) }
            return try request
                .order(KnobJournalRow.Columns.recordedNs, KnobJournalRow.Columns.path)
                .fetchAll(db)
                .map(\.entry)
        }
    }

    /// Adds `entries` to the journal as they are (owner, original, time),
    /// keeping any entry already there for the same knob: entries salvaged
    /// from a damaged database that could not be restored yet.
    public func importJournal(_ entries: [KnobJournalEntry]) throws(StateStoreError) {
        guard !entries.isEmpty else { return }
        try write(.journal, "import \(entries.count) journal entries") { db in
            for entry in entries {
                try KnobJournalRow(path: entry.path, original: entry.original, owner: entry.owner, recordedNs: entry.recordedNs)
                    .insert(db, onConflict: .ignore)
            }
        }
    }

    /// Drops the journal entry for the knob at `path` (after restoring it, or
    /// when the value mmpolicy set is to stay). Unknown paths are ignored.
    public func forgetJournal(path knob: String) throws(StateStoreError) {
        try write(.journal, "forget knob \(knob)") { db in
            _ = try KnobJournalRow.deleteOne(db, key: knob)
        }
    }

    /// Makes `owner` the owner of the journal entry for `path`, in one
    /// statement (a policy's zram swap another policy now relies on).
    /// Unknown paths are ignored.
    public func reassignJournal(path knob: String, owner: String) throws(StateStoreError) {
        try write(.journal, "give knob \(knob) to \(owner)") { db in
            try db.execute(sql: "UPDATE knob_journal SET owner = ? WHERE path = ?", arguments: [owner, knob])
        }
    }

    // MARK: - Plumbing

    private func write<T>(_ area: StateHealth.Area, _ operation: String, _ body: (Database) throws -> T) throws(StateStoreError) -> T {
        do {
            let result = try pool.write(body)
            health.succeeded(area, writing: true)
            return result
        } catch {
            let failure = StateStoreError.database(error, path: path, operation: operation)
            health.failed(area, writing: true, operation: operation, failure)
            throw failure
        }
    }

    private func read<T>(_ area: StateHealth.Area, _ operation: String, _ body: (Database) throws -> T) throws(StateStoreError) -> T {
        do {
            let result = try pool.read(body)
            health.succeeded(area, writing: false)
            return result
        } catch {
            let failure = StateStoreError.database(error, path: path, operation: operation)
            health.failed(area, writing: false, operation: operation, failure)
            throw failure
        }
    }
}

/// The state store is the knob journal's durable storage.
extension StateStore: KnobJournalStorage {}
