import Glibc
import MMPolicyCore
@testable import MMPolicyDaemon
import MMPolicyTestSupport
import SystemPackage
import Testing

/// The state and socket directories against a planted symbolic link, hard
/// link, foreign owner or loose mode: each is refused with a paragraph that
/// names the path, what is wrong and the fix, and nothing outside the
/// directory is touched; a root-owned 0755 state directory is tightened.
/// Run as root (chown to 65534 stands for "another user").
@Suite struct StateDirectorySecurityTests {
    static let nobody: uid_t = 65534

    // MARK: state directory: symbolic links

    @Test func lockFileLinkedToARootFileIsRefusedAndTheFileKept() throws {
        let scratch = try ScratchDirectory()
        let target = try scratch.write("precious", "root's file\n")
        let state = try Self.makeDirectory(scratch.path + "/state", mode: 0o700)
        #expect(symlink(target, state + "/daemon.lock") == 0)

        let error = try #require(throws: StateDirectoryLockError.self) { try StateDirectoryLock(directory: state) }
        #expect(error.kind == .insecure)
        #expect(error.description.contains("mmpolicy will not use \(state)/daemon.lock (state directory): it is a symbolic link"))
        #expect(error.description.contains("pass the real path"))
        #expect(Self.contents(target) == "root's file\n", "the link's target is neither truncated nor written")
    }

    @Test func databaseLinkedElsewhereIsRefusedAndNothingCreatedThere() throws {
        let scratch = try ScratchDirectory()
        let state = try Self.makeDirectory(scratch.path + "/state", mode: 0o700)
        let missing = scratch.path + "/elsewhere.sqlite"
        #expect(symlink(missing, state + "/state.sqlite") == 0)
        let error = try #require(throws: StateStoreError.self) { try StateStore(directory: state) }
        #expect(error.kind == .insecure)
        #expect(error.path == state + "/state.sqlite")
        #expect(error.description.contains("mmpolicy will not use \(state)/state.sqlite (state directory): it is a symbolic link"))
        #expect(access(missing, F_OK) != 0, "the link's target was not created")

        let existing = try scratch.write("other.db", "not yours\n")
        #expect(unlink(state + "/state.sqlite") == 0 && symlink(existing, state + "/state.sqlite") == 0)
        #expect(throws: StateStoreError.self) { try StateStore(directory: state) }
        #expect(Self.contents(existing) == "not yours\n")
    }

    @Test func walOrShmLinkIsRefused() throws {
        for suffix in ["-wal", "-shm"] {
            let scratch = try ScratchDirectory()
            let state = try Self.makeDirectory(scratch.path + "/state", mode: 0o700)
            let target = try scratch.write("precious", "keep\n")
            #expect(symlink(target, state + "/state.sqlite" + suffix) == 0)
            let error = try #require(throws: StateStoreError.self) { try StateStore(directory: state) }
            #expect(error.kind == .insecure)
            #expect(error.description.contains("\(state)/state.sqlite\(suffix) (state directory): it is a symbolic link"))
            #expect(Self.contents(target) == "keep\n")
            #expect(access(state + "/state.sqlite", F_OK) != 0, "nothing was opened before the check")
        }
    }

    @Test func stateDirectoryThatIsALinkIsRefused() throws {
        let scratch = try ScratchDirectory()
        let real = try Self.makeDirectory(scratch.path + "/real", mode: 0o700)
        let link = scratch.path + "/state"
        #expect(symlink(real, link) == 0)
        let lockError = try #require(throws: StateDirectoryLockError.self) { try StateDirectoryLock(directory: link) }
        #expect(lockError.description.contains("mmpolicy will not use \(link) (state directory): it is a symbolic link"))
        let storeError = try #require(throws: StateStoreError.self) { try StateStore(directory: link) }
        #expect(storeError.kind == .insecure && storeError.path == link)
        #expect(Self.entries(real).isEmpty, "nothing was created through the link")
    }

    @Test func aLinkInAParentComponentIsRefused() throws {
        let scratch = try ScratchDirectory()
        let real = try Self.makeDirectory(scratch.path + "/real", mode: 0o755)
        #expect(symlink(real, scratch.path + "/var") == 0)
        let state = scratch.path + "/var/lib/mmpolicy"
        let error = try #require(throws: StateStoreError.self) { try StateStore(directory: state) }
        #expect(error.kind == .insecure && error.path == scratch.path + "/var")
        #expect(error.description.contains("mmpolicy will not use \(scratch.path)/var (state directory): it is a symbolic link"))
        #expect(Self.entries(real).isEmpty, "no directory was created through the link")
    }

