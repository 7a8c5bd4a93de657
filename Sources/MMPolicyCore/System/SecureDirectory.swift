import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// A directory the daemon (root) keeps files in, opened so that nobody else
/// can redirect those files: the state directory (`daemon.lock`,
/// `state.sqlite`) and the control socket's directory.
///
/// It exists because a root daemon that opens `<dir>/daemon.lock` by path
/// follows whatever is there: a symbolic link planted in a directory another
/// user can write would make it truncate `/etc/shadow`. So:
///
/// - The path is walked one component at a time with
///   `openat(O_NOFOLLOW | O_DIRECTORY)` from `/` (or the working directory):
///   a symbolic link in any component is refused, not followed. Give the
///   real path (`realpath DIR`) instead.
/// - Every parent directory must be owned by root (or the daemon's user) and
///   either not writable by group and others, or sticky. Parents like `/tmp`
///   (root, mode 1777) are acceptable: with the sticky bit set, other users
///   can create entries there but cannot rename or remove an entry they do
///   not own, so they cannot swap our root-owned directory for something of
///   theirs. A parent that is writable by others and not sticky, or owned by
///   another user, is refused.
/// - The directory itself must be owned by the daemon's user (root) and not
///   writable by group or others, or it is refused: someone else may already
///   have planted files in it. With ``Access/ownerOnly`` (the state
///   directory) looser read or search bits (0755, 0750) are tightened to
///   0700 and reported in ``notices``; with ``Access/traversable`` (the
///   socket directory, which clients must be able to enter) 0755 is kept.
/// - Missing components are created: the directory itself 0700
///   (``Access/ownerOnly``) or 0755 (``Access/traversable``), parents 0755,
///   whatever the umask.
/// - Files are opened relative to the directory's descriptor with
///   `O_NOFOLLOW | O_CLOEXEC`, created 0600; an existing file must be a
///   regular file owned by the daemon's user with one link (a hard link to
///   another file is refused), and a looser mode is tightened to 0600.
///
/// Files that a library opens by path (SQLite) cannot use the descriptor;
/// ``checkFile(_:)`` validates them right before, which leaves a window only
/// for processes that can already write the directory, i.e. root.
public final class SecureDirectory: Sendable {
    /// Who may enter the directory besides its owner.
    public enum Access: Sendable, Equatable {
        /// Mode 0700: group and other bits of an existing directory are removed.
        case ownerOnly
        /// Up to 0755: others may enter and read, never write.
        case traversable
    }

    /// The path as given.
    public let path: String
    /// What the directory is for, in messages ("state directory").
    public let purpose: String
    /// An open descriptor of the directory (O_RDONLY | O_DIRECTORY), valid
    /// for the object's lifetime.
    public let descriptor: Int32
    /// What was tightened (one sentence each), for the log: the directory's
    /// mode when it was opened, and files' modes as they are opened.
    public var notices: [String] { noticeList.withLock { $0 } }
    private let noticeList: Mutex<[String]>

    /// The uid that must own the directory and its files: root when the
    /// daemon runs as root (its only supported way), else the caller, so
    /// that tests and unprivileged dry runs check the same rules.
    public static var expectedOwner: uid_t { geteuid() }

