import MMPolicyCore

/// The system-wide reclaim, refault and swap counters of /proc/vmstat that
/// the watchdog's guards read: all cumulative since boot, in pages (oomKills
/// in kills).
///
/// They are the system scope's evidence of what memory policy is doing:
/// evicted pages that come straight back (refaults), reclaim that scans
/// without freeing (scan against steal), and swap traffic.
///
/// `pgscan_*`/`pgsteal_*` come in two partitions of the same pages, and
/// they differ: by reclaimer (`_kswapd`, `_direct`, `_khugepaged`,
/// `_proactive`) counts only global reclaim, while by LRU type (`_anon`,
/// `_file`, Linux 5.8) counts every reclaim, memcg limit reclaim included
/// (measured on 6.18: a v1 memcg thrashing against its limit moved
/// pgsteal_anon/file and left every pgsteal_kswapd/direct at 0). Both are
/// kept, as `global*` and plain; adding them would count pages twice.
public struct VMStatCounters: Sendable, Equatable {
    public var refaultsAnon: UInt64
    public var refaultsFile: UInt64
    /// Refaulted pages that were part of the workingset and went straight to the active list.
    public var activations: UInt64
    /// Pages every reclaim looked at: pgscan_anon + pgscan_file (before
    /// Linux 5.8, when they did not exist: the global sum).
    public var scanned: UInt64
    /// Pages every reclaim freed: pgsteal_anon + pgsteal_file (before 5.8: the global sum).
    public var stolen: UInt64
    /// Pages global reclaim looked at: pgscan_kswapd + _direct + _khugepaged + _proactive.
    public var globalScanned: UInt64
    /// Pages global reclaim freed: pgsteal_kswapd + _direct + _khugepaged + _proactive.
    public var globalStolen: UInt64
    /// Anonymous pages every reclaim freed (pgsteal_anon; nil before Linux 5.8).
    public var stolenAnon: UInt64?
    public var swapIns: UInt64
    public var swapOuts: UInt64
    /// Processes the kernel OOM killer killed (oom_kill; nil before Linux 4.13).
    public var oomKills: UInt64?

    public init(refaultsAnon: UInt64 = 0, refaultsFile: UInt64 = 0, activations: UInt64 = 0, scanned: UInt64 = 0,
                stolen: UInt64 = 0, globalScanned: UInt64? = nil, globalStolen: UInt64? = nil, stolenAnon: UInt64? = nil,
                swapIns: UInt64 = 0, swapOuts: UInt64 = 0, oomKills: UInt64? = nil) {
        self.refaultsAnon = refaultsAnon
        self.refaultsFile = refaultsFile
        self.activations = activations
        self.scanned = scanned
        self.stolen = stolen
        self.globalScanned = globalScanned ?? scanned
        self.globalStolen = globalStolen ?? stolen
        self.stolenAnon = stolenAnon
        self.swapIns = swapIns
        self.swapOuts = swapOuts
        self.oomKills = oomKills
    }

    /// Parses /proc/vmstat text ("key value" lines). Kernels before 5.9 have
    /// one `workingset_refault` and `workingset_activate`, counted as file
    /// pages here. Throws if the refault or steal counters are missing.
    public init(parsing text: String, target: String = "/proc/vmstat") throws(SystemCallError) {
        self.init()
        var sawRefaults = false, sawSteal = false
        var scanAnon: UInt64?, scanFile: UInt64?, stealFile: UInt64?
        for (key, value) in CounterLines(text) {
            switch key {
            case "workingset_refault_anon": refaultsAnon = value; sawRefaults = true
            case "workingset_refault_file", "workingset_refault": refaultsFile = value; sawRefaults = true
            case "workingset_activate_anon", "workingset_activate_file", "workingset_activate": activations += value
            case "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged", "pgscan_proactive": globalScanned += value
            case "pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged", "pgsteal_proactive": globalStolen += value; sawSteal = true
            case "pgscan_anon": scanAnon = value
            case "pgscan_file": scanFile = value
            case "pgsteal_anon": stolenAnon = value
            case "pgsteal_file": stealFile = value
            case "pswpin": swapIns = value
            case "pswpout": swapOuts = value
            case "oom_kill": oomKills = value
            default: continue
            }
        }
        guard sawRefaults, sawSteal else {
            throw SystemCallError.format(target, "Expected workingset_refault_* and pgsteal_* lines (Linux 4.x or later), found '\(text.prefix(60))'.")
        }
        if let scanAnon, let scanFile, let stolenAnon, let stealFile {
            scanned = scanAnon + scanFile
            stolen = stolenAnon + stealFile
        } else {
            scanned = globalScanned
            stolen = globalStolen
            stolenAnon = nil
        }
    }

    /// Reads /proc/vmstat (or a fixture with the same format).
    public static func read(_ path: String = "/proc/vmstat") throws(SystemCallError) -> VMStatCounters {
        try VMStatCounters(parsing: KernelFile.read(path), target: path)
    }
}
