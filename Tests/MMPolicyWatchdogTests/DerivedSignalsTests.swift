import MMPolicyCore
import Testing

@testable import MMPolicyWatchdog

/// The ratios a window derives from its deltas, their nil cases, the
/// eviction estimate, and the sliding per-minute counts.
@Suite struct DerivedSignalsTests {
    static let second: UInt64 = 1_000_000_000

    @Test func ratiosComeFromTheWindowsDeltas() {
        let memory = MemorySignals(refaultsAnon: 300, refaultsFile: 700, scanned: 10_000, stolen: 2_500, evicted: 2_000,
                                   scopeBytes: 4 << 30)
        let pressure = PressureSignals(someStallMicroseconds: 500_000, fullStallMicroseconds: 100_000, someAvg10: 12, fullAvg10: 3)
        let bpf = BPFSignals(programs: [
            ProgramSignals(name: "sensor", role: .sensor, runs: 900, runTimeNanoseconds: 450_000),
            ProgramSignals(name: "select", role: .callback, runs: 100, runTimeNanoseconds: 550_000),
        ], mapMemoryBytes: 2048 * 1024)
        let window = SignalWindow(subject: "p", startNs: 10 * Self.second, endNs: 12 * Self.second, memory: memory,
                                  pressure: pressure, bpf: bpf)
        let d = window.derived
        #expect(window.seconds == 2)
        #expect(d.refaultRatio == 0.5, "1000 refaults / 2000 evicted")
        #expect(d.scanEfficiency == 0.25)
        #expect(d.refaultsPerSecondPerGiB == 125, "1000 pages / 2 s / 4 GiB")
        #expect(d.psiSomePercent == 25, "0.5 s of 2 s")
        #expect(d.meanBPFNsPerRun == 1000, "1 ms over 1000 runs")
        #expect(d.bpfCPUPercent == 0.05, "1 ms of 2 s")
        #expect(d.mapMemoryKB == 2048)
        #expect(window.bpf.callbackRuns == 100 && window.bpf.callbackRunTimeNanoseconds == 550_000)
    }

    @Test func nothingToDivideByGivesNil() {
        let idle = SignalWindow(subject: "p", startNs: 0, endNs: Self.second,
                                memory: MemorySignals(refaultsFile: 5, scanned: 0, stolen: 0, evicted: 0, scopeBytes: 0))
        #expect(idle.derived.refaultRatio == nil, "nothing evicted")
        #expect(idle.derived.scanEfficiency == nil, "nothing scanned")
        #expect(idle.derived.refaultsPerSecondPerGiB == nil, "no size")
        #expect(idle.derived.meanBPFNsPerRun == nil, "no runs")
        #expect(idle.derived.callbackMicrosecondsPerRun == nil)
        #expect(idle.derived.psiSomePercent == nil, "no pressure reading")

        // cgroup v1: no eviction or scan counters at all.
        let v1 = SignalWindow(subject: "p", startNs: 0, endNs: Self.second,
                              memory: MemorySignals(refaultsFile: 5000, scopeBytes: 64 << 20))
        #expect(v1.derived.refaultRatio == nil && v1.derived.scanEfficiency == nil)
        #expect(v1.derived.refaultsPerSecondPerGiB == 80_000)

        let unreadable = SignalWindow(subject: "p", startNs: 0, endNs: Self.second, memory: nil, problems: ["gone"])
        #expect(unreadable.derived.refaultRatio == nil && unreadable.derived.refaultsPerSecondPerGiB == nil)

        let zeroLength = SignalWindow(subject: "p", startNs: 5, endNs: 5, memory: MemorySignals(refaultsFile: 1, scopeBytes: 1 << 30))
        #expect(zeroLength.derived.refaultsPerSecondPerGiB == nil && zeroLength.derived.bpfCPUPercent == 0)
    }

    @Test func evictionsCountPageOutsThatReclaimDidNotSteal() {
        // Reclaim stole 1000 (400 anon, each a swap-out); MADV_PAGEOUT swapped out 600 more.
        #expect(ScopeReading.evictions(stolen: 1000, stolenAnon: 400, swapOuts: 1000) == 1600)
        // Reclaim only: swap-outs are its anonymous steals.
        #expect(ScopeReading.evictions(stolen: 1000, stolenAnon: 400, swapOuts: 400) == 1000)
        // No swap counter: steals.
        #expect(ScopeReading.evictions(stolen: 1000, stolenAnon: nil, swapOuts: nil) == 1000)
        // A v2 memcg (no pgsteal_anon): the larger.
        #expect(ScopeReading.evictions(stolen: 10, stolenAnon: nil, swapOuts: 500) == 500)
        #expect(ScopeReading.evictions(stolen: 900, stolenAnon: nil, swapOuts: 500) == 900)
    }