    /// Opens (creating if `create` and missing) the directory at `path`,
    /// refusing symbolic links and unsafe owners or modes as described above.
    public init(_ path: String, purpose: String, access: Access, create: Bool = true) throws(SecureDirectoryError) {
        self.path = path
        self.purpose = purpose
        let components = path.split(separator: "/").map(String.init)
        let start = path.hasPrefix("/") ? "/" : "."
        var current = Glibc.open(start, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard current >= 0 else {
            throw SecureDirectoryError.systemCall("open", path: start, purpose: purpose, errno: Errno(rawValue: errno))
        }
        var parent = start
        var notices: [String] = []
        do throws(SecureDirectoryError) {
            guard !components.isEmpty else {
                // "/" or ".": not a directory of its own, and never to be chmod-ed.
                throw SecureDirectoryError.systemCall("use a directory of its own at", path: path, purpose: purpose, errno: .invalidArgument)
            }
            for (index, component) in components.enumerated() {
                let isLast = index == components.count - 1
                // `current` is the parent of `component`.
                try Self.checkParent(current, path: parent, purpose: purpose, of: path)
                let shown = parent == "/" ? "/" + component : parent == "." ? component : parent + "/" + component
                var created = false
                var next = openat(current, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                if next < 0 && errno == ENOENT && create {
                    if mkdirat(current, component, isLast && access == .ownerOnly ? 0o700 : 0o755) == 0 {
                        created = true
                    } else if errno != EEXIST {
                        throw SecureDirectoryError.systemCall("create directory", path: shown, purpose: purpose,
                                                              errno: Errno(rawValue: errno))
                    }
                    next = openat(current, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                }
                guard next >= 0 else {
                    let code = errno
                    var info = stat()
                    if code == ELOOP || code == ENOTDIR, fstatat(current, component, &info, AT_SYMLINK_NOFOLLOW) == 0,
                       info.st_mode & S_IFMT == S_IFLNK {
                        throw SecureDirectoryError(path: shown, purpose: purpose, problem: .symbolicLink, errno: .tooManySymbolicLinkLevels)
                    }
                    throw SecureDirectoryError.systemCall("open directory", path: shown, purpose: purpose, errno: Errno(rawValue: code))
                }
                Glibc.close(current)
                current = next
                parent = shown
                if created {
                    // Whatever the umask: parents and a traversable directory 0755, a private one 0700.
                    _ = fchmod(current, isLast && access == .ownerOnly ? 0o700 : 0o755)
                }
                if isLast {
                    try Self.checkDirectory(current, path: path, purpose: purpose, access: access, created: created, notices: &notices)
                }
            }
        } catch {
            Glibc.close(current)
            throw error
        }
        descriptor = current
        noticeList = Mutex(notices)
    }

    deinit { Glibc.close(descriptor) }

    /// `path/name`, for messages.
    public func pathOf(_ name: String) -> String {
        path.hasSuffix("/") ? path + name : path + "/" + name
    }

    /// Opens `name` in the directory read-write without following a symbolic
    /// link, creating it with mode 0600 if `create`. An existing file must be
    /// a regular file owned by the daemon's user with a single link; a looser
    /// mode is tightened to 0600 (and reported in ``notices``).
    public func openFile(_ name: String, create: Bool = true) throws(SecureDirectoryError) -> FileDescriptor {
        let flags = O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | (create ? O_CREAT : 0)
        let fd = openat(descriptor, name, flags, 0o600)
        guard fd >= 0 else { throw openFailure(name, errno: errno) }
        do throws(SecureDirectoryError) {
            try checkOpenFile(fd, name: name)
        } catch {
            Glibc.close(fd)
            throw error
        }
        // Back to blocking (O_NONBLOCK only kept a FIFO from hanging the open).
        let status = fcntl(fd, F_GETFL)
        if status >= 0 { _ = fcntl(fd, F_SETFL, status & ~O_NONBLOCK) }
        return FileDescriptor(rawValue: fd)
    }

    /// Checks `name` if it exists (true) the way ``openFile(_:create:)``
    /// does, for a file a library will open by path; false if it is missing.
    @discardableResult
    public func checkFile(_ name: String) throws(SecureDirectoryError) -> Bool {
        let fd = openat(descriptor, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)
        guard fd >= 0 else {
            if errno == ENOENT { return false }
            throw openFailure(name, errno: errno)
        }
        defer { Glibc.close(fd) }
        try checkOpenFile(fd, name: name)
        return true
    }

    /// ``checkFile(_:)`` without opening the file (`fstatat` without
    /// following a link): for a file another library holds open with POSIX
    /// record locks, as SQLite holds its database, -wal and -shm. Such locks
    /// belong to the process and the file, and closing any descriptor of the
    /// file drops them all: another process's SQLite connection would then
    /// take itself for the last one and delete the -wal and -shm from under
    /// this process's connections.
    @discardableResult
    public func checkFileWithoutOpening(_ name: String) throws(SecureDirectoryError) -> Bool {
        var info = stat()
        guard fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return false }
            throw SecureDirectoryError.systemCall("stat", path: pathOf(name), purpose: purpose, errno: Errno(rawValue: errno))
        }
        if info.st_mode & S_IFMT == S_IFLNK {
            throw SecureDirectoryError(path: pathOf(name), purpose: purpose, problem: .symbolicLink, errno: .tooManySymbolicLinkLevels)
        }
        // A regular file, checked just above: fchmodat follows no link here (only root could swap it meanwhile).
        try check(info, name: name) { fchmodat(descriptor, name, 0o600, 0) }
        return true
    }

    /// Creates `name` empty with mode 0600 unless it exists (then checks it).
    public func createFileIfMissing(_ name: String) throws(SecureDirectoryError) {
        let fd = try openFile(name, create: true)
        try? fd.close()
    }

    /// The type bits (S_IFMT) of `name` without following a symbolic link,
    /// nil if it does not exist.
    public func entryType(_ name: String) throws(SecureDirectoryError) -> mode_t? {
        var info = stat()
        guard fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 else {
            if errno == ENOENT { return nil }
            throw SecureDirectoryError.systemCall("stat", path: pathOf(name), purpose: purpose, errno: Errno(rawValue: errno))
        }
        return info.st_mode & S_IFMT
    }

    /// Renames `name` to `newName` inside the directory, never replacing an
    /// existing `newName` (EEXIST) and never following a link (the entry
    /// itself is renamed). False if `name` does not exist.
    @discardableResult
    public func rename(_ name: String, to newName: String) throws(SecureDirectoryError) -> Bool {
        guard try entryType(name) != nil else { return false }
        guard try entryType(newName) == nil else {
            throw SecureDirectoryError.systemCall("rename \(name) to", path: pathOf(newName), purpose: purpose, errno: .fileExists)
        }
        guard renameat(descriptor, name, descriptor, newName) == 0 else {
            throw SecureDirectoryError.systemCall("rename \(name) to", path: pathOf(newName), purpose: purpose, errno: Errno(rawValue: errno))
        }
        return true
    }

    /// Removes `name` if it is a socket (true); never follows a symbolic
    /// link. False if it is missing; throws if it is anything else.
    public func removeSocket(_ name: String) throws(SecureDirectoryError) -> Bool {
        guard let type = try entryType(name) else { return false }
        guard type == S_IFSOCK else {
            throw SecureDirectoryError(path: pathOf(name), purpose: purpose,
                                       problem: type == S_IFLNK ? .symbolicLink : .notASocket, errno: nil)
        }
        guard unlinkat(descriptor, name, 0) == 0 else {
            if errno == ENOENT { return false }
            throw SecureDirectoryError.systemCall("remove", path: pathOf(name), purpose: purpose, errno: Errno(rawValue: errno))
        }
        return true
    }

    // MARK: - Checks

    private func openFailure(_ name: String, errno code: Int32) -> SecureDirectoryError {
        var info = stat()
        if code == ELOOP || (fstatat(descriptor, name, &info, AT_SYMLINK_NOFOLLOW) == 0 && info.st_mode & S_IFMT == S_IFLNK) {
            return SecureDirectoryError(path: pathOf(name), purpose: purpose, problem: .symbolicLink, errno: .tooManySymbolicLinkLevels)
        }
        return SecureDirectoryError.systemCall("open", path: pathOf(name), purpose: purpose, errno: Errno(rawValue: code))
    }

    private func checkOpenFile(_ fd: Int32, name: String) throws(SecureDirectoryError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SecureDirectoryError.systemCall("stat", path: pathOf(name), purpose: purpose, errno: Errno(rawValue: errno))
        }
        try check(info, name: name) { fchmod(fd, 0o600) }
    }

