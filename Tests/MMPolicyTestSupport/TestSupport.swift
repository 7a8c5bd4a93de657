import MMPolicyCore
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where tests find what `make build` produced, and the programs they run.
public enum TestPaths {
    /// The repository root (this file is Tests/MMPolicyTestSupport/TestSupport.swift).
    public static let repository: String = {
        var parts = String(#filePath).split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }()

    public static var objectDirectory: String {
        getenv("MMPOLICY_OBJECT_PATH").map { String(cString: $0) } ?? repository + "/build/bpf"
    }

    public static func policyObject(_ name: String) -> String { "\(objectDirectory)/\(name).bpf.o" }
    public static func fixture(_ name: String) -> String { "\(objectDirectory)/fixtures/\(name).bpf.o" }
    public static var policies: String { repository + "/policies" }

    /// A product built next to the test bundle (.build/<config>/NAME).
    public static func product(_ name: String) -> String {
        var candidates: [String] = []
        if let exe = try? readLink("/proc/self/exe") {
            var parts = exe.split(separator: "/", omittingEmptySubsequences: false)
            while let last = parts.last, !last.hasSuffix(".xctest") && parts.count > 1 { parts.removeLast() }
            if parts.count > 1 { parts.removeLast() }
            candidates.append(parts.joined(separator: "/") + "/" + name)
        }
        candidates.append(repository + "/.build/debug/" + name)
        return candidates.first { access($0, X_OK) == 0 } ?? candidates.last!
    }

    static func readLink(_ path: String) throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n > 0 else { throw Errno(rawValue: errno) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// Reads a whole file (works for /proc and /sys, whose sizes are 0).
public func readFile(_ path: String) throws -> String { try String(contentsOfProcFile: path) }

/// Writes `text` to an existing file (cgroup and /proc knobs).
public func writeFile(_ path: String, _ text: String) throws {
    let fd = try FileDescriptor.open(FilePath(path), .writeOnly)
    try fd.closeAfter { _ = try fd.writeAll(text.utf8) }
}

/// A throwaway cgroup v1/v2 memory cgroup, removed (after killing what is
/// left in it) when released.
public final class TemporaryMemcg {
    public let path: String
    public let mount: MemoryCgroupMount

    /// `mount` defaults to the memory controller's hierarchy; tests of v2
    /// scope membership pass the cgroup2 mount even where it has no memory controller.
    public init(prefix: String = "mmpolicy-test", limitBytes: UInt64? = nil, mount: MemoryCgroupMount? = .detect()) throws {
        guard let mount else { throw Errno.noSuchFileOrDirectory }
        self.mount = mount
        path = "\(mount.path)/\(prefix)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(path, 0o755) == 0 else { throw Errno(rawValue: errno) }
        if let limitBytes {
            try writeFile(path + (mount.version == .v1 ? "/memory.limit_in_bytes" : "/memory.max"), String(limitBytes))
        }
    }

    /// A child cgroup inside this one.
    public func child(_ name: String) throws -> String {
        let child = path + "/" + name
        guard mkdir(child, 0o755) == 0 else { throw Errno(rawValue: errno) }
        return child
    }

    deinit {
        // Depth-first: kill members, then remove children before the parent.
        func remove(_ dir: String) {
            if let d = opendir(dir) {
                while let entry = readdir(d) {
                    let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                    if entry.pointee.d_type == UInt8(DT_DIR), name != ".", name != ".." { remove(dir + "/" + name) }
                }
                closedir(d)
            }
            for _ in 0..<200 {
                let members = ((try? readFile(dir + "/cgroup.procs")) ?? "").split(separator: "\n").compactMap { Int32($0) }
                for pid in members { kill(pid, SIGKILL) }
                if rmdir(dir) == 0 || errno == ENOENT { return }
                usleep(10_000)
            }
        }
        remove(path)
    }
}

/// A process started by a test, killed and reaped when released.
public final class ChildProcess {
    public let pid: pid_t
    private let stdoutFD: Int32

    /// Starts `path` with `arguments` and, if `waitFor` is given, waits until
    /// the child prints a line starting with it (e.g. "ready").
    public init(_ path: String, _ arguments: [String], waitFor marker: String? = "ready", timeoutSeconds: Double = 20) throws {
        var pipeFDs: [Int32] = [0, 0]
        try makeCloseOnExecPipe(&pipeFDs)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
        defer { posix_spawn_file_actions_destroy(&actions) }
        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let rc = posix_spawn(&child, path, &actions, nil, argv, environ)
        close(pipeFDs[1])
        guard rc == 0 else { close(pipeFDs[0]); throw Errno(rawValue: rc) }
        pid = child
        stdoutFD = pipeFDs[0]
        if let marker {
            let line = try readLine(timeoutSeconds: timeoutSeconds)
            guard line.hasPrefix(marker) else {
                kill(pid, SIGKILL)
                throw ChildProcessError.unexpectedOutput(path: path, line: line)
            }
        }
    }

    /// Reads one line of the child's stdout, waiting at most `timeoutSeconds`.
    public func readLine(timeoutSeconds: Double) throws -> String {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        var pfd = pollfd(fd: stdoutFD, events: Int16(POLLIN), revents: 0)
        while true {
            guard poll(&pfd, 1, Int32(timeoutSeconds * 1000)) > 0 else { throw ChildProcessError.timeout }
            let n = read(stdoutFD, &byte, 1)
            if n <= 0 { return String(decoding: line, as: UTF8.self) }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
    }

    deinit {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        close(stdoutFD)
    }
}

public enum ChildProcessError: Error {
    case timeout
    case unexpectedOutput(path: String, line: String)
}

/// A pipe whose ends close on exec, so that children other tests spawn in
/// parallel do not inherit (and hold open) it. posix_spawn's dup2 onto 0/1/2
/// gives the intended child its copy without the flag.
func makeCloseOnExecPipe(_ fds: inout [Int32]) throws {
    guard pipe(&fds) == 0 else { throw Errno(rawValue: errno) }
    for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
}

/// Runs a program to completion; returns its exit status and its stdout and
/// stderr together.
public func runCommand(_ path: String, _ arguments: [String], environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
    var pipeFDs: [Int32] = [0, 0]
        try makeCloseOnExecPipe(&pipeFDs)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 1)
    posix_spawn_file_actions_adddup2(&actions, pipeFDs[1], 2)
    posix_spawn_file_actions_addclose(&actions, pipeFDs[0])
    defer { posix_spawn_file_actions_destroy(&actions) }
    var env: [String] = []
    var index = 0
    while let entry = environ[index] {
        let text = String(cString: entry)
        if let key = text.split(separator: "=", maxSplits: 1).first, environment[String(key)] == nil { env.append(text) }
        index += 1
    }
    env += environment.map { "\($0.key)=\($0.value)" }
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = env.map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) }; envp.forEach { free($0) } }
    var child: pid_t = 0
    let rc = posix_spawn(&child, path, &actions, nil, argv, envp)
    close(pipeFDs[1])
    guard rc == 0 else { close(pipeFDs[0]); throw Errno(rawValue: rc) }
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(pipeFDs[0], &chunk, chunk.count)
        if n <= 0 { break }
        output += chunk[0..<n]
    }
    close(pipeFDs[0])
    var status: Int32 = 0
    waitpid(child, &status, 0)
    let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exitStatus, String(decoding: output, as: UTF8.self))
}

