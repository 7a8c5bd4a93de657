// What the OOM benchmark sets up and always takes down again: a scratch
// directory, the benchmark's memory cgroup, RAM ballast, the daemon.
import BPFKit
import MMPolicyCore

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// A temporary directory for the daemon's socket, state, policies and logs.
/// Removed on release unless `keep` is set (after a failure, for diagnosis).
final class ScratchDirectory {
    let path: String
    var keep = false

    init() throws {
        var template = Array("/tmp/mmpolicy-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw BenchError("mkdtemp: errno \(errno)") }
        path = String(cString: made)
    }

    func subdirectory(_ name: String) throws -> String {
        let dir = path + "/" + name
        guard mkdir(dir, 0o700) == 0 || errno == EEXIST else { throw BenchError("mkdir \(dir): errno \(errno)") }
        return dir
    }

    deinit {
        if keep {
            print("(scratch files kept in \(path))")
        } else {
            removeTree(path)
        }
    }
}

/// rm -r, for the scratch directory (no symlinks are followed: lstat).
func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if info.st_mode & S_IFMT == S_IFDIR, let dir = opendir(path) {
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        closedir(dir)
        for name in names { removeTree(path + "/" + name) }
        rmdir(path)
    } else {
        unlink(path)
    }
}

/// The benchmark's cgroup v1 memory cgroup, with a limit and the kernel OOM
/// killer enabled; reused for every memcg episode, removed on release (after
/// killing anything left in it).
final class BenchMemcg {
    let memcg: MemcgV1
    var path: String { memcg.path }

    init(path: String, limitBytes: UInt64) throws {
        memcg = MemcgV1(path: path)
        if mkdir(path, 0o755) != 0 {
            guard errno == EEXIST else {
                throw BenchError("cannot create \(path): errno \(errno) (is the memory controller on cgroup v1 at \(parentDirectory(path))?)")
            }
            // Left over from an interrupted run: empty it and reuse it.
            killAll()
            guard waitEmpty(timeoutMs: 5000) else { throw BenchError("\(path) is left over from an earlier run and cannot be emptied") }
        }
        try write(path + "/memory.limit_in_bytes", String(limitBytes))
        try write(path + "/memory.oom_control", "0")
    }

    func killAll() {
        for pid in (try? memcg.procs()) ?? [] { kill(pid, SIGKILL) }
    }

    /// Waits until no process is left in the group; true if it got there.
    func waitEmpty(timeoutMs: Int) -> Bool {
        let deadline = monotonicNanoseconds() + UInt64(timeoutMs) * 1_000_000
        while monotonicNanoseconds() < deadline {
            if ((try? memcg.procs()) ?? []).isEmpty { return true }
            sleepMs(2)
        }
        return false
    }

    deinit {
        // rmdir can fail with EBUSY for a moment after the group looks
        // empty (a task still exiting, or one a killed shell loop had forked
        // joining late): kill and retry for a while.
        let deadline = monotonicNanoseconds() + 10_000_000_000
        var failure: Int32 = 0
        repeat {
            killAll()
            _ = waitEmpty(timeoutMs: 1000)
            if rmdir(path) == 0 { return }
            failure = errno
            guard failure == EBUSY else { break }
            sleepMs(50)
        } while monotonicNanoseconds() < deadline
        print("warning: could not remove \(path): errno \(failure)")
    }
}

func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
    return String(path[..<slash])
}

/// Memory that belongs to no process: pages of a memfd (an unlinked file on
/// the kernel's internal tmpfs), allocated with fallocate.
///
/// The system-scope episodes need MemAvailable just above the 10 % line
/// without allocating ~20 GiB per episode. Shmem pages are neither
/// available (they cannot be reclaimed without swap) nor in any process's
/// RSS or oom_score, so no killer can pick them. A memfd rather than a file
/// on a mounted tmpfs: the kernel frees it when its last descriptor closes,
/// so even a crashed benchmark cannot leave RAM filled.
final class Ballast {
    private let fd: Int32
    private(set) var bytes: UInt64 = 0

    init() throws {
        fd = "mmpolicy-bench-ballast".withCString { LibC.memfdCreate($0, LibC.memfdCloexec) }
        guard fd >= 0 else { throw BenchError("memfd_create: errno \(errno)") }
    }

    /// Grows (fallocate, 256 MiB at a time, checking for ^C) or shrinks
    /// (ftruncate frees the pages beyond) to `target` bytes.
    func resize(to target: UInt64) throws {
        let step: UInt64 = 256 << 20
        while bytes < target {
            try Interrupt.check()
            let n = min(step, target - bytes)
            guard LibC.fallocate(fd, 0, off_t(bytes), off_t(n)) == 0 else { throw BenchError("fallocate of the ballast: errno \(errno)") }
            bytes += n
        }
        if bytes > target {
            guard ftruncate(fd, off_t(target)) == 0 else { throw BenchError("ftruncate of the ballast: errno \(errno)") }
            bytes = target
        }
    }

