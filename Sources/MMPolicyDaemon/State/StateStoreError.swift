import GRDB
import MMPolicyCore
import SystemPackage

/// Why the state store could not be opened, read or written.
///
/// The daemon shows this text to the operator (log, control socket), so it
/// names the file concerned, what SQLite or the kernel said, and one fix.
public struct StateStoreError: Error, Sendable, CustomStringConvertible {
    /// What went wrong, coarse enough to branch on.
    public enum Kind: Sendable, Equatable {
        /// The state directory does not exist and could not be created.
        case cannotCreateDirectory
        /// The file at the database path is not an SQLite database (or is corrupt).
        case notADatabase
        /// SQLite's integrity check (`PRAGMA quick_check`) found damage;
        /// `underlying` is an ``IntegrityCheckFailure`` with what it said.
        case damaged
        /// The database was migrated by a newer mmpolicy than this one.
        case newerSchema
        /// The database could not be opened or migrated for another reason.
        case cannotOpen
        /// A read or write on an open store failed.
        case operationFailed
        /// The state directory or a database file is a symbolic link, owned
        /// by another user, writable by others or hard-linked
        /// (``SecureDirectory``); `underlying` says which and the fix.
        case insecure
    }

    public var kind: Kind
    /// The database file, or the directory for `.cannotCreateDirectory`.
    public var path: String
    /// What the store was doing, e.g. "open", "append events".
    public var operation: String
    /// What SQLite or the kernel reported; nil when the store itself found the problem.
    public var underlying: (any Error)?
    /// One sentence telling the operator what to do about it.
    public var fix: String

    public init(kind: Kind, path: String, operation: String, underlying: (any Error)?, fix: String) {
        self.kind = kind
        self.path = path
        self.operation = operation
        self.underlying = underlying
        self.fix = fix
    }

    /// Whether another connection held a lock on the database past the busy
    /// timeout (SQLITE_BUSY, SQLITE_LOCKED): trying again later may work.
    public var isLocked: Bool {
        guard kind == .operationFailed, let error = underlying as? DatabaseError else { return false }
        return error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED
    }

    public var description: String {
        if kind == .insecure, let underlying { return "\(Self.describe(underlying)). \(fix)" }
        return "\(summary). \(fix)"
    }

    /// The description without the fix: what went wrong, on which file, and why.
    public var summary: String {
        if kind == .insecure, let underlying { return Self.describe(underlying) }
        let cause = underlying.map { ": \(Self.describe($0))" } ?? ""
        let what: String
        switch kind {
        case .cannotCreateDirectory: what = "cannot create state directory \(path)"
        case .notADatabase: what = "state database \(path) is not a usable SQLite database"
        case .damaged: what = "state database \(path) is damaged"
        case .newerSchema: what = "state database \(path) was written by a newer mmpolicy"
        case .cannotOpen: what = "cannot open state database \(path)"
        case .operationFailed: what = "state database \(path): \(operation) failed"
        case .insecure: what = "state directory \(path) is not safe to use"
        }
        return what + cause
    }

    private static func describe(_ error: any Error) -> String {
        if let refused = error as? SecureDirectoryError { return refused.summary }
        if let db = error as? DatabaseError {
            // DatabaseError's description repeats the SQL; the message and code are what a person needs.
            return "\(db.message ?? "SQLite error") (\(db.resultCode))"
        }
        return String(describing: error)
    }

    /// SQLite's integrity check found `path` damaged.
    static func damaged(_ failure: IntegrityCheckFailure, path: String) -> StateStoreError {
        StateStoreError(kind: .damaged, path: path, operation: "check integrity", underlying: failure,
                        fix: damageFix)
    }

    static let damageFix = "Restart the daemon: at start it moves a damaged file aside (with its -wal and -shm files), keeps what it can read from it and begins a fresh one (see docs/state-database.md)."

    /// Whether this says the file is damaged or not a database (as opposed
    /// to unreadable for a reason outside the file: permissions, a full
    /// disk, a lock).
    public var isDamage: Bool {
        if kind == .notADatabase || kind == .damaged { return true }
        if let db = underlying as? DatabaseError { return db.resultCode == .SQLITE_CORRUPT || db.resultCode == .SQLITE_NOTADB }
        return false
    }

    /// The state directory or a file in it was refused or could not be
    /// made: `.cannotCreateDirectory` when a system call failed (the path is
    /// the directory), else `.insecure` (the path is what was refused).
    static func insecure(_ error: SecureDirectoryError, directory: String) -> StateStoreError {
        if case .systemCall = error.problem {
            return StateStoreError(kind: .cannotCreateDirectory, path: directory, operation: "open directory",
                                   underlying: error, fix: error.fix)
        }
        return StateStoreError(kind: .insecure, path: error.path, operation: "open directory", underlying: error, fix: error.fix)
    }

    /// Classifies an error raised by GRDB/SQLite while doing `operation` on `path`.
    static func database(_ error: any Error, path: String, operation: String, opening: Bool = false) -> StateStoreError {
        if let existing = error as? StateStoreError { return existing }
        guard let db = error as? DatabaseError else {
            return StateStoreError(kind: opening ? .cannotOpen : .operationFailed, path: path, operation: operation,
                                   underlying: error, fix: "Report this as a bug in mmpolicy, with the message above.")
        }
        switch db.resultCode {
        case .SQLITE_NOTADB, .SQLITE_CORRUPT:
            return StateStoreError(kind: .notADatabase, path: path, operation: operation, underlying: error, fix: damageFix)
        case .SQLITE_FULL:
            return StateStoreError(kind: opening ? .cannotOpen : .operationFailed, path: path, operation: operation,
                                   underlying: error, fix: "Free space on the file system that holds the state directory.")
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return StateStoreError(kind: opening ? .cannotOpen : .operationFailed, path: path, operation: operation,
                                   underlying: error, fix: "Another process holds the database's write lock: stop any other mmpolicy daemon using this state directory.")
        case .SQLITE_READONLY, .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_AUTH:
            return StateStoreError(kind: opening ? .cannotOpen : .operationFailed, path: path, operation: operation,
                                   underlying: error, fix: "Run the daemon as root and make sure the state directory and its files are writable.")
        default:
            return StateStoreError(kind: opening ? .cannotOpen : .operationFailed, path: path, operation: operation,
                                   underlying: error, fix: "Check the file system holding the state directory; if the error persists, move the database aside and restart.")
        }
    }
}

/// What SQLite's integrity check said about a damaged database: its first
/// lines (at most ``StateStore/integrityCheckLines``), kept so that the
/// error, the log and `status` say which pages or tables are damaged.
public struct IntegrityCheckFailure: Error, Sendable, CustomStringConvertible {
    public var lines: [String]
    public var description: String { "SQLite's integrity check (PRAGMA quick_check) says: " + lines.joined(separator: "; ") }
}
