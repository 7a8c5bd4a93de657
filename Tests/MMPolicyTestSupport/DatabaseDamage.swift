import GRDB
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Damages an SQLite database file on purpose, as a failing disk or a stray
/// write would: for tests of what the daemon does with a damaged state
/// database. The file must not be open elsewhere (a stopped daemon's).
public enum DatabaseDamage {
    /// Checkpoints the WAL into the file (so the page's last version is in
    /// the file, not in the -wal), then writes garbage over the root page of
    /// `table`: for a small table, the one page holding all its rows.
    /// Returns the page number.
    @discardableResult
    public static func corruptRootPage(of table: String, in path: String) throws -> Int {
        let (page, pageSize) = try DatabaseQueue(path: path).writeWithoutTransaction { db -> (Int, Int) in
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            let page = try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE type = 'table' AND name = ?",
                                        arguments: [table])
            let size = try Int.fetchOne(db, sql: "PRAGMA page_size")
            guard let page, let size else { throw Errno.noSuchFileOrDirectory }
            return (page, size)
        }
        try overwrite(path, offset: (page - 1) * pageSize, count: pageSize)
        return page
    }

    /// Writes garbage over the file's first `count` bytes (SQLite's header:
    /// the file is then not a database at all).
    public static func overwriteHeader(_ path: String, count: Int = 100) throws {
        try overwrite(path, offset: 0, count: count)
    }

    static func overwrite(_ path: String, offset: Int, count: Int) throws {
        let fd = try FileDescriptor.open(FilePath(path), .writeOnly)
        try fd.closeAfter {
            let garbage = [UInt8](repeating: 0xA5, count: count)
            _ = try fd.writeAll(toAbsoluteOffset: Int64(offset), garbage)
            guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
        }
    }

    /// Makes every insert into `table` fail (a trigger raising an error), as
    /// a write error would, without touching any other table; `heal` drops it.
    public static func refuseInserts(into table: String, in path: String) throws {
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: "CREATE TRIGGER IF NOT EXISTS test_refuse_\(table) BEFORE INSERT ON \(table) BEGIN SELECT RAISE(FAIL, 'test: \(table) refuses writes'); END")
        }
    }

    /// Drops what ``refuseInserts(into:in:)`` added.
    public static func heal(_ table: String, in path: String) throws {
        try DatabaseQueue(path: path).write { db in try db.execute(sql: "DROP TRIGGER IF EXISTS test_refuse_\(table)") }
    }
}