    @Test func readingsGiveDeltasAndNeverNegativeOnes() {
        let then = ScopeReading(system: VMStatCounters(refaultsAnon: 10, refaultsFile: 100, activations: 5, scanned: 1000, stolen: 500,
                                                       stolenAnon: 100, swapIns: 3, swapOuts: 100, oomKills: 1), memTotal: 8 << 30)
        let now = ScopeReading(system: VMStatCounters(refaultsAnon: 20, refaultsFile: 150, activations: 9, scanned: 3000, stolen: 1500,
                                                      stolenAnon: 300, swapIns: 2, swapOuts: 600, oomKills: 2), memTotal: 8 << 30)
        let delta = now.since(then)
        #expect(delta.refaultsAnon == 10 && delta.refaultsFile == 50)
        #expect(delta.activations == 4 && delta.scanned == 2000 && delta.stolen == 1000)
        #expect(delta.evicted == 1000 + (500 - 200), "steals plus swap-outs beyond the anonymous steals, per window")
        #expect(delta.swapIns == 0, "a counter that went backwards reads 0")
        #expect(delta.oomKills == 1)
        #expect(delta.scopeBytes == 8 << 30)
    }

    @Test func theSystemScopesReclaimIsGlobalReclaimButItsEvictionsAreAll() {
        // A memcg thrashes against its limit (200k pages stolen, none by
        // kswapd or direct reclaim) while global reclaim frees 300 pages and
        // a page-out pushes 50 anonymous pages to swap.
        let then = ScopeReading(system: VMStatCounters(scanned: 0, stolen: 0, globalScanned: 0, globalStolen: 0, stolenAnon: 0, swapOuts: 0),
                                memTotal: 8 << 30)
        let now = ScopeReading(system: VMStatCounters(refaultsFile: 190_000, scanned: 400_300, stolen: 200_300, globalScanned: 600,
                                                      globalStolen: 300, stolenAnon: 0, swapOuts: 50), memTotal: 8 << 30)
        let delta = now.since(then)
        #expect(delta.scanned == 600 && delta.stolen == 300, "global reclaim only")
        #expect(delta.evicted == 200_350, "every eviction, as refaults count every refault")
        #expect(delta.globalEvicted == 350, "global reclaim and page-outs")

        // A memcg's own counters have no separate global figure.
        let memcg = ScopeReading(memcg: MemcgCounters(version: .v2, stat: MemcgStat(scanned: 10, stolen: 10)))
        #expect(memcg.since(memcg).globalEvicted == nil)
    }

    @Test func decisionHealthDeltasKeepTheCurrentFallbackRun() {
        let then = DecisionHealth(decisions: 10, actions: 2, errors: 1, rejections: 1, deadlineMisses: 0, fallbacks: 1,
                                  consecutiveFallbacks: 1)
        let now = DecisionHealth(decisions: 14, actions: 3, errors: 1, rejections: 3, deadlineMisses: 1, fallbacks: 3,
                                 consecutiveFallbacks: 2)
        #expect(now.since(then) == DecisionHealth(decisions: 4, actions: 1, errors: 0, rejections: 2, deadlineMisses: 1,
                                                  fallbacks: 2, consecutiveFallbacks: 2))
        #expect(then.since(now).decisions == 0)
    }

    @Test func actionsPerMinuteIsASlidingCountOverTheLastSixtySeconds() {
        var tally = MinuteTally()
        func add(at second: UInt64, kills: UInt64) -> MinuteCounts {
            tally.add(startNs: (second - 1) * Self.second, endNs: second * Self.second,
                      decisions: DecisionHealth(actions: kills), callbackRuns: 0, callbackRunTimeNanoseconds: 0)
        }
        #expect(add(at: 1, kills: 1).actions == 1, "one kill reads 1, not 60")
        #expect(add(at: 2, kills: 2).actions == 3)
        var last = MinuteCounts()
        for second in UInt64(3)...60 { last = add(at: second, kills: 0) }
        #expect(last.actions == 3, "both kills are still within the minute")
        #expect(last.seconds == 60)
        #expect(add(at: 61, kills: 0).actions == 2, "the window that ended at 1 s has aged out")
        #expect(add(at: 62, kills: 0).actions == 0)
    }

    @Test func callbackRunTimeIsAveragedOverTheLastMinute() {
        var tally = MinuteTally()
        _ = tally.add(startNs: 0, endNs: Self.second, decisions: DecisionHealth(), callbackRuns: 2, callbackRunTimeNanoseconds: 40_000)
        let counts = tally.add(startNs: Self.second, endNs: 2 * Self.second, decisions: DecisionHealth(errors: 2, rejections: 1, deadlineMisses: 3),
                               callbackRuns: 0, callbackRunTimeNanoseconds: 0)
        let window = SignalWindow(subject: "p", startNs: Self.second, endNs: 2 * Self.second, lastMinute: counts)
        #expect(window.derived.callbackMicrosecondsPerRun == 20, "40 µs over 2 runs, though this window had none")
        #expect(window.derived.rejectionsPerMinute == 1 && window.derived.errorsPerMinute == 2 && window.derived.deadlineMissesPerMinute == 3)
    }
}