    private func check(_ info: stat, name: String, tighten: () -> Int32) throws(SecureDirectoryError) {
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw SecureDirectoryError(path: pathOf(name), purpose: purpose, problem: .notARegularFile, errno: nil)
        }
        guard info.st_uid == Self.expectedOwner else {
            throw SecureDirectoryError(path: pathOf(name), purpose: purpose,
                                       problem: .wrongOwner(uid: info.st_uid, expected: Self.expectedOwner), errno: nil)
        }
        guard info.st_nlink == 1 else {
            throw SecureDirectoryError(path: pathOf(name), purpose: purpose, problem: .hardLinked(count: Int(info.st_nlink)), errno: nil)
        }
        if info.st_mode & 0o7177 != 0 {
            guard tighten() == 0 else {
                throw SecureDirectoryError.systemCall("chmod 0600", path: pathOf(name), purpose: purpose, errno: Errno(rawValue: errno))
            }
            let notice = "\(pathOf(name)) had mode \(Self.octal(info.st_mode & 0o7777)); set it to 0600 so that only root can read it."
            noticeList.withLock { $0.append(notice) }
        }
    }

    private static func checkParent(_ fd: Int32, path: String, purpose: String, of target: String) throws(SecureDirectoryError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SecureDirectoryError.systemCall("stat", path: path, purpose: purpose, errno: Errno(rawValue: errno))
        }
        guard info.st_uid == 0 || info.st_uid == expectedOwner else {
            throw SecureDirectoryError(path: path, purpose: purpose, problem: .parentWrongOwner(uid: info.st_uid, of: target), errno: nil)
        }
        if info.st_mode & 0o022 != 0 && info.st_mode & S_ISVTX == 0 {
            throw SecureDirectoryError(path: path, purpose: purpose,
                                       problem: .parentWritableByOthers(mode: info.st_mode & 0o7777, of: target), errno: nil)
        }
    }

    private static func checkDirectory(_ fd: Int32, path: String, purpose: String, access: Access, created: Bool,
                                       notices: inout [String]) throws(SecureDirectoryError) {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw SecureDirectoryError.systemCall("stat", path: path, purpose: purpose, errno: Errno(rawValue: errno))
        }
        guard info.st_uid == expectedOwner else {
            throw SecureDirectoryError(path: path, purpose: purpose, problem: .wrongOwner(uid: info.st_uid, expected: expectedOwner), errno: nil)
        }
        let mode = info.st_mode & 0o7777
        guard mode & 0o022 == 0 else {
            throw SecureDirectoryError(path: path, purpose: purpose, problem: .writableByOthers(mode: mode), errno: nil)
        }
        if access == .ownerOnly && mode & 0o7077 != 0 {
            guard fchmod(fd, 0o700) == 0 else {
                throw SecureDirectoryError.systemCall("chmod 0700", path: path, purpose: purpose, errno: Errno(rawValue: errno))
            }
            if !created {
                notices.append("\(purpose) \(path) had mode \(octal(mode)); set it to 0700 so that only root can list or read it.")
            }
        }
    }

    /// `mode` as four octal digits ("0755"), as messages show it.
    public static func octal(_ mode: mode_t) -> String {
        let digits = String(mode, radix: 8)
        return String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}

