import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// What /proc says about one process at one moment: identity (pid, start
/// time, name, parent), whether it is a kernel thread, its OOM adjustment and
/// its resident memory.
///
/// The OOM engine validates every victim against a snapshot (alive, not a
/// kernel thread, not oom_score_adj -1000, inside the scope) and carries the
/// start time into `PidFD(snapshot:)`, so that a reused pid is never killed.
/// The files are read one after another, not atomically: `startTime` is what
/// ties them to one process.
public struct ProcessSnapshot: Sendable, Equatable {
    public var pid: Int32
    /// The command name (at most 15 bytes; may contain spaces and parentheses).
    public var comm: String
    /// R, S, D, Z, T, t, X, I, ...
    public var state: Character
    public var ppid: Int32
    /// The task's PF_* flags (field 9 of /proc/PID/stat).
    public var flags: UInt32
    public var oomScoreAdj: Int32
    /// Resident set size: statm's `resident` pages times the page size.
    public var rssBytes: UInt64
    /// Clock ticks after boot at which the process started (field 22); with
    /// the pid, it names one process for the life of the system.
    public var startTime: UInt64
    /// The CPU the task last ran on (field 39); nil if the kernel did not say.
    public var processor: Int32?

    /// PF_KTHREAD in <linux/sched.h>.
    public static let kernelThreadFlag: UInt32 = 0x0020_0000

    public var isKernelThread: Bool { flags & Self.kernelThreadFlag != 0 }

    /// A zombie or dead task: it holds no memory any more.
    public var hasExited: Bool { state == "Z" || state == "X" || state == "x" }

    public init(pid: Int32, comm: String, state: Character, ppid: Int32, flags: UInt32,
                oomScoreAdj: Int32, rssBytes: UInt64, startTime: UInt64, processor: Int32? = nil) {
        self.pid = pid
        self.comm = comm
        self.state = state
        self.ppid = ppid
        self.flags = flags
        self.oomScoreAdj = oomScoreAdj
        self.rssBytes = rssBytes
        self.startTime = startTime
        self.processor = processor
    }

    /// Builds a snapshot from the text of /proc/PID/stat, /proc/PID/statm and
    /// /proc/PID/oom_score_adj.
    public init(stat: String, statm: String, oomScoreAdj: String, pageSize: UInt64 = ProcessSnapshot.pageSize) throws(SystemCallError) {
        let fields = try Self.parseStat(stat, target: "/proc/PID/stat")
        let statmFields = statm.split(whereSeparator: { $0 == " " || $0 == "\n" })
        guard statmFields.count >= 2, let resident = UInt64(statmFields[1]) else {
            throw SystemCallError.format("/proc/\(fields.pid)/statm", "Expected 'size resident shared text lib data dt' in pages, found '\(statm.prefix(60))'.")
        }
        let adjText = oomScoreAdj.trimmingWhitespace()
        guard let adj = Int32(adjText) else {
            throw SystemCallError.format("/proc/\(fields.pid)/oom_score_adj", "Expected an integer in -1000...1000, found '\(adjText.prefix(20))'.")
        }
        self.init(pid: fields.pid, comm: fields.comm, state: fields.state, ppid: fields.ppid, flags: fields.flags,
                  oomScoreAdj: adj, rssBytes: resident * pageSize, startTime: fields.startTime,
                  processor: fields.processor)
    }

    /// Reads /proc/PID. A process that is gone gives ESRCH or ENOENT with a
    /// "no longer exists" fix (`SystemCallError.meansGone`).
    public static func read(pid: Int32) throws(SystemCallError) -> ProcessSnapshot {
        let base = "/proc/\(pid)"
        let gone: (Errno) -> String? = { code in
            code == .noSuchProcess || code == .noSuchFileOrDirectory
                ? "Process \(pid) no longer exists." : KernelFile.defaultFix(code)
        }
        let stat = try KernelFile.read(base + "/stat", fix: gone)
        let statm = try KernelFile.read(base + "/statm", fix: gone)
        let adj = try KernelFile.read(base + "/oom_score_adj", fix: gone)
        do {
            return try ProcessSnapshot(stat: stat, statm: statm, oomScoreAdj: adj)
        } catch {
            // The text parser names the stat file "/proc/PID/stat" before it knows the pid.
            var named = error
            if named.target.hasPrefix("/proc/PID/") { named.target = base + named.target.dropFirst("/proc/PID".count) }
            throw named
        }
    }

    /// The fields of /proc/PID/stat this type uses.
    struct StatFields {
        var pid: Int32, comm: String, state: Character, ppid: Int32, flags: UInt32, startTime: UInt64
        var processor: Int32?
    }

