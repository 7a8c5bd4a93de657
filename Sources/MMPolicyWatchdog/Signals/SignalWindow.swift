import MMPolicyCore

/// What one policy's scope, programs and decision loop did during one
/// sampling window (default 1 s): the raw deltas and the ratios derived from
/// them.
///
/// The unit the watchdog judges: each ``GuardRule`` reads one figure of a
/// window, and ``GuardMonitor`` keeps the recent windows for `mmpolicy status
/// --watch`. Codable so the daemon can put windows in its JSON output; the
/// derived figures are stored, not computed, so they appear there too (they
/// are worked out once, when the window is made).
public struct SignalWindow: Sendable, Equatable, Codable {
    /// The policy's name.
    public var subject: String
    /// The window's bounds on CLOCK_MONOTONIC, in nanoseconds.
    public var startNs: UInt64
    public var endNs: UInt64
    /// endNs - startNs, in seconds.
    public var seconds: Double
    /// nil when the scope's files could not be read (see ``problems``).
    public var memory: MemorySignals?
    /// nil when the pressure file could not be read.
    public var pressure: PressureSignals?
    public var bpf: BPFSignals
    /// The decision loop's counts in this window; consecutiveFallbacks is the run at the window's end.
    public var decisions: DecisionHealth
    /// Decision and callback counts over the last 60 s of windows, this one included.
    public var lastMinute: MinuteCounts
    public var derived: DerivedSignals
    /// Signals that could not be read this window, as one sentence each.
    public var problems: [String]

    public init(subject: String, startNs: UInt64, endNs: UInt64, memory: MemorySignals? = MemorySignals(), pressure: PressureSignals? = nil,
                bpf: BPFSignals = BPFSignals(), decisions: DecisionHealth = DecisionHealth(), lastMinute: MinuteCounts = MinuteCounts(),
                problems: [String] = []) {
        self.subject = subject
        self.startNs = startNs
        self.endNs = endNs
        self.seconds = Double(endNs.saturatingMinus(startNs)) / 1e9
        self.memory = memory
        self.pressure = pressure
        self.bpf = bpf
        self.decisions = decisions
        self.lastMinute = lastMinute
        self.problems = problems
        self.derived = DerivedSignals(seconds: seconds, memory: memory, pressure: pressure, bpf: bpf,
                                      decisions: decisions, lastMinute: lastMinute)
    }
}

/// A scope's memory counters over one window, in pages unless named
/// otherwise. From /proc/vmstat for the system scope and from the memcg's
/// own files for a cgroup scope; nil where the scope's kernel interface has
/// no such counter (cgroup v1 has no scan, steal or swap-traffic counters).
///
/// For the system scope, scan and steal are global reclaim's (kswapd,
/// direct, khugepaged, proactive): reclaim that a memcg's own limit causes
/// is that memcg's business, so one cgroup thrashing against its limit does
/// not read as the whole system reclaiming badly. Refaults and ``evicted``
/// count everything, limit reclaim included, as the kernel's refault
/// counters do; ``globalEvicted`` leaves limit reclaim out, and the refault
/// guards judge a system window only when it shows global evictions.
public struct MemorySignals: Sendable, Equatable, Codable {
    public var refaultsAnon: UInt64
    public var refaultsFile: UInt64
    public var activations: UInt64?
    /// Pages reclaim scanned.
    public var scanned: UInt64?
    /// Pages reclaim freed.
    public var stolen: UInt64?
    /// Pages pushed out of memory, the refault ratio's denominator: what
    /// reclaim freed (pgsteal) plus the swap-outs reclaim did not count.
    /// MADV_PAGEOUT (process_madvise, the tiering kind's tool) swaps pages
    /// out without counting them in pgsteal, while reclaim's own anonymous
    /// steals are swap-outs, so swap-outs beyond pgsteal_anon are page-outs.
    /// Where there is no pgsteal_anon (a v2 memory.stat) the larger of
    /// pgsteal and pswpout is taken: a window mixing both is undercounted,
    /// its refault ratio reading high, by at most half. nil on cgroup v1,
    /// which counts no evictions.
    public var evicted: UInt64?
    /// System scope only: the evictions not caused by a memcg's limit
    /// (global reclaim's steals and page-outs); nil for a cgroup scope.
    public var globalEvicted: UInt64?
    public var swapIns: UInt64?
    public var swapOuts: UInt64?
    /// Processes the kernel OOM killer killed in the scope.
    public var oomKills: UInt64?
    /// cgroup v1: times usage hit the limit.
    public var failcnt: UInt64?
    /// cgroup v2: memory.events counts.
    public var limitEvents: LimitEvents?
    /// The scope's memory at the window's end, in bytes: MemTotal, the
    /// memcg's limit, or its usage when it has none.
    public var scopeBytes: UInt64?