    /// Resizes until MemAvailable is within `tolerance` of `available`
    /// bytes (the rest of the system moves too, so it takes a few rounds).
    func settle(availableBytes target: UInt64, tolerance: UInt64 = 32 << 20) throws -> MemInfo {
        var memory = try MemInfo.read()
        for _ in 0..<40 {
            let delta = Int64(memory.memAvailable) - Int64(target)
            if UInt64(abs(delta)) <= tolerance { break }
            let wanted = max(0, Int64(bytes) + delta)
            try resize(to: UInt64(wanted))
            sleepMs(100)  // reclaim and the per-CPU counters catch up
            memory = try MemInfo.read()
        }
        return memory
    }

    deinit { close(fd) }
}

/// MemAvailable from /proc/meminfo with one pread on a descriptor kept open:
/// the 1 ms sampler's read, ~10-20 us.
final class MemAvailableReader {
    private let fd: Int32
    private var buffer = [UInt8](repeating: 0, count: 8192)
    let memTotal: UInt64

    init() throws {
        fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw BenchError("open /proc/meminfo: errno \(errno)") }
        memTotal = try MemInfo.read().memTotal
    }

    /// MemAvailable in bytes; 0 if unreadable.
    func read() -> UInt64 {
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return 0 }
        let key = Array("MemAvailable:".utf8)
        return buffer.withUnsafeBufferPointer { bytes -> UInt64 in
            var i = 0
            outer: while i + key.count < n {
                for j in 0..<key.count where bytes[i + j] != key[j] {
                    // Skip to the next line.
                    while i < n && bytes[i] != 10 { i += 1 }
                    i += 1
                    continue outer
                }
                var k = i + key.count, value: UInt64 = 0
                while k < n && bytes[k] == 32 { k += 1 }
                while k < n, bytes[k] >= 48, bytes[k] <= 57 { value = value * 10 + UInt64(bytes[k] - 48); k += 1 }
                return value * 1024
            }
            return 0
        }
    }

    deinit { close(fd) }
}

/// An `mmpolicy daemon` of the benchmark's own: scratch socket, state and
/// policy directories, so it neither sees nor changes any other daemon's
/// state. Its policy directory holds copies of the repository's manifests
/// and an empty default set, so it starts with nothing loaded.
final class DaemonSession {
    let mmpolicy: String
    let socket: String
    let process: ChildProcess
    let log: String
    var pid: pid_t { process.pid }

    /// `kills per minute` written into the copies of the OOM manifests: the
    /// benchmark kills ~1 victim a second on purpose, which the shipped
    /// guard (6 a minute) would turn into kernel fallbacks.
    static let benchKillRate = 1000

    /// `extraManifests` (file name -> TOML text) are written into the
    /// daemon's policy directory as they are, beside the copies.
    init(mmpolicy: String, objects: String, policies: String, scratch: ScratchDirectory, name: String,
         extraManifests: [String: String] = [:]) throws {
        self.mmpolicy = mmpolicy
        let policyDir = try scratch.subdirectory(name + "-policies")
        let stateDir = try scratch.subdirectory(name + "-state")
        socket = scratch.path + "/" + name + ".sock"
        log = scratch.path + "/" + name + ".log"
        guard let dir = opendir(policies) else { throw BenchError("cannot read the policy directory \(policies)") }
        var manifests: [String] = []
        while let entry = readdir(dir) {
            let file = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if file.hasSuffix(".toml") && file != PolicyCatalog.setFileName { manifests.append(file) }
        }
        closedir(dir)
        for file in manifests {
            guard let text = readSmallFile(policies + "/" + file) else { throw BenchError("cannot read \(policies)/\(file)") }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map { line in
                line.hasPrefix("max_kills_per_minute") ? "max_kills_per_minute = \(Self.benchKillRate)" : String(line)
            }
            try createFile(policyDir + "/" + file, lines.joined(separator: "\n"))
        }
        for (file, text) in extraManifests { try createFile(policyDir + "/" + file, text) }
        try createFile(policyDir + "/" + PolicyCatalog.setFileName, "# mmpolicy-bench: nothing loads at start\n")
        process = try ChildProcess(mmpolicy, ["daemon", "--socket", socket, "--state-dir", stateDir, "--policy-dir", policyDir],
                                   output: .file(log), environment: ["MMPOLICY_OBJECT_PATH": absolutePath(objects)])
        // Ready when the control socket answers.
        let deadline = monotonicNanoseconds() + 30_000_000_000
        while true {
            try Interrupt.check()
            if process.reapIfExited() != nil {
                throw BenchError("mmpolicy daemon exited (\(describeStatus(process.status!))) before serving its socket; log: \(readSmallFile(log)?.suffix(2000) ?? "")")
            }
            if access(socket, F_OK) == 0, (try? cli(["status", "--json"])) != nil { break }
            guard monotonicNanoseconds() < deadline else { throw BenchError("mmpolicy daemon did not serve \(socket) within 30 s; log in \(log)") }
            sleepMs(50)
        }
    }

