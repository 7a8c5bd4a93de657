import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One cgroup v1 memory cgroup (a directory under the `memory` hierarchy):
/// its OOM state and switch, limits, usage and members.
///
/// On v1 the daemon handles a memcg OOM itself: it turns the kernel killer
/// off (`setOOMKillDisable(true)`), waits on an `OOMNotifier`, kills the
/// policy's victim, and turns the killer back on when it stops.
public struct MemcgV1: Sendable, Equatable {
    public var path: String

    public init(path: String) { self.path = path }

    /// The contents of memory.oom_control.
    public struct OOMControl: Sendable, Equatable {
        /// The kernel OOM killer is off: tasks wait in the OOM until memory is freed.
        public var oomKillDisable: Bool
        /// The group (or an ancestor it is under) is in OOM right now.
        public var underOOM: Bool
        /// Processes the kernel OOM killer has killed in this group.
        public var oomKillCount: UInt64

        public init(oomKillDisable: Bool, underOOM: Bool, oomKillCount: UInt64) {
            self.oomKillDisable = oomKillDisable
            self.underOOM = underOOM
            self.oomKillCount = oomKillCount
        }

        /// Parses "oom_kill_disable 0\nunder_oom 0\noom_kill 0" (oom_kill since Linux 4.13).
        public init(parsing text: String, target: String = "memory.oom_control") throws(SystemCallError) {
            var values: [Substring: UInt64] = [:]
            for line in text.split(separator: "\n") {
                let words = line.split(separator: " ")
                if words.count == 2, let value = UInt64(words[1]) { values[words[0]] = value }
            }
            guard let disable = values["oom_kill_disable"], let under = values["under_oom"], let kills = values["oom_kill"] else {
                throw SystemCallError.format(target, "Expected 'oom_kill_disable N', 'under_oom N' and 'oom_kill N' lines (Linux 4.13 or later), found '\(text.prefix(80))'.")
            }
            self.init(oomKillDisable: disable != 0, underOOM: under != 0, oomKillCount: kills)
        }
    }

    public func oomControl() throws(SystemCallError) -> OOMControl {
        let file = path + "/memory.oom_control"
        return try OOMControl(parsing: KernelFile.read(file, fix: Self.fix), target: file)
    }

    /// Turns the kernel OOM killer off (true) or back on (false) for this
    /// group. Turning it on during an ongoing OOM hands that OOM to the kernel.
    public func setOOMKillDisable(_ on: Bool) throws(SystemCallError) {
        try KernelFile.write(path + "/memory.oom_control", on ? "1" : "0", fix: { code in
            code == .invalidArgument
                ? "The root memory cgroup's oom_kill_disable cannot be changed; use a child cgroup."
                : Self.fix(code)
        })
    }

    /// memory.limit_in_bytes; nil when unlimited (the page counter's maximum).
    public func limitBytes() throws(SystemCallError) -> UInt64? {
        let value = try KernelFile.readUInt64(path + "/memory.limit_in_bytes", fix: Self.fix)
        return value >= Self.unlimited ? nil : value
    }

    /// What v1 reports for "no limit": PAGE_COUNTER_MAX pages (LONG_MAX / page size) in bytes.
    public static let unlimited: UInt64 = UInt64(Int64.max) / ProcessSnapshot.pageSize * ProcessSnapshot.pageSize

    public func usageBytes() throws(SystemCallError) -> UInt64 {
        try KernelFile.readUInt64(path + "/memory.usage_in_bytes", fix: Self.fix)
    }

    /// How many times usage hit the limit.
    public func failcnt() throws(SystemCallError) -> UInt64 {
        try KernelFile.readUInt64(path + "/memory.failcnt", fix: Self.fix)
    }

    /// The processes directly in this group (cgroup.procs; not its children's).
    public func procs() throws(SystemCallError) -> [Int32] {
        try KernelFile.readPIDs(path + "/cgroup.procs", fix: Self.fix)
    }

    static func fix(_ code: Errno) -> String? {
        code == .noSuchFileOrDirectory
            ? "The memory cgroup is gone, or this is not a cgroup v1 memory hierarchy (v2 has memory.events and memory.max instead; use MemcgV2)."
            : KernelFile.defaultFix(code)
    }
}

/// A registration for a cgroup v1 memcg's OOM notifications: an eventfd the
/// kernel signals whenever the group, or an ancestor whose subtree it is in,
/// goes into OOM.
///
/// Registered by writing "<eventfd> <fd of memory.oom_control>" to the
/// group's cgroup.event_control. Registering on a group already under OOM
/// signals at once. Owns both descriptors; releasing this object closes the
/// eventfd, which unregisters it. This is how the v1 OOM engine learns that
/// a group with the kernel killer disabled needs a victim.
public final class OOMNotifier: Sendable {
    public let memcg: String
    private let eventFD: EventFD
    private let oomControlFD: Int32

    /// The eventfd, for poll(2) with POLLIN.
    public var rawValue: Int32 { eventFD.rawValue }

    public init(memcg: String) throws(SystemCallError) {
        let control = memcg + "/memory.oom_control"
        let fd = open(control, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError.current("open", control, fix: MemcgV1.fix(Errno(rawValue: Glibc.errno))) }
        let events: EventFD
        do {
            events = try EventFD()
            try KernelFile.write(memcg + "/cgroup.event_control", "\(events.rawValue) \(fd)", fix: { code in
                code == .noSuchFileOrDirectory
                    ? "cgroup.event_control exists only on cgroup v1 memory hierarchies; on v2 watch memory.events with FileModificationWatch."
                    : KernelFile.defaultFix(code)
            })
        } catch {
            close(fd)
            throw error
        }
        self.memcg = memcg
        eventFD = events
        oomControlFD = fd
    }

    /// Reads and resets the number of OOM notifications since the last call (0 if none).
    public func consume() -> UInt64 { eventFD.read() ?? 0 }

    /// Waits up to `timeoutMs` for a notification; true if one is pending.
    /// Does not consume it.
    public func wait(timeoutMs: Int32) -> Bool {
        pollOne(rawValue, events: Int16(POLLIN), timeoutMs: timeoutMs) & Int16(POLLIN) != 0
    }

    deinit { close(oomControlFD) }
}
