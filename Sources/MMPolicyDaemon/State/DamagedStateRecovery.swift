import BPFKit
import GRDB
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// What the daemon found in a damaged state database at start, and where
/// the file went: what the rest of the start restores from (the salvaged
/// journal) and reports (what was lost, where the file is).
public struct DamagedState: Sendable {
    /// Why the file was judged damaged: SQLite's integrity check, or the
    /// error opening it.
    public var problem: String
    /// Where the files went: `state.sqlite.damaged-<UTC time>`, and its
    /// `-wal` and `-shm` beside it under the same name if there were any.
    public var movedTo: [String]
    /// The knob journal as read from the damaged file, or why it could not be read.
    public var journal: Result<[KnobJournalEntry], StateStoreError>
    /// The desired policy set as read from the damaged file, or why it could not be read.
    public var desiredSet: Result<[DesiredPolicy], StateStoreError>
}

/// Opens the state store at the daemon's start. A database that SQLite's
/// integrity check finds damaged, or that is not a database at all, is not
/// written to, deleted or overwritten: what can be read of it (the knob
/// journal, the desired set) is salvaged, it is moved aside with its -wal
/// and -shm files to `state.sqlite.damaged-<UTC time>` in the state
/// directory, and a fresh database is begun, holding the salvaged desired
/// set. The caller restores the salvaged journal (or, if it was unreadable,
/// the kernel defaults it can identify: ``KnobRecovery``).
///
/// It exists because the alternative, refusing to start, leaves the host
/// with knobs a crashed daemon changed and nothing to restore them, while
/// starting on the damaged file silently loses what it cannot read. Every
/// finding is reported to the store's ``StateHealth``: the error log, an
/// audit event in the fresh database, and `status`.
public enum DamagedStateRecovery {
    /// Opens the store in `directory` (checking its integrity); returns it,
    /// and what was done if the file was damaged. Errors other than damage
    /// (permissions, a newer schema, a full disk) are thrown as they are:
    /// the daemon refuses to start then, as before. So does a damaged file
    /// that cannot be moved aside.
    public static func open(directory: String, health: StateHealth,
                            nowNs: Int64 = wallClockNanoseconds()) throws(StateStoreError) -> (StateStore, DamagedState?) {
        let failure: StateStoreError
        do {
            return (try StateStore(directory: directory, checkIntegrity: true, health: health), nil)
        } catch where error.isDamage {
            failure = error
        }
        let path = directory.hasSuffix("/") ? directory + StateStore.fileName : directory + "/" + StateStore.fileName
        let journal = salvage(path, "read the knob journal") { db in
            try KnobJournalRow.order(KnobJournalRow.Columns.recordedNs, KnobJournalRow.Columns.path).fetchAll(db).map(\.entry)
        }
        let desired = salvage(path, "read the desired set") { db in
            try DesiredPolicyRow.order(DesiredPolicyRow.Columns.addedNs, DesiredPolicyRow.Columns.name).fetchAll(db).map(\.policy)
        }
        let moved = try moveAside(directory: directory, nowNs: nowNs)
        let store = try StateStore(directory: directory, checkIntegrity: true, health: health)
        let damage = DamagedState(problem: failure.summary, movedTo: moved, journal: journal, desiredSet: desired)

        var imported = 0
        var importError: StateStoreError?
        if case .success(let policies) = desired {
            for policy in policies {
                do throws(StateStoreError) {
                    try store.setDesired(policy)
                    imported += 1
                } catch {
                    importError = error
                }
            }
        }
        health.report(.database, summary(damage, imported: imported, importError: importError))
        if case .failure(let error) = desired {
            health.report(.desiredSet, "the desired policy set could not be read from the damaged database (\(error.summary)): the daemon starts with no saved policies and does not fall back to the default set. Load the policies again (`mmpolicy load`); the damaged file \(moved.first ?? path) may still show them to `sqlite3` (`SELECT * FROM desired_policy`), and its audit trail shows what was loaded.")
        }
        return (store, damage)
    }