/// Why a directory or a file in it was refused, in one paragraph naming the
/// path, what is wrong and the fix.
public struct SecureDirectoryError: Error, Sendable, CustomStringConvertible, Equatable {
    public enum Problem: Sendable, Equatable {
        /// The path (or one of its components) is a symbolic link.
        case symbolicLink
        /// The directory or file is owned by `uid`, not `expected`.
        case wrongOwner(uid: uid_t, expected: uid_t)
        /// The directory is writable by group or others.
        case writableByOthers(mode: mode_t)
        /// A parent of `of` is owned by `uid` (neither root nor the daemon's user).
        case parentWrongOwner(uid: uid_t, of: String)
        /// A parent of `of` is writable by group or others and not sticky.
        case parentWritableByOthers(mode: mode_t, of: String)
        /// A file has `count` hard links.
        case hardLinked(count: Int)
        /// A file that should be regular is not (a FIFO, device, directory).
        case notARegularFile
        /// A socket path holds something that is not a socket.
        case notASocket
        /// A system call failed.
        case systemCall(operation: String)
    }

    /// The path that is wrong (the component, not necessarily the whole path).
    public var path: String
    /// What the directory is for ("state directory").
    public var purpose: String
    public var problem: Problem
    public var errno: Errno?

    public init(path: String, purpose: String, problem: Problem, errno: Errno?) {
        self.path = path
        self.purpose = purpose
        self.problem = problem
        self.errno = errno
    }