    @Test func aHardLinkedLockFileIsRefused() throws {
        let scratch = try ScratchDirectory()
        let target = try scratch.write("precious", "root's file\n")
        let state = try Self.makeDirectory(scratch.path + "/state", mode: 0o700)
        #expect(link(target, state + "/daemon.lock") == 0)
        let error = try #require(throws: StateDirectoryLockError.self) { try StateDirectoryLock(directory: state) }
        #expect(error.kind == .insecure)
        #expect(error.description.contains("\(state)/daemon.lock (state directory): it has 2 hard links"))
        #expect(Self.contents(target) == "root's file\n")
    }

    // MARK: state directory: owner and mode

    @Test func stateDirectoryOwnedByAnotherUserIsRefused() throws {
        let scratch = try ScratchDirectory()
        let state = try Self.makeDirectory(scratch.path + "/state", mode: 0o700)
        #expect(chown(state, Self.nobody, Self.nobody) == 0)
        let lockError = try #require(throws: StateDirectoryLockError.self) { try StateDirectoryLock(directory: state) }
        #expect(lockError.kind == .insecure)
        #expect(lockError.description.contains("mmpolicy will not use \(state) (state directory): it is owned by uid 65534, not root"))
        #expect(lockError.description.contains("chown"))
        let storeError = try #require(throws: StateStoreError.self) { try StateStore(directory: state) }
        #expect(storeError.kind == .insecure && storeError.description.contains("owned by uid 65534"))
        #expect(Self.entries(state).isEmpty, "nothing was created in it")
        #expect(Self.mode(state) == 0o700)
    }

    @Test func stateDirectoryWritableByOthersIsRefused() throws {
        for mode: mode_t in [0o770, 0o757] {
            let scratch = try ScratchDirectory()
            let state = try Self.makeDirectory(scratch.path + "/state", mode: mode)
            let error = try #require(throws: StateStoreError.self) { try StateStore(directory: state) }
            #expect(error.description.contains("mmpolicy will not use \(state) (state directory): it has mode \(SecureDirectory.octal(mode)), writable by group or others"))
            #expect(error.description.contains("chmod go-w"))
            #expect(Self.entries(state).isEmpty)
            #expect(Self.mode(state) == mode, "a writable directory is refused, not silently fixed")
        }
    }

    @Test func aLooseRootOwnedStateDirectoryIsTightenedAndItsFilesAre0600() throws {
        let scratch = try ScratchDirectory()
        let state = try Self.makeDirectory(scratch.path + "/state", mode: 0o755)
        let lock = try StateDirectoryLock(directory: state)
        #expect(Self.mode(state) == 0o700)
        #expect(lock.notices == ["state directory \(state) had mode 0755; set it to 0700 so that only root can list or read it."])
        #expect(Self.mode(state + "/daemon.lock") == 0o600)

        let store = try StateStore(directory: state)
        for name in ["state.sqlite", "state.sqlite-wal", "state.sqlite-shm"] {
            #expect(Self.mode(state + "/" + name) == 0o600, "\(name)")
        }
        _ = store
    }

    @Test func looseDatabaseFilesAreTightened() throws {
        let scratch = try ScratchDirectory()
        do { _ = try StateStore(directory: scratch.path) }
        #expect(chmod(scratch.path + "/state.sqlite", 0o644) == 0)
        let store = try StateStore(directory: scratch.path)
        #expect(Self.mode(scratch.path + "/state.sqlite") == 0o600)
        #expect(store.notices.contains("\(scratch.path)/state.sqlite had mode 0644; set it to 0600 so that only root can read it."))
    }