    /// Reads `body` from the database at `path` on a read-only connection
    /// of its own (which does not write the file, nor checkpoint its -wal).
    static func salvage<T>(_ path: String, _ operation: String, _ body: @escaping (Database) throws -> T) -> Result<T, StateStoreError> {
        do {
            return .success(try StateStore.readOnlyConnection(path).read(body))
        } catch {
            return .failure(StateStoreError.database(error, path: path, operation: operation, opening: false))
        }
    }

    /// Renames `state.sqlite` and the files SQLite keeps beside it to
    /// `state.sqlite.damaged-<UTC time>[-wal|-shm|-journal]`; returns the new
    /// paths, the database first. All or none: a file SQLite would pair with
    /// a fresh database (a stale -wal) must not stay behind.
    static func moveAside(directory: String, nowNs: Int64) throws(StateStoreError) -> [String] {
        let secure: SecureDirectory
        do throws(SecureDirectoryError) {
            secure = try SecureDirectory(directory, purpose: "state directory", access: .ownerOnly)
        } catch {
            throw StateStoreError.insecure(error, directory: directory)
        }
        var base = StateStore.fileName + ".damaged-" + compactUTC(nowNs)
        var attempt = 1
        while StateStore.fileNames.contains(where: { (try? secure.entryType(base + $0.dropFirst(StateStore.fileName.count))) != nil }) {
            attempt += 1
            base = StateStore.fileName + ".damaged-" + compactUTC(nowNs) + "-\(attempt)"
        }
        var moved: [(from: String, to: String)] = []
        // The -wal, -shm and -journal first, the database last: a failure leaves the database where it was.
        for name in StateStore.fileNames.reversed() {
            let target = base + name.dropFirst(StateStore.fileName.count)
            do throws(SecureDirectoryError) {
                if try secure.rename(name, to: target) { moved.append((name, target)) }
            } catch {
                for (from, to) in moved { _ = try? secure.rename(to, to: from) }
                throw StateStoreError(kind: .cannotOpen, path: secure.pathOf(name), operation: "move the damaged database aside",
                                      underlying: error, fix: "Move \(secure.pathOf(name)) and the files beside it out of the way by hand, then start the daemon again.")
            }
        }
        return moved.reversed().map { secure.pathOf($0.to) }
    }

    /// One paragraph for the log, the audit trail and `status`.
    static func summary(_ damage: DamagedState, imported: Int, importError: StateStoreError?) -> String {
        var text = "the state database was damaged (\(damage.problem)): "
        text += "moved aside to \(damage.movedTo.joined(separator: ", ")) (nothing of it deleted) and a fresh database begun"
        switch damage.journal {
        case .success(let entries): text += "; its knob journal was read (\(entries.count) entr\(entries.count == 1 ? "y" : "ies"), restored now)"
        case .failure(let error): text += "; its knob journal could NOT be read (\(error.summary)): the kernel defaults are restored instead, see the next message"
        }
        switch damage.desiredSet {
        case .success(let policies):
            text += "; its desired set was read (\(policies.count) polic\(policies.count == 1 ? "y" : "ies")"
            text += policies.isEmpty ? ")" : ": \(policies.map(\.name).joined(separator: ", ")); \(imported) saved in the fresh database)"
            if let importError { text += " but saving them failed: \(importError)" }
        case .failure:
            text += "; its desired set could NOT be read (see the next message)"
        }
        return text + ". The audit trail before now is in the damaged file only. Look at the file system holding the state directory (dmesg, SMART), and remove the damaged file once it is no longer wanted."
    }

    /// "20261201T041042Z": a timestamp fit for a file name.
    static func compactUTC(_ ns: Int64) -> String {
        String(formatUTC(ns).filter { $0 != "-" && $0 != ":" })
    }
}
