import MMPolicyCore

/// One scope's cumulative memory counters at one instant, from /proc/vmstat
/// and MemTotal (system) or a memcg's files; two readings give a window's
/// ``MemorySignals``.
struct ScopeReading: Sendable, Equatable {
    var refaultsAnon: UInt64
    var refaultsFile: UInt64
    var activations: UInt64?
    /// The scope's own reclaim: global reclaim for the system, the memcg's for a cgroup.
    var scanned: UInt64?
    var stolen: UInt64?
    /// System only: every reclaim's steals, memcg limit reclaim included.
    var allStolen: UInt64?
    var stolenAnon: UInt64?
    var swapIns: UInt64?
    var swapOuts: UInt64?
    var oomKills: UInt64?
    var failcnt: UInt64?
    var events: MemcgV2.MemoryEvents?
    var scopeBytes: UInt64?

    init(system vmstat: VMStatCounters, memTotal: UInt64?) {
        refaultsAnon = vmstat.refaultsAnon
        refaultsFile = vmstat.refaultsFile
        activations = vmstat.activations
        scanned = vmstat.globalScanned
        stolen = vmstat.globalStolen
        allStolen = vmstat.stolen
        stolenAnon = vmstat.stolenAnon
        swapIns = vmstat.swapIns
        swapOuts = vmstat.swapOuts
        oomKills = vmstat.oomKills
        scopeBytes = memTotal
    }

    /// A memcg's counters. On v1 evictions are not counted at all (see ``MemcgStat``).
    init(memcg: MemcgCounters) {
        let stat = memcg.stat
        refaultsAnon = stat.refaultsAnon
        refaultsFile = stat.refaultsFile
        activations = stat.activations
        scanned = stat.scanned
        stolen = stat.stolen
        swapIns = stat.swapIns
        swapOuts = stat.swapOuts
        oomKills = memcg.oomKills
        failcnt = memcg.failcnt
        events = memcg.events
        scopeBytes = memcg.sizeBytes
    }

    /// A window's evictions; the rule is documented at ``MemorySignals/evicted``.
    static func evictions(stolen: UInt64, stolenAnon: UInt64?, swapOuts: UInt64?) -> UInt64 {
        guard let swapOuts else { return stolen }
        guard let stolenAnon else { return Swift.max(stolen, swapOuts) }
        return stolen + swapOuts.saturatingMinus(stolenAnon)
    }

    /// The counts since `earlier`; the scope's size is this reading's.
    func since(_ earlier: ScopeReading) -> MemorySignals {
        func delta(_ now: UInt64?, _ then: UInt64?) -> UInt64? {
            guard let now, let then else { return nil }
            return now.saturatingMinus(then)
        }
        var limitEvents: LimitEvents?
        if let now = events, let then = earlier.events {
            limitEvents = LimitEvents(low: now.low.saturatingMinus(then.low), high: now.high.saturatingMinus(then.high),
                                      max: now.max.saturatingMinus(then.max), oom: now.oom.saturatingMinus(then.oom),
                                      oomKill: now.oomKill.saturatingMinus(then.oomKill))
        }
        let stolenDelta = delta(stolen, earlier.stolen)
        let anonDelta = delta(stolenAnon, earlier.stolenAnon), swapOutDelta = delta(swapOuts, earlier.swapOuts)
        let allStolenDelta = delta(allStolen, earlier.allStolen)
        return MemorySignals(
            refaultsAnon: refaultsAnon.saturatingMinus(earlier.refaultsAnon),
            refaultsFile: refaultsFile.saturatingMinus(earlier.refaultsFile),
            activations: delta(activations, earlier.activations), scanned: delta(scanned, earlier.scanned),
            stolen: stolenDelta,
            evicted: (allStolenDelta ?? stolenDelta).map { Self.evictions(stolen: $0, stolenAnon: anonDelta, swapOuts: swapOutDelta) },
            globalEvicted: allStolenDelta == nil ? nil
                : stolenDelta.map { Self.evictions(stolen: $0, stolenAnon: anonDelta, swapOuts: swapOutDelta) },
            swapIns: delta(swapIns, earlier.swapIns), swapOuts: swapOutDelta,
            oomKills: delta(oomKills, earlier.oomKills), failcnt: delta(failcnt, earlier.failcnt),
            limitEvents: limitEvents, scopeBytes: scopeBytes)
    }
}

extension PressureStall {
    /// The stall over the window since `earlier`, with this reading's averages.
    func since(_ earlier: PressureStall, systemWide: Bool) -> PressureSignals {
        PressureSignals(someStallMicroseconds: some.total.saturatingMinus(earlier.some.total),
                        fullStallMicroseconds: full.total.saturatingMinus(earlier.full.total),
                        someAvg10: some.avg10, fullAvg10: full.avg10, systemWide: systemWide)
    }
}
