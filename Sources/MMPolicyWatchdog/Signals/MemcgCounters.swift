import MMPolicyCore
import SystemPackage

/// The counters of a memory cgroup's memory.stat that the watchdog reads,
/// for the whole subtree, cumulative, in pages.
///
/// cgroup v1 (measured on Linux 6.18) offers much less than v2: its
/// memory.stat has `total_workingset_refault_anon`/`_file`, but **no
/// pgscan, pgsteal or workingset_activate** counters and no swap traffic
/// (`total_swap` is a size), and its `total_pgpgin`/`total_pgpgout` count
/// charge events (one per folio, e.g. 128 pages for a large page-cache
/// folio), not pages. Reclaim a v1 limit causes is not counted in
/// /proc/vmstat either (the kernel counts only global reclaim there). So for
/// a v1 scope the refault ratio and scan efficiency cannot be computed:
/// those fields are nil, and the refault guard relies on refaults per
/// second per GiB of the limit instead.
public struct MemcgStat: Sendable, Equatable {
    public var refaultsAnon: UInt64
    public var refaultsFile: UInt64
    /// workingset_activate_anon + _file (v2 only).
    public var activations: UInt64?
    /// pgscan: pages reclaim scanned, for any reason (v2 only).
    public var scanned: UInt64?
    /// pgsteal: pages reclaim freed (v2 only).
    public var stolen: UInt64?
    /// pswpin/pswpout (v2 since Linux 6.11; nil before, and on v1).
    public var swapIns: UInt64?
    public var swapOuts: UInt64?
    /// v1 only: hierarchical_memory_limit, the tightest limit between the
    /// group and the root, in bytes; nil when there is none (or on v2).
    public var hierarchicalLimitBytes: UInt64?

    public init(refaultsAnon: UInt64 = 0, refaultsFile: UInt64 = 0, activations: UInt64? = nil, scanned: UInt64? = nil,
                stolen: UInt64? = nil, swapIns: UInt64? = nil, swapOuts: UInt64? = nil, hierarchicalLimitBytes: UInt64? = nil) {
        self.refaultsAnon = refaultsAnon
        self.refaultsFile = refaultsFile
        self.activations = activations
        self.scanned = scanned
        self.stolen = stolen
        self.swapIns = swapIns
        self.swapOuts = swapOuts
        self.hierarchicalLimitBytes = hierarchicalLimitBytes
    }

    /// Parses a cgroup v1 memory.stat. The hierarchical `total_*` counters
    /// are used (a scope is a subtree). Throws if the refault counters are
    /// missing (they arrived in Linux 5.9; earlier v1 has none).
    public init(parsingV1 text: String, target: String = "memory.stat") throws(SystemCallError) {
        self.init()
        var sawAnon = false, sawFile = false
        for (key, value) in CounterLines(text) {
            switch key {
            case "total_workingset_refault_anon": refaultsAnon = value; sawAnon = true
            case "total_workingset_refault_file": refaultsFile = value; sawFile = true
            case "hierarchical_memory_limit": hierarchicalLimitBytes = value >= MemcgV1.unlimited ? nil : value
            default: continue
            }
        }
        guard sawAnon, sawFile else {
            throw SystemCallError.format(target, "Expected total_workingset_refault_anon and _file lines (cgroup v1 on Linux 5.9 or later), found '\(text.prefix(60))'.")
        }
    }

    /// Parses a cgroup v2 memory.stat (already hierarchical). Throws if the
    /// refault, pgscan or pgsteal counters are missing.
    public init(parsingV2 text: String, target: String = "memory.stat") throws(SystemCallError) {
        self.init()
        var sawRefaults = false
        for (key, value) in CounterLines(text) {
            switch key {
            case "workingset_refault_anon": refaultsAnon = value; sawRefaults = true
            case "workingset_refault_file": refaultsFile = value
            case "workingset_activate_anon", "workingset_activate_file": activations = (activations ?? 0) + value
            case "pgscan": scanned = value
            case "pgsteal": stolen = value
            case "pswpin": swapIns = value
            case "pswpout": swapOuts = value
            default: continue
            }
        }
        guard sawRefaults, scanned != nil, stolen != nil else {
            throw SystemCallError.format(target, "Expected workingset_refault_anon, pgscan and pgsteal lines (cgroup v2 on Linux 5.9 or later), found '\(text.prefix(60))'.")
        }
    }
}