    static func systemCall(_ operation: String, path: String, purpose: String, errno: Errno) -> SecureDirectoryError {
        SecureDirectoryError(path: path, purpose: purpose, problem: .systemCall(operation: operation), errno: errno)
    }

    /// One sentence: what to do.
    public var fix: String {
        switch problem {
        case .symbolicLink:
            return "Replace the link by a real directory or file owned by root, or pass the real path (see `realpath`)."
        case let .wrongOwner(_, expected):
            return "If the directory is meant for mmpolicy, `chown -R \(expected):\(expected)` it and `chmod 0700` it; otherwise pass another path."
        case .writableByOthers:
            return "Check what is in it, then `chmod go-w` it (0700 for the state directory, 0755 for the socket directory), or pass another path."
        case .parentWrongOwner:
            return "Use a directory whose parents are all owned by root (such as /var/lib or /run), or `chown root` the parent."
        case .parentWritableByOthers:
            return "Use a directory whose parents are not writable by others (such as /var/lib or /run), or `chmod go-w` (or `chmod +t`) the parent."
        case .hardLinked:
            return "Remove the extra link (it may point the daemon at another file), e.g. move the file aside; mmpolicy creates a fresh one."
        case .notARegularFile, .notASocket:
            return "Remove it if it is not needed, or pass another path."
        case .systemCall:
            switch errno {
            case .notDirectory?, .fileExists?:
                return "Something that is not a directory is in the way: remove it or choose another path."
            case .permissionDenied?, .notPermitted?, .readOnlyFileSystem?:
                return "Run the daemon as root on a writable file system, or choose another path."
            default:
                return "Check the path and the file system, or choose another path."
            }
        }
    }

    public var description: String { "\(summary). \(fix)" }

    /// The description without the fix: the path, its purpose and what is wrong.
    public var summary: String {
        let what: String
        switch problem {
        case .symbolicLink:
            what = "it is a symbolic link, and mmpolicy follows no links to or in its \(purpose): a link there could point a root write at any file"
        case let .wrongOwner(uid, expected):
            what = "it is owned by uid \(uid), not \(expected == 0 ? "root" : "uid \(expected)"), so that user could change what the daemon reads and writes there"
        case let .writableByOthers(mode):
            what = "it has mode \(SecureDirectory.octal(mode)), writable by group or others, so another user could plant or replace files in it"
        case let .parentWrongOwner(uid, of):
            what = "it is a parent of \(of) owned by uid \(uid), not root, so that user could move it and substitute another directory"
        case let .parentWritableByOthers(mode, of):
            what = "it is a parent of \(of) with mode \(SecureDirectory.octal(mode)), writable by others without the sticky bit, so another user could substitute another directory"
        case let .hardLinked(count):
            what = "it has \(count) hard links, so writing it would change another file too"
        case .notARegularFile:
            what = "it is not a regular file"
        case .notASocket:
            what = "it is not a socket, and mmpolicy does not delete files it did not create"
        case let .systemCall(operation):
            let code = errno ?? .ioError
            what = "\(operation) failed: \(String(cString: strerror(code.rawValue))) (errno \(code.rawValue))"
        }
        if case .systemCall = problem { return "mmpolicy cannot use \(path) (\(purpose)): \(what)" }
        return "mmpolicy will not use \(path) (\(purpose)): \(what)"
    }
}