    /// Runs `mmpolicy ARGS --socket S`; its stdout, or an error with its output.
    @discardableResult
    func cli(_ arguments: [String]) throws -> String {
        let (output, status) = try runCommand(mmpolicy, arguments + ["--socket", socket])
        guard status == 0 else { throw BenchError("mmpolicy \(arguments.joined(separator: " ")) failed (\(describeStatus(status))): \(output)") }
        return output
    }

    func load(_ policy: String, scope: String, mode: String) throws {
        try cli(["load", policy, "--scope", scope, "--mode", mode])
    }

    /// The policy's decision events, oldest first.
    func decisions(policy: String) throws -> [EventRecord] {
        let text = try cli(["events", "--json", "--policy", policy, "--limit", "1000"])
        let events: [EventRecord]
        do { events = try JSONDecoder().decode([EventRecord].self, from: Data(text.utf8)) } catch {
            throw BenchError("cannot read `mmpolicy events --json`: \(error)")
        }
        return events.filter { $0.type == .decision }.sorted { $0.timeNs < $1.timeNs }
    }

    /// SIGTERM (the daemon unloads everything and restores every knob); the exit status.
    @discardableResult
    func stop() -> Int32? { process.stop(graceMs: 15_000) }

    deinit { stop() }
}

func createFile(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw BenchError("cannot create \(path): errno \(errno)") }
    defer { close(fd) }
    guard Glibc.write(fd, text, text.utf8.count) == text.utf8.count else { throw BenchError("cannot write \(path): errno \(errno)") }
}

func absolutePath(_ path: String) -> String {
    if path.hasPrefix("/") { return path }
    guard let cwd = getcwd(nil, 0) else { return path }
    defer { free(cwd) }
    return String(cString: cwd) + "/" + path
}

/// Processes (pid, comm) whose comm is one of `names`.
func processes(named names: Set<String>) -> [(pid: Int32, comm: String)] {
    ProcessSnapshot.allPIDs().compactMap { pid in
        guard let comm = readSmallFile("/proc/\(pid)/comm")?.trimmed("\n"), names.contains(comm) else { return nil }
        return (pid, comm)
    }
}

/// CPU time (utime + stime, clock ticks) of a process, all threads.
func cpuTicks(pid: pid_t) -> UInt64? {
    guard let stat = readSmallFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // After the comm: state is field 3, utime 14, stime 15 -> offsets 11 and 12.
    guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
    return user + system
}

/// A "Key:   N kB" line of /proc/PID/status, in bytes.
func statusBytes(pid: pid_t, key: String) -> UInt64? {
    guard let text = readSmallFile("/proc/\(pid)/status") else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(key + ":") {
        let words = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst()
        if let value = words.first.flatMap({ UInt64(String($0).trimmed("\t ")) }) { return value * 1024 }
    }
    return nil
}

/// When, and by whom, a watched process was sent SIGTERM or SIGKILL
/// (bench/bpf/kill_clock.bpf.c on signal:signal_generate), on CLOCK_MONOTONIC.
///
/// Every killer's signal goes through that tracepoint, the kernel OOM
/// killer's included, so each contender's time splits the same way into
/// "signalled" and "memory released", and the sender tells who killed.
final class KillClock {
    /// struct kill_seen of kill_clock.bpf.c.
    struct Seen: BitwiseCopyable {
        var ns: UInt64
        var sig: UInt32
        var sender: UInt32
    }

    private let object: BPFObject
    private let link: BPFLink
    private let map: BPFMap

    init(objects: String) throws {
        let path = objects + "/bench/kill_clock.bpf.o"
        object = try BPFObject(path: path)
        try object.load()
        guard let program = object.program(named: "kill_clock_signal_generate"), let map = object.map(named: "watched") else {
            throw BenchError("\(path) lacks kill_clock_signal_generate or its map; rebuild it with `make bpf`")
        }
        link = try program.attach()
        self.map = map
    }

    func watch(_ pid: pid_t) throws {
        try map.update(UInt32(pid), Seen(ns: 0, sig: 0, sender: 0))
    }

    /// The first SIGTERM/SIGKILL sent to `pid` since `watch`, and stops watching it.
    func take(_ pid: pid_t) -> Seen? {
        let seen = try? map.lookup(UInt32(pid), as: Seen.self)
        _ = try? map.delete(UInt32(pid))
        return seen.flatMap { $0.ns == 0 ? nil : $0 }
    }

    deinit { link.detach() }
}
