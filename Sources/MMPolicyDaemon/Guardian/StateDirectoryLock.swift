import BPFKit
import MMPolicyCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// An exclusive flock(2) on `<state directory>/daemon.lock`: whoever holds
/// it may change kernel knobs recorded in that directory's journal.
///
/// It exists so that exactly one process acts on a state directory at a
/// time. The daemon takes it before it touches anything and holds it for
/// life (recording its pid in the file for people and error messages); the
/// guardian takes it only after its daemon died, to restore the journal. So
/// a daemon restarted right after a crash and the old daemon's guardian
/// cannot interleave: whichever gets the lock first does the restore, and a
/// guardian never acts while a daemon runs. The descriptor is close-on-exec
/// (children do not inherit the lock) and closing it, by release or by the
/// process dying, drops the lock.
public final class StateDirectoryLock: Sendable {
    /// The lock file.
    public let path: String
    private let fd: FileDescriptor

    /// The lock file's name inside the state directory.
    public static let fileName = "daemon.lock"

    /// Opens (creating it, and the directory, if needed) the lock file of
    /// `directory`. Takes no lock yet. `releasedFirst`: the daemon's lock,
    /// kept where the kernel releases it first if the daemon dies (see
    /// ``ReleasedFirst``), so a guardian gets it without waiting for the
    /// daemon's BPF programs to be torn down.
    ///
    /// The directory and the file are opened through ``SecureDirectory``:
    /// no symbolic link is followed, the directory must be root's and not
    /// writable by others (a looser 0755 is tightened to 0700), and the lock
    /// file must be a regular root-owned file with one link (created 0600).
    public init(directory: String, releasedFirst: Bool = false) throws(StateDirectoryLockError) {
        path = directory.hasSuffix("/") ? directory + Self.fileName : directory + "/" + Self.fileName
        do throws(SecureDirectoryError) {
            let secure = try SecureDirectory(directory, purpose: "state directory", access: .ownerOnly)
            let opened = try secure.openFile(Self.fileName)
            fd = releasedFirst ? FileDescriptor(rawValue: ReleasedFirst.move(opened.rawValue, rank: 0)) : opened
            notices = secure.notices
        } catch {
            switch error.problem {
            case .systemCall:
                throw StateDirectoryLockError(kind: .cannotOpen, directory: directory, detail: error.summary, fix: error.fix)
            default:
                throw StateDirectoryLockError(kind: .insecure, directory: directory, detail: "\(error)")
            }
        }
    }

    /// What was tightened while opening (a directory or file mode), one
    /// sentence each, for the daemon's log.
    public let notices: [String]

    deinit { try? fd.close() }

    /// Takes the lock if it is free; false if another process holds it.
    public func tryLock() throws(StateDirectoryLockError) -> Bool {
        while true {
            if flock(fd.rawValue, LOCK_EX | LOCK_NB) == 0 { return true }
            switch errno {
            case EINTR: continue
            case EWOULDBLOCK: return false
            default:
                throw StateDirectoryLockError(kind: .cannotOpen, directory: directoryPath,
                                              detail: "flock on \(path) failed: \(Errno(rawValue: errno))")
            }
        }
    }

    /// Tries every 10 ms until the lock is taken (true) or `seconds` have
    /// passed (false), without blocking a thread of the concurrency pool.
    public func lock(waitingAtMost seconds: Double) async throws(StateDirectoryLockError) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        while true {
            if try tryLock() { return true }
            if monotonicNanoseconds() >= deadline { return false }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
    }

    /// Writes `pid` as the file's only content (after the lock is taken).
    public func recordOwner(pid: Int32) {
        let text = Array("\(pid)\n".utf8)
        _ = ftruncate(fd.rawValue, 0)
        _ = text.withUnsafeBytes { pwrite(fd.rawValue, $0.baseAddress, $0.count, 0) }
    }

    /// The pid the last daemon to hold the lock wrote into the file.
    public var recordedPID: Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = buffer.withUnsafeMutableBytes { pread(fd.rawValue, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return Int32(String(decoding: buffer[..<n].filter { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }, as: UTF8.self))
    }

    /// The process holding the lock now, from /proc/locks (nil if none, or unknown).
    public var holder: Int32? {
        var info = stat()
        guard fstat(fd.rawValue, &info) == 0, let text = try? String(contentsOfProcFile: "/proc/locks") else { return nil }
        let device = UInt64(info.st_dev)
        let major = ((device >> 8) & 0xfff) | ((device >> 32) & ~UInt64(0xfff))
        let minor = (device & 0xff) | ((device >> 12) & ~UInt64(0xff))
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters are marked "->".
        for line in text.split(separator: "\n") where !line.contains("->") {
            let fields = line.split(separator: " ")
            guard fields.count >= 6, fields[1] == "FLOCK", let pid = Int32(fields[4]) else { continue }
            let id = fields[5].split(separator: ":")
            guard id.count == 3, UInt64(id[0], radix: 16) == major, UInt64(id[1], radix: 16) == minor,
                  UInt64(id[2]) == UInt64(info.st_ino) else { continue }
            return pid
        }
        return nil
    }

    private var directoryPath: String { String(path.dropLast(Self.fileName.count + 1)) }
}

/// Why the state directory's lock could not be taken.
public struct StateDirectoryLockError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The directory or its lock file could not be made or opened.
        case cannotOpen
        /// Another process held the lock for as long as we waited.
        case held
        /// The directory or lock file is a symbolic link, has the wrong owner
        /// or is writable by others (see ``SecureDirectory``); `detail` is
        /// the whole paragraph.
        case insecure
    }

    public var kind: Kind
    public var directory: String
    /// For `.cannotOpen`: what failed. For `.held`: who holds it, as best known.
    public var detail: String
    /// For `.cannotOpen`: the fix, when more is known than the generic one.
    public var fix: String?

    public init(kind: Kind, directory: String, detail: String, fix: String? = nil) {
        self.kind = kind
        self.directory = directory
        self.detail = detail
        self.fix = fix
    }

    /// Another process holds the lock of `directory`: `holder` (from
    /// /proc/locks) and `recordedPID` (what the last daemon wrote) name it.
    static func held(directory: String, holder: Int32?, recordedPID: Int32?, waitedSeconds: Double) -> StateDirectoryLockError {
        let who: String
        if let holder, let name = try? ProcessSnapshot.read(pid: holder).comm {
            who = name == Guardian.processName
                ? "the guardian of a daemon that just died (pid \(holder)) is restoring its knobs and has held"
                : "another mmpolicy daemon (pid \(holder), \(name)) is using it and has held"
        } else if let recordedPID, ProcessSnapshot.isAlive(pid: recordedPID) {
            who = "another mmpolicy daemon (pid \(recordedPID)) is using it and has held"
        } else {
            who = "another process has held"
        }
        return StateDirectoryLockError(kind: .held, directory: directory,
                                       detail: "\(who) \(directory)/\(StateDirectoryLock.fileName) for more than \(Int(waitedSeconds)) s")
    }

    public var description: String {
        switch kind {
        case .cannotOpen:
            return "cannot lock state directory \(directory): \(detail). \(fix ?? "Run the daemon as root on a writable file system, or choose another directory with --state-dir.")"
        case .insecure:
            return detail
        case .held:
            return "state directory \(directory) is in use: \(detail). Stop that daemon first (`mmpolicy status --socket PATH` shows it), or give this one its own state with --state-dir DIR (and its own --socket)."
        }
    }
}
