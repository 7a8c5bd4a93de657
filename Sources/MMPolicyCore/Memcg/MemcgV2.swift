import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One cgroup v2 cgroup's memory controller files: events, usage, limits,
/// pressure, group OOM and kill.
///
/// On v2 the kernel OOM killer always runs; the daemon watches memory.events
/// (with `FileModificationWatch`) and memory.pressure to act first, and can
/// kill a whole group through cgroup.kill.
public struct MemcgV2: Sendable, Equatable {
    public var path: String

    public init(path: String) { self.path = path }

    /// Counters of memory.events (or memory.events.local).
    public struct MemoryEvents: Sendable, Equatable {
        /// Reclaimed under memory.low protection.
        public var low: UInt64
        /// Throttled and reclaimed for being over memory.high.
        public var high: UInt64
        /// Allocations that hit memory.max.
        public var max: UInt64
        /// OOM situations (the OOM killer was invoked or would have been).
        public var oom: UInt64
        /// Processes killed by the OOM killer.
        public var oomKill: UInt64
        /// Group OOM kills (memory.oom.group); nil on kernels that do not report it (before 5.17).
        public var oomGroupKill: UInt64?

        public init(low: UInt64, high: UInt64, max: UInt64, oom: UInt64, oomKill: UInt64, oomGroupKill: UInt64?) {
            self.low = low
            self.high = high
            self.max = max
            self.oom = oom
            self.oomKill = oomKill
            self.oomGroupKill = oomGroupKill
        }

        /// Parses "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0";
        /// unknown keys (e.g. sock_throttled) are ignored.
        public init(parsing text: String, target: String = "memory.events") throws(SystemCallError) {
            var values: [Substring: UInt64] = [:]
            for line in text.split(separator: "\n") where !line.isEmpty {
                let words = line.split(separator: " ")
                guard words.count == 2, let value = UInt64(words[1]) else {
                    throw SystemCallError.format(target, "Expected 'KEY COUNT' lines, found '\(line.prefix(60))'.")
                }
                values[words[0]] = value
            }
            guard let low = values["low"], let high = values["high"], let max = values["max"],
                  let oom = values["oom"], let oomKill = values["oom_kill"] else {
                throw SystemCallError.format(target, "Expected the keys low, high, max, oom and oom_kill.")
            }
            self.init(low: low, high: high, max: max, oom: oom, oomKill: oomKill, oomGroupKill: values["oom_group_kill"])
        }
    }

    /// memory.events (hierarchical), or memory.events.local (this group only).
    public func events(local: Bool = false) throws(SystemCallError) -> MemoryEvents {
        let file = path + (local ? "/memory.events.local" : "/memory.events")
        return try MemoryEvents(parsing: KernelFile.read(file, fix: Self.fix), target: file)
    }

    /// memory.current in bytes.
    public func current() throws(SystemCallError) -> UInt64 {
        try KernelFile.readUInt64(path + "/memory.current", fix: Self.fix)
    }

    /// memory.max in bytes; nil for "max" (no limit).
    public func max() throws(SystemCallError) -> UInt64? { try limit("memory.max") }

    /// memory.high in bytes; nil for "max" (no throttling).
    public func high() throws(SystemCallError) -> UInt64? { try limit("memory.high") }

    private func limit(_ name: String) throws(SystemCallError) -> UInt64? {
        let file = path + "/" + name
        let text = try KernelFile.read(file, fix: Self.fix).trimmingWhitespace()
        if text == "max" { return nil }
        guard let value = UInt64(text) else {
            throw SystemCallError.format(file, "Expected a byte count or 'max', found '\(text.prefix(30))'.")
        }
        return value
    }

    /// memory.pressure: this group's memory stall.
    public func pressure() throws(SystemCallError) -> PressureStall { try PressureStall.read(path + "/memory.pressure") }

    /// memory.oom.group: when on, an OOM kill takes every process of the group.
    public func setOOMGroup(_ on: Bool) throws(SystemCallError) {
        try KernelFile.write(path + "/memory.oom.group", on ? "1" : "0", fix: Self.fix)
    }

    /// Kills every process in the group and its descendants (cgroup.kill, Linux 5.14).
    public func kill() throws(SystemCallError) {
        try KernelFile.write(path + "/cgroup.kill", "1", fix: { code in
            code == .noSuchFileOrDirectory
                ? "cgroup.kill needs Linux 5.14 and cgroup v2 (or the group is gone); kill its cgroup.procs one by one instead."
                : Self.fix(code)
        })
    }

    /// The processes directly in this group (cgroup.procs).
    public func procs() throws(SystemCallError) -> [Int32] {
        try KernelFile.readPIDs(path + "/cgroup.procs", fix: Self.fix)
    }

    static func fix(_ code: Errno) -> String? {
        code == .noSuchFileOrDirectory
            ? "The cgroup is gone, or the memory controller is not enabled for it (add +memory to the parent's cgroup.subtree_control); on cgroup v1 use MemcgV1."
            : KernelFile.defaultFix(code)
    }
}