    public init(refaultsAnon: UInt64 = 0, refaultsFile: UInt64 = 0, activations: UInt64? = nil, scanned: UInt64? = nil,
                stolen: UInt64? = nil, evicted: UInt64? = nil, globalEvicted: UInt64? = nil, swapIns: UInt64? = nil, swapOuts: UInt64? = nil,
                oomKills: UInt64? = nil, failcnt: UInt64? = nil, limitEvents: LimitEvents? = nil, scopeBytes: UInt64? = nil) {
        self.refaultsAnon = refaultsAnon
        self.refaultsFile = refaultsFile
        self.activations = activations
        self.scanned = scanned
        self.stolen = stolen
        self.evicted = evicted
        self.globalEvicted = globalEvicted
        self.swapIns = swapIns
        self.swapOuts = swapOuts
        self.oomKills = oomKills
        self.failcnt = failcnt
        self.limitEvents = limitEvents
        self.scopeBytes = scopeBytes
    }

    /// All refaulted pages.
    public var refaults: UInt64 { refaultsAnon + refaultsFile }
}

/// A cgroup v2 group's memory.events counts over one window.
public struct LimitEvents: Sendable, Equatable, Codable {
    /// Reclaimed while under memory.low protection.
    public var low: UInt64
    /// Throttled for being over memory.high.
    public var high: UInt64
    /// Allocations that hit memory.max.
    public var max: UInt64
    public var oom: UInt64
    public var oomKill: UInt64

    public init(low: UInt64 = 0, high: UInt64 = 0, max: UInt64 = 0, oom: UInt64 = 0, oomKill: UInt64 = 0) {
        self.low = low
        self.high = high
        self.max = max
        self.oom = oom
        self.oomKill = oomKill
    }
}

/// Memory pressure stall over one window.
public struct PressureSignals: Sendable, Equatable, Codable {
    /// Microseconds in which some (all) non-idle tasks waited for memory, during the window.
    public var someStallMicroseconds: UInt64
    public var fullStallMicroseconds: UInt64
    /// The kernel's 10 s averages at the window's end, in percent.
    public var someAvg10: Double
    public var fullAvg10: Double
    /// True when the figures are the whole system's although the scope is a
    /// cgroup (cgroup v1 has no per-cgroup PSI).
    public var systemWide: Bool

    public init(someStallMicroseconds: UInt64 = 0, fullStallMicroseconds: UInt64 = 0, someAvg10: Double = 0, fullAvg10: Double = 0,
                systemWide: Bool = false) {
        self.someStallMicroseconds = someStallMicroseconds
        self.fullStallMicroseconds = fullStallMicroseconds
        self.someAvg10 = someAvg10
        self.fullAvg10 = fullAvg10
        self.systemWide = systemWide
    }
}

/// One BPF program's runs over one window.
public struct ProgramSignals: Sendable, Equatable, Codable {
    public var name: String
    public var role: WatchedProgram.Role
    public var runs: UInt64
    public var runTimeNanoseconds: UInt64

    public init(name: String, role: WatchedProgram.Role, runs: UInt64, runTimeNanoseconds: UInt64) {
        self.name = name
        self.role = role
        self.runs = runs
        self.runTimeNanoseconds = runTimeNanoseconds
    }
}

/// A policy's BPF cost over one window: runs and run time per program (the
/// kernel counts them only while BPF run statistics are on) and the memory
/// its maps hold at the window's end.
public struct BPFSignals: Sendable, Equatable, Codable {
    public var programs: [ProgramSignals]
    public var mapMemoryBytes: UInt64

    public init(programs: [ProgramSignals] = [], mapMemoryBytes: UInt64 = 0) {
        self.programs = programs
        self.mapMemoryBytes = mapMemoryBytes
    }

    public var runs: UInt64 { programs.reduce(0) { $0 + $1.runs } }
    public var runTimeNanoseconds: UInt64 { programs.reduce(0) { $0 + $1.runTimeNanoseconds } }
    public var callbackRuns: UInt64 { programs.reduce(0) { $1.role == .callback ? $0 + $1.runs : $0 } }
    public var callbackRunTimeNanoseconds: UInt64 { programs.reduce(0) { $1.role == .callback ? $0 + $1.runTimeNanoseconds : $0 } }
}