    @Test func aParentWritableByOthersNeedsTheStickyBit() throws {
        let scratch = try ScratchDirectory()
        let open = try Self.makeDirectory(scratch.path + "/open", mode: 0o777)
        let error = try #require(throws: StateStoreError.self) { try StateStore(directory: open + "/state") }
        #expect(error.description.contains("mmpolicy will not use \(open) (state directory): it is a parent of \(open)/state with mode 0777"))
        #expect(access(open + "/state", F_OK) != 0)
        #expect(chmod(open, 0o1777) == 0)
        _ = try StateStore(directory: open + "/state")  // Like /tmp: sticky, so accepted.
        #expect(Self.mode(open + "/state") == 0o700)
    }

    // MARK: socket directory

    @Test func socketDirectoryOwnedByAnotherUserOrWritableIsRefused() throws {
        let scratch = try ScratchDirectory()
        let directory = try Self.makeDirectory(scratch.path + "/run", mode: 0o755)
        #expect(chown(directory, Self.nobody, Self.nobody) == 0)
        let owned = try #require(throws: ControlSocketError.self) {
            _ = try ControlServer(socketPath: directory + "/ctl.sock") { _, _ in ControlResponse() }
        }
        #expect(owned.description.contains("mmpolicy will not use \(directory) (control socket directory): it is owned by uid 65534, not root"))
        #expect(Self.entries(directory).isEmpty)

        #expect(chown(directory, 0, 0) == 0 && chmod(directory, 0o775) == 0)
        let writable = try #require(throws: ControlSocketError.self) {
            _ = try ControlServer(socketPath: directory + "/ctl.sock") { _, _ in ControlResponse() }
        }
        #expect(writable.description.contains("mmpolicy will not use \(directory) (control socket directory): it has mode 0775, writable by group or others"))
        #expect(Self.entries(directory).isEmpty)
    }

    @Test func socketDirectoryThatIsALinkIsRefused() throws {
        let scratch = try ScratchDirectory()
        let real = try Self.makeDirectory(scratch.path + "/real", mode: 0o755)
        #expect(symlink(real, scratch.path + "/run") == 0)
        let error = try #require(throws: ControlSocketError.self) {
            _ = try ControlServer(socketPath: scratch.path + "/run/ctl.sock") { _, _ in ControlResponse() }
        }
        #expect(error.description.contains("mmpolicy will not use \(scratch.path)/run (control socket directory): it is a symbolic link"))
        #expect(Self.entries(real).isEmpty)
    }

    @Test func aRootOwned0755SocketDirectoryIsKept() async throws {
        let scratch = try ScratchDirectory()
        let directory = try Self.makeDirectory(scratch.path + "/run", mode: 0o755)
        let server = try ControlServer(socketPath: directory + "/ctl.sock") { _, _ in ControlResponse() }
        #expect(Self.mode(directory) == 0o755, "clients must be able to enter it")
        server.shutdown()
    }

    @Test func aStaleSocketPathThatIsALinkIsNotFollowed() throws {
        let scratch = try ScratchDirectory()
        let directory = try Self.makeDirectory(scratch.path + "/run", mode: 0o755)
        // A stale socket elsewhere (bound, then closed: nobody answers on it).
        let elsewhere = scratch.path + "/other.sock"
        let raw = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        #expect(raw >= 0)
        let address = try #require(UnixSocketAddress(elsewhere))
        #expect(address.withSockaddr { bind(raw, $0, $1) } == 0)
        close(raw)
        let path = directory + "/ctl.sock"
        #expect(symlink(elsewhere, path) == 0)

        let error = try #require(throws: ControlSocketError.self) {
            _ = try ControlServer(socketPath: path) { _, _ in ControlResponse() }
        }
        #expect(error.description.contains("mmpolicy will not use \(path) (control socket directory): it is a symbolic link"))
        var info = stat()
        #expect(lstat(elsewhere, &info) == 0 && info.st_mode & S_IFMT == S_IFSOCK, "the link's target was not removed")
        #expect(lstat(path, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK, "the link itself is left for the operator")
    }

    // MARK: - Helpers

    static func makeDirectory(_ path: String, mode: mode_t) throws -> String {
        guard mkdir(path, mode) == 0, chmod(path, mode) == 0 else { throw Errno(rawValue: errno) }
        return path
    }

    static func mode(_ path: String) -> mode_t {
        var info = stat()
        return lstat(path, &info) == 0 ? info.st_mode & 0o7777 : 0
    }

    static func contents(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        return n >= 0 ? String(decoding: buffer[..<n], as: UTF8.self) : nil
    }

    static func entries(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}