    /// Parses /proc/PID/stat. The comm is the text between the first '(' and
    /// the last ')', since it may itself contain spaces and parentheses.
    static func parseStat(_ text: String, target: String) throws(SystemCallError) -> StatFields {
        let bytes = Array(text.utf8)
        guard let open = bytes.firstIndex(of: UInt8(ascii: "(")),
              let close = bytes.lastIndex(of: UInt8(ascii: ")")), open < close,
              let pid = Int32(String(decoding: bytes[..<open], as: UTF8.self).trimmingWhitespace())
        else {
            throw SystemCallError.format(target, "Expected 'PID (COMM) STATE PPID ...', found '\(text.prefix(60))'.")
        }
        let comm = String(decoding: bytes[(open + 1)..<close], as: UTF8.self)
        // Fields after the comm, numbered from 3 (state).
        let rest = String(decoding: bytes[(close + 1)...], as: UTF8.self)
            .split(whereSeparator: { $0 == " " || $0 == "\n" })
        func field(_ number: Int) -> Substring? { number - 3 < rest.count ? rest[number - 3] : nil }
        guard let state = field(3), state.count == 1,
              let ppid = field(4).flatMap({ Int32($0) }),
              let flags = field(9).flatMap({ UInt32($0) }),
              let startTime = field(22).flatMap({ UInt64($0) })
        else {
            throw SystemCallError.format(target, "Expected at least 22 fields (state, ppid, flags, ..., starttime) after '(\(comm))'.")
        }
        return StatFields(pid: pid, comm: comm, state: state.first!, ppid: ppid, flags: flags, startTime: startTime,
                          processor: field(39).flatMap { Int32($0) })
    }

    /// True if `pid` exists and is not a zombie (a zombie holds no memory and
    /// cannot be killed again; earlyoom makes the same call).
    public static func isAlive(pid: Int32) -> Bool {
        guard let text = try? KernelFile.read("/proc/\(pid)/stat"),
              let fields = try? parseStat(text, target: "/proc/\(pid)/stat") else { return false }
        return !(fields.state == "Z" || fields.state == "X" || fields.state == "x")
    }

    /// Every process id in /proc (thread-group leaders; threads are not listed there).
    public static func allPIDs() -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let pid = Int32(name), pid > 0 { pids.append(pid) }
        }
        return pids.sorted()
    }

    /// The cgroups `pid` belongs to, one per hierarchy (/proc/PID/cgroup).
    public static func cgroupPaths(pid: Int32) throws(SystemCallError) -> [CgroupMembership] {
        let path = "/proc/\(pid)/cgroup"
        let text = try KernelFile.read(path, fix: { code in
            code == .noSuchProcess || code == .noSuchFileOrDirectory ? "Process \(pid) no longer exists." : KernelFile.defaultFix(code)
        })
        return try CgroupMembership.parse(text, target: path)
    }

    /// The absolute directory of `pid`'s memory cgroup under `mount`, or nil
    /// if the process is gone or has none on that hierarchy.
    public static func memoryCgroupPath(pid: Int32, mount: MemoryCgroupMount) -> String? {
        guard let memberships = try? cgroupPaths(pid: pid) else { return nil }
        return memoryCgroupPath(in: memberships, mount: mount)
    }

    /// The absolute memory cgroup directory among `memberships`: on v1 the
    /// hierarchy whose controllers include "memory", on v2 the "0::" line.
    public static func memoryCgroupPath(in memberships: [CgroupMembership], mount: MemoryCgroupMount) -> String? {
        let entry: CgroupMembership? = switch mount.version {
        case .v1: memberships.first { $0.controllers.contains("memory") }
        case .v2: memberships.first { $0.hierarchyID == 0 && $0.controllers.isEmpty }
        }
        guard let entry else { return nil }
        let root = mount.path.hasSuffix("/") ? String(mount.path.dropLast()) : mount.path
        return entry.path == "/" ? root : root + entry.path
    }

    /// The system's page size in bytes.
    public static let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))
}

/// One line of /proc/PID/cgroup: the process's cgroup in one hierarchy.
/// v1 lines name their controllers ("4:memory:/a/b", "9:name=systemd:/");
/// the unified (v2) hierarchy is "0::/path".
public struct CgroupMembership: Sendable, Equatable {
    public var hierarchyID: Int
    /// Controllers bound to the hierarchy (empty for v2), e.g. ["cpu", "cpuacct"] or ["name=systemd"].
    public var controllers: [String]
    /// Path relative to the hierarchy's mount (or to the cgroup namespace root).
    public var path: String

    public init(hierarchyID: Int, controllers: [String], path: String) {
        self.hierarchyID = hierarchyID
        self.controllers = controllers
        self.path = path
    }

    /// Parses the text of /proc/PID/cgroup.
    public static func parse(_ text: String, target: String = "/proc/PID/cgroup") throws(SystemCallError) -> [CgroupMembership] {
        var result: [CgroupMembership] = []
        for line in text.split(separator: "\n") where !line.isEmpty {
            // The path may itself contain ':'.
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3, let id = Int(parts[0]), parts[2].hasPrefix("/") else {
                throw SystemCallError.format(target, "Expected lines 'ID:CONTROLLERS:/PATH', found '\(line.prefix(60))'.")
            }
            result.append(CgroupMembership(hierarchyID: id,
                                           controllers: parts[1].split(separator: ",").map(String.init),
                                           path: String(parts[2])))
        }
        return result
    }
}