/// Counts over the last 60 s of windows: sliding sums, not one window's
/// delta times 60, so a burst counts fully for a minute and then ages out.
/// Shorter than a minute while the policy is younger than that.
public struct MinuteCounts: Sendable, Equatable, Codable {
    /// Actions carried out (OOM: kills).
    public var actions: UInt64
    public var rejections: UInt64
    public var errors: UInt64
    public var deadlineMisses: UInt64
    public var callbackRuns: UInt64
    public var callbackRunTimeNanoseconds: UInt64
    /// The time the sums cover, in seconds (at most 60 plus part of one window).
    public var seconds: Double

    public init(actions: UInt64 = 0, rejections: UInt64 = 0, errors: UInt64 = 0, deadlineMisses: UInt64 = 0,
                callbackRuns: UInt64 = 0, callbackRunTimeNanoseconds: UInt64 = 0, seconds: Double = 0) {
        self.actions = actions
        self.rejections = rejections
        self.errors = errors
        self.deadlineMisses = deadlineMisses
        self.callbackRuns = callbackRuns
        self.callbackRunTimeNanoseconds = callbackRunTimeNanoseconds
        self.seconds = seconds
    }
}

/// The ratios and rates the guards compare with their thresholds; nil where
/// the window holds nothing to divide by.
public struct DerivedSignals: Sendable, Equatable, Codable {
    /// Refaulted pages / pages evicted; nil when nothing was evicted (or,
    /// cgroup v1, when evictions are not counted). Above 1 when pages evicted
    /// before the window refault in it.
    public var refaultRatio: Double?
    /// Pages stolen / pages scanned by reclaim; nil when nothing was scanned.
    public var scanEfficiency: Double?
    /// Refaulted pages per second per GiB of the scope's memory.
    public var refaultsPerSecondPerGiB: Double?
    /// Share of the window in which some task stalled on memory, in percent.
    public var psiSomePercent: Double?
    /// Actions the policy's decisions carried out in the last 60 s (OOM: kills).
    public var actionsPerMinute: UInt64
    public var rejectionsPerMinute: UInt64
    public var errorsPerMinute: UInt64
    public var deadlineMissesPerMinute: UInt64
    /// The current run of fallbacks.
    public var consecutiveFallbacks: UInt64
    /// Mean run time of the policy's programs in this window, ns per run; nil without runs.
    public var meanBPFNsPerRun: Double?
    /// The policy's BPF run time as a share of one CPU over the window, in percent.
    public var bpfCPUPercent: Double
    /// Mean run time of the policy's callbacks over the last 60 s, µs per run; nil without runs.
    public var callbackMicrosecondsPerRun: Double?
    /// Memory charged for the policy's maps, in KiB.
    public var mapMemoryKB: Double

    public init(seconds: Double, memory: MemorySignals?, pressure: PressureSignals?, bpf: BPFSignals,
                decisions: DecisionHealth, lastMinute: MinuteCounts) {
        if let memory {
            refaultRatio = memory.evicted.flatMap { $0 > 0 ? Double(memory.refaults) / Double($0) : nil }
            if let scanned = memory.scanned, scanned > 0, let stolen = memory.stolen {
                scanEfficiency = Double(stolen) / Double(scanned)
            }
            if let bytes = memory.scopeBytes, bytes > 0, seconds > 0 {
                refaultsPerSecondPerGiB = Double(memory.refaults) / seconds / (Double(bytes) / Double(1 << 30))
            }
        }
        if let pressure, seconds > 0 { psiSomePercent = Double(pressure.someStallMicroseconds) / (seconds * 1e4) }
        actionsPerMinute = lastMinute.actions
        rejectionsPerMinute = lastMinute.rejections
        errorsPerMinute = lastMinute.errors
        deadlineMissesPerMinute = lastMinute.deadlineMisses
        consecutiveFallbacks = decisions.consecutiveFallbacks
        let runs = bpf.runs, runTime = bpf.runTimeNanoseconds
        meanBPFNsPerRun = runs > 0 ? Double(runTime) / Double(runs) : nil
        bpfCPUPercent = seconds > 0 ? Double(runTime) / (seconds * 1e7) : 0
        callbackMicrosecondsPerRun = lastMinute.callbackRuns > 0
            ? Double(lastMinute.callbackRunTimeNanoseconds) / Double(lastMinute.callbackRuns) / 1000 : nil
        mapMemoryKB = Double(bpf.mapMemoryBytes) / 1024
    }
}