/// Starts `mmpolicy-workload` with `arguments` and waits until it is ready.
public func workload(_ arguments: [String]) throws -> ChildProcess {
    try ChildProcess(TestPaths.product("mmpolicy-workload"), arguments)
}

/// A fresh directory under /tmp for files a test writes (manifests, broken
/// objects), removed with everything in it when released.
public final class ScratchDirectory {
    public let path: String

    public init(prefix: String = "mmpolicy-test") throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw Errno(rawValue: errno)
        }
        path = String(cString: made)
    }

    deinit { Self.removeTree(path) }

    /// Writes `bytes` to `name` inside the directory; returns the file's path.
    @discardableResult
    public func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let file = path + "/" + name
        let fd = try FileDescriptor.open(FilePath(file), .writeOnly, options: [.create, .truncate], permissions: [.ownerReadWrite])
        try fd.closeAfter { _ = try fd.writeAll(bytes) }
        return file
    }

    @discardableResult
    public func write(_ name: String, _ text: String) throws -> String { try write(name, Array(text.utf8)) }

    /// Writes manifest `<name>.toml`; returns its path.
    @discardableResult
    public func manifest(_ name: String, _ text: String) throws -> String { try write(name + ".toml", text) }

    public func makeDirectory(_ name: String) throws -> String {
        var directory = path
        for component in name.split(separator: "/") {
            directory += "/" + component
            guard mkdir(directory, 0o755) == 0 || errno == EEXIST else { throw Errno(rawValue: errno) }
        }
        return directory
    }

    static func removeTree(_ path: String) {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard name != ".", name != ".." else { continue }
                if entry.pointee.d_type == UInt8(DT_DIR) { removeTree(path + "/" + name) } else { unlink(path + "/" + name) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

/// zram swap for a test: a zram device sized, formatted and swapped on, and
/// swapped off and reset when released, even if the test fails.
///
/// By default it takes /dev/zram0 and refuses it when it is already in use
/// (someone else's swap is not ours to reset). `ownDevice: true` creates a
/// device for this test alone (/sys/class/zram-control/hot_add, Linux 4.2)
/// and removes it on release (hot_remove), so that suites running at the
/// same time (the watchdog's and tiering's) do not fight over zram0.
/// `priority` is swapon's -p: swap goes to the highest priority first, so a
/// test that counts what its own device stores gives it the highest one.
/// Swap is global: with several areas on, any process's pages may land on
/// any of them.
public final class ZramSwap {
    /// "/dev/zramN".
    public let device: String
    /// "zramN".
    public let name: String
    let sysfs: String
    /// True when this object created the device (hot_add) and removes it.
    let ownsDevice: Bool
    /// True once the device is ours to swap off and reset. A class's deinit
    /// also runs when its init throws after setting every stored property,
    /// so without this a refused zram0 (someone else's swap) would be reset.
    private var claimed = false

    static let control = "/sys/class/zram-control"

    public init(sizeBytes: UInt64, ownDevice: Bool = false, priority: Int? = nil) throws {
        if ownDevice {
            guard access(Self.control + "/hot_add", R_OK) == 0 else {
                throw ZramSwapError.unavailable("no \(Self.control)/hot_add: this kernel cannot add zram devices (needs Linux 4.2 and the zram module)")
            }
            let text = (try? readFile(Self.control + "/hot_add")) ?? ""
            guard let number = text.split(whereSeparator: \.isWhitespace).first.flatMap({ Int($0) }) else {
                throw ZramSwapError.unavailable("reading \(Self.control)/hot_add gave '\(text)', not a device number")
            }
            name = "zram\(number)"
        } else {
            name = "zram0"
        }
        device = "/dev/" + name
        sysfs = "/sys/block/" + name
        ownsDevice = ownDevice
        claimed = ownDevice
        guard access(sysfs, F_OK) == 0 else {
            release()
            throw ZramSwapError.unavailable("no \(sysfs): this kernel has no zram device")
        }
        if !ownDevice {
            let swaps = (try? readFile("/proc/swaps")) ?? ""
            let size = (try? readFile(sysfs + "/disksize")).map { $0.split(whereSeparator: \.isWhitespace).first.map(String.init) ?? "" } ?? "?"
            guard !swaps.contains(device + " "), size == "0" else {
                throw ZramSwapError.unavailable("\(device) is in use (disksize \(size)); swapoff it and `echo 1 > \(sysfs)/reset`")
            }
            claimed = true
        }
        do {
            try writeFile(sysfs + "/disksize", String(sizeBytes))
        } catch {
            release()
            throw ZramSwapError.unavailable("writing \(sizeBytes) to \(sysfs)/disksize failed: \(error)")
        }
        let swapon = priority.map { ["-p", String($0), device] } ?? [device]
        for (tool, arguments) in [("/sbin/mkswap", [device]), ("/sbin/swapon", swapon)] {
            let result = try? runCommand(tool, arguments)
            guard result?.status == 0 else {
                release()
                throw ZramSwapError.unavailable("\(tool) \(arguments.joined(separator: " ")) failed: \(result?.output ?? "could not start it")")
            }
        }
    }

    /// The device's mm_stat: what it stores and what that costs.
    public func stats() throws -> ZramStats { try ZramStats.read(device: name) }

    /// Swaps off, resets, and removes a device of our own. swapoff fails
    /// while pages it must bring back cannot be charged (a test's memcg at
    /// its limit), so it is retried for a while as the test's processes die
    /// and their memcgs go.
    private func release() {
        guard claimed else { return }
        claimed = false
        let active = { ((try? readFile("/proc/swaps")) ?? "").contains(self.device + " ") }
        for _ in 0..<100 {
            let off = (try? runCommand("/sbin/swapoff", [device]))?.status == 0
            if off || !active() { break }
            usleep(100_000)
        }
        try? writeFile(sysfs + "/reset", "1")
        guard ownsDevice, !active() else { return }
        let number = name.dropFirst("zram".count)
        for _ in 0..<50 {
            // EBUSY while something still holds the device open (swapoff's last references, udev).
            if (try? writeFile(Self.control + "/hot_remove", String(number))) != nil || access(sysfs, F_OK) != 0 { return }
            usleep(100_000)
        }
    }

    deinit { release() }
}

public enum ZramSwapError: Error, CustomStringConvertible {
    case unavailable(String)
    public var description: String { switch self { case .unavailable(let why): return "zram swap unavailable: \(why)" } }
}

extension String {
    /// The text with the first `target` replaced (unchanged if there is none).
    public func replacingFirst(_ target: String, with replacement: String) -> String {
        guard let range = firstRange(of: target) else { return self }
        var copy = self
        copy.replaceSubrange(range, with: replacement)
        return copy
    }
}

/// CLOCK_MONOTONIC in milliseconds, for tests that time the kernel.
public func monotonicMilliseconds() -> Int64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000
}

/// Polls `condition` every 5 ms for up to `timeoutMs`; the milliseconds it took, or nil.
public func waitUntil(timeoutMs: Int64, _ condition: () -> Bool) -> Int64? {
    let start = monotonicMilliseconds()
    while true {
        if condition() { return monotonicMilliseconds() - start }
        if monotonicMilliseconds() - start > timeoutMs { return nil }
        usleep(5_000)
    }
}