/// Everything the watchdog reads from one memory cgroup in one window:
/// memory.stat, limit-hit counts (v1 memory.failcnt, v2 memory.events),
/// kernel OOM kills, the group's pressure (v2) and its size.
///
/// A cgroup scope's guards read these instead of /proc/vmstat, so a policy
/// is judged by what happens inside its scope.
public struct MemcgCounters: Sendable, Equatable {
    public var version: MemoryCgroupMount.Version
    public var stat: MemcgStat
    /// v1: memory.failcnt, times usage hit the limit.
    public var failcnt: UInt64?
    /// v2: memory.events (hierarchical).
    public var events: MemcgV2.MemoryEvents?
    /// Kernel OOM kills: v1 memory.oom_control `oom_kill` (OOMs of this
    /// group's own limit), v2 memory.events `oom_kill` (the subtree).
    public var oomKills: UInt64
    /// v2: memory.pressure. v1 has no per-cgroup PSI.
    public var pressure: PressureStall?
    /// The limit in bytes (v1: the hierarchical one; v2: memory.max); nil if unlimited.
    public var limitBytes: UInt64?
    /// Usage in bytes, read only when there is no limit.
    public var usageBytes: UInt64?

    public init(version: MemoryCgroupMount.Version, stat: MemcgStat, failcnt: UInt64? = nil, events: MemcgV2.MemoryEvents? = nil,
                oomKills: UInt64 = 0, pressure: PressureStall? = nil, limitBytes: UInt64? = nil, usageBytes: UInt64? = nil) {
        self.version = version
        self.stat = stat
        self.failcnt = failcnt
        self.events = events
        self.oomKills = oomKills
        self.pressure = pressure
        self.limitBytes = limitBytes
        self.usageBytes = usageBytes
    }

    /// The memory the scope has: its limit, or its usage when unlimited (the
    /// per-GiB rates' denominator).
    public var sizeBytes: UInt64? { limitBytes ?? usageBytes }

    /// Reads a v1 group: memory.stat, memory.failcnt, memory.oom_control,
    /// and memory.usage_in_bytes if it has no limit.
    public static func read(_ memcg: MemcgV1) throws(SystemCallError) -> MemcgCounters {
        let stat = try memcg.memoryStat()
        let limit = stat.hierarchicalLimitBytes
        return MemcgCounters(version: .v1, stat: stat, failcnt: try memcg.failcnt(), oomKills: try memcg.oomControl().oomKillCount,
                             limitBytes: limit, usageBytes: limit == nil ? try memcg.usageBytes() : nil)
    }

    /// Reads a v2 group: memory.stat, memory.events, memory.pressure,
    /// memory.max, and memory.current if memory.max is "max".
    public static func read(_ memcg: MemcgV2) throws(SystemCallError) -> MemcgCounters {
        let events = try memcg.events()
        let limit = try memcg.max()
        return MemcgCounters(version: .v2, stat: try memcg.memoryStat(), events: events, oomKills: events.oomKill,
                             pressure: try memcg.pressure(), limitBytes: limit, usageBytes: limit == nil ? try memcg.current() : nil)
    }
}

extension MemcgV1 {
    /// memory.stat, parsed.
    public func memoryStat() throws(SystemCallError) -> MemcgStat {
        let file = path + "/memory.stat"
        return try MemcgStat(parsingV1: KernelFile.read(file, fix: Self.statFix), target: file)
    }

    static func statFix(_ code: Errno) -> String? {
        code == .noSuchFileOrDirectory
            ? "The memory cgroup is gone, or this is not a cgroup v1 memory hierarchy; on v2 read it with MemcgV2."
            : KernelFile.defaultFix(code)
    }
}

extension MemcgV2 {
    /// memory.stat, parsed.
    public func memoryStat() throws(SystemCallError) -> MemcgStat {
        let file = path + "/memory.stat"
        return try MemcgStat(parsingV2: KernelFile.read(file, fix: Self.statFix), target: file)
    }

    static func statFix(_ code: Errno) -> String? {
        code == .noSuchFileOrDirectory
            ? "The cgroup is gone, or the memory controller is not enabled for it (add +memory to the parent's cgroup.subtree_control)."
            : KernelFile.defaultFix(code)
    }
}
