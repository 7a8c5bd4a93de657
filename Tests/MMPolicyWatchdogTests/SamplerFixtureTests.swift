import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import MMPolicyWatchdog

/// Cumulative decision counts a test changes between samples, as a decision loop would.
final class HealthCounter: @unchecked Sendable {
    private let lock = PThreadMutex()
    private var value = DecisionHealth()

    func update(_ change: (inout DecisionHealth) -> Void) { lock.locked { change(&value) } }
    func read() -> DecisionHealth { lock.locked { value } }
}

/// A pthread mutex around a test's shared counters.
final class PThreadMutex: @unchecked Sendable {
    private var mutex = pthread_mutex_t()
    init() { pthread_mutex_init(&mutex, nil) }
    deinit { pthread_mutex_destroy(&mutex) }
    func locked<T>(_ body: () -> T) -> T {
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        return body()
    }
}

/// The sampler over fixture files it is pointed at: exact deltas and ratios
/// per scope, baselines, and failures that become problems, not crashes.
@Suite struct SamplerFixtureTests {
    static let second: UInt64 = 1_000_000_000

    /// /proc/vmstat text with the given counters (others zero).
    static func vmstat(refaultsAnon: UInt64 = 0, refaultsFile: UInt64 = 0, scanAnon: UInt64 = 0, scanFile: UInt64 = 0,
                       stealAnon: UInt64 = 0, stealFile: UInt64 = 0, scanDirect: UInt64 = 0, stealDirect: UInt64 = 0,
                       swapOuts: UInt64 = 0, oomKills: UInt64 = 0) -> String {
        """
        nr_free_pages 5000000
        workingset_refault_anon \(refaultsAnon)
        workingset_refault_file \(refaultsFile)
        workingset_activate_anon 0
        workingset_activate_file 0
        pswpin 0
        pswpout \(swapOuts)
        pgsteal_kswapd 0
        pgsteal_direct \(stealDirect)
        pgscan_kswapd 0
        pgscan_direct \(scanDirect)
        pgscan_anon \(scanAnon)
        pgscan_file \(scanFile)
        pgsteal_anon \(stealAnon)
        pgsteal_file \(stealFile)
        oom_kill \(oomKills)

        """
    }

    static func pressure(some: UInt64, full: UInt64, avg10: Double = 0) -> String {
        "some avg10=\(avg10) avg60=0.00 avg300=0.00 total=\(some)\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=\(full)\n"
    }

    static func v1Stat(refaultsFile: UInt64, limit: UInt64 = 64 << 20) -> String {
        "cache 0\nrss 0\nworkingset_refault_anon 0\nworkingset_refault_file 0\nhierarchical_memory_limit \(limit)\n"
            + "total_workingset_refault_anon 0\ntotal_workingset_refault_file \(refaultsFile)\n"
    }

    static func v2Stat(refaultsFile: UInt64, scanned: UInt64, stolen: UInt64) -> String {
        "anon 0\nworkingset_refault_anon 0\nworkingset_refault_file \(refaultsFile)\nworkingset_activate_anon 0\n"
            + "workingset_activate_file 0\npgscan \(scanned)\npgsteal \(stolen)\n"
    }

    struct Fixture {
        let scratch: ScratchDirectory
        let files: SignalSampler.SystemFiles
        let v1: String
        let v2: String

        init() throws {
            scratch = try ScratchDirectory(prefix: "mmpolicy-wd-sampler")
            files = SignalSampler.SystemFiles(vmstat: scratch.path + "/vmstat", pressure: scratch.path + "/pressure",
                                              meminfo: scratch.path + "/meminfo")
            try scratch.write("meminfo", "MemTotal:        4194304 kB\nMemFree:         3000000 kB\nMemAvailable:    3500000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n")
            v1 = try scratch.makeDirectory("v1/job")
            v2 = try scratch.makeDirectory("v2/app")
        }

        func write(vmstat: String, pressure: String, v1Stat: String, v1Failcnt: UInt64, v2Stat: String, v2Max: UInt64, v2Some: UInt64) throws {
            try scratch.write("vmstat", vmstat)
            try scratch.write("pressure", pressure)
            try scratch.write("v1/job/memory.stat", v1Stat)
            try scratch.write("v1/job/memory.failcnt", "\(v1Failcnt)\n")
            try scratch.write("v1/job/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
            try scratch.write("v2/app/memory.stat", v2Stat)
            try scratch.write("v2/app/memory.events", "low 0\nhigh 0\nmax \(v2Max)\noom 0\noom_kill 0\n")
            try scratch.write("v2/app/memory.pressure", SamplerFixtureTests.pressure(some: v2Some, full: 0, avg10: 3.5))
            try scratch.write("v2/app/memory.max", "536870912\n")
        }
    }

    @Test func eachScopeGetsItsOwnDeltasAndRatios() throws {
        let fixture = try Fixture()
        try fixture.write(vmstat: Self.vmstat(refaultsAnon: 1000, refaultsFile: 5000, scanAnon: 100, scanFile: 100, stealAnon: 50,
                                              stealFile: 50, scanDirect: 1000, stealDirect: 500, swapOuts: 50),
                          pressure: Self.pressure(some: 1_000_000, full: 500_000),
                          v1Stat: Self.v1Stat(refaultsFile: 10), v1Failcnt: 100,
                          v2Stat: Self.v2Stat(refaultsFile: 0, scanned: 0, stolen: 0), v2Max: 1, v2Some: 0)
        let health = HealthCounter()
        let sampler = SignalSampler(files: fixture.files)
        sampler.register(WatchedSubject(name: "sys", kind: PolicyKind(rawValue: "oom"), scope: .system, health: { health.read() }))
        sampler.register(WatchedSubject(name: "one", kind: PolicyKind(rawValue: "readahead"), scope: .memcgV1(path: fixture.v1)))
        sampler.register(WatchedSubject(name: "two", kind: PolicyKind(rawValue: "tiering"), scope: .memcgV2(path: fixture.v2)))
        #expect(sampler.subjectNames == ["sys", "one", "two"])
        #expect(sampler.sample(nowNs: 10 * Self.second).isEmpty, "the first sample is every subject's baseline")

        try fixture.write(vmstat: Self.vmstat(refaultsAnon: 1100, refaultsFile: 5900, scanAnon: 2100, scanFile: 8100, stealAnon: 550,
                                              stealFile: 1550, scanDirect: 6000, stealDirect: 1500, swapOuts: 850),
                          pressure: Self.pressure(some: 1_250_000, full: 600_000, avg10: 20),
                          v1Stat: Self.v1Stat(refaultsFile: 2010), v1Failcnt: 105,
                          v2Stat: Self.v2Stat(refaultsFile: 5000, scanned: 10_000, stolen: 4000), v2Max: 11, v2Some: 100_000)
        health.update { $0.actions = 2; $0.decisions = 3; $0.consecutiveFallbacks = 1 }
        let windows = sampler.sample(nowNs: 11 * Self.second)
        #expect(Set(windows.keys) == ["sys", "one", "two"])

        let sys = try #require(windows["sys"])
        #expect(sys.startNs == 10 * Self.second && sys.endNs == 11 * Self.second && sys.seconds == 1)
        #expect(sys.problems.isEmpty, "\(sys.problems)")
        let memory = try #require(sys.memory)
        #expect(memory.refaults == 1000)
        #expect(memory.scanned == 5000 && memory.stolen == 1000, "global reclaim: direct, not anon + file")
        #expect(memory.evicted == 2000 + (800 - 500), "every steal, plus swap-outs beyond the anonymous steals")
        #expect(memory.globalEvicted == 1000 + (800 - 500))
        #expect(memory.scopeBytes == 4 << 30)
        #expect(sys.derived.refaultRatio == 1000.0 / 2300.0)
        #expect(sys.derived.scanEfficiency == 0.2)
        #expect(sys.derived.refaultsPerSecondPerGiB == 250)
        #expect(sys.pressure == PressureSignals(someStallMicroseconds: 250_000, fullStallMicroseconds: 100_000, someAvg10: 20,
                                                fullAvg10: 0, systemWide: true))
        #expect(sys.derived.psiSomePercent == 25)
        #expect(sys.decisions.actions == 2 && sys.decisions.decisions == 3)
        #expect(sys.derived.actionsPerMinute == 2 && sys.derived.consecutiveFallbacks == 1)

        let one = try #require(windows["one"])
        #expect(one.memory?.refaultsFile == 2000)
        #expect(one.memory?.failcnt == 5)
        #expect(one.derived.refaultRatio == nil && one.derived.scanEfficiency == nil, "v1 counts no evictions or scans")
        #expect(one.derived.refaultsPerSecondPerGiB == 32_000, "2000 pages a second in 1/16 GiB")
        #expect(one.pressure?.systemWide == true, "v1 falls back to the system's PSI")
        #expect(one.decisions == DecisionHealth())

        let two = try #require(windows["two"])
        #expect(two.memory?.refaultsFile == 5000 && two.memory?.evicted == 4000)
        #expect(two.derived.refaultRatio == 1.25)
        #expect(two.derived.scanEfficiency == 0.4)
        #expect(two.derived.refaultsPerSecondPerGiB == 10_000)
        #expect(two.memory?.limitEvents?.max == 10)
        #expect(two.pressure == PressureSignals(someStallMicroseconds: 100_000, someAvg10: 3.5, systemWide: false))
    }

    @Test func aLateSubjectWaitsOneSampleAndAnUnregisteredOneStops() throws {
        let fixture = try Fixture()
        try fixture.write(vmstat: Self.vmstat(), pressure: Self.pressure(some: 0, full: 0), v1Stat: Self.v1Stat(refaultsFile: 0),
                          v1Failcnt: 0, v2Stat: Self.v2Stat(refaultsFile: 0, scanned: 0, stolen: 0), v2Max: 0, v2Some: 0)
        let sampler = SignalSampler(files: fixture.files)
        sampler.register(WatchedSubject(name: "a", kind: PolicyKind(rawValue: "oom"), scope: .system))
        #expect(sampler.sample(nowNs: 1 * Self.second).isEmpty)
        sampler.register(WatchedSubject(name: "b", kind: PolicyKind(rawValue: "ksm"), scope: .memcgV2(path: fixture.v2)))
        #expect(Set(sampler.sample(nowNs: 2 * Self.second).keys) == ["a"], "b's first sample is its baseline")
        let third = sampler.sample(nowNs: 3 * Self.second)
        #expect(Set(third.keys) == ["a", "b"])
        #expect(third["b"]?.startNs == 2 * Self.second)
        sampler.unregister(name: "a")
        #expect(Set(sampler.sample(nowNs: 4 * Self.second).keys) == ["b"])
        // Registering a name again starts it over.
        sampler.register(WatchedSubject(name: "b", kind: PolicyKind(rawValue: "ksm"), scope: .system))
        #expect(sampler.sample(nowNs: 5 * Self.second).isEmpty)
        sampler.unregister(name: "nobody")
        #expect(sampler.subjectNames == ["b"])
    }

    @Test func aVanishedMemcgIsAProblemAndIsBaselinedAgainWhenBack() throws {
        let fixture = try Fixture()
        func write(refaults: UInt64) throws {
            try fixture.write(vmstat: Self.vmstat(), pressure: Self.pressure(some: 0, full: 0), v1Stat: Self.v1Stat(refaultsFile: refaults),
                              v1Failcnt: 0, v2Stat: Self.v2Stat(refaultsFile: refaults, scanned: 0, stolen: 0), v2Max: 0, v2Some: 0)
        }
        try write(refaults: 0)
        let sampler = SignalSampler(files: fixture.files)
        sampler.register(WatchedSubject(name: "one", kind: PolicyKind(rawValue: "oom"), scope: .memcgV1(path: fixture.v1)))
        _ = sampler.sample(nowNs: 1 * Self.second)
        unlink(fixture.v1 + "/memory.stat")
        let missing = try #require(sampler.sample(nowNs: 2 * Self.second)["one"])
        #expect(missing.memory == nil)
        #expect(missing.problems.count == 1)
        #expect(missing.problems.first?.contains(fixture.v1 + "/memory.stat") == true, "\(missing.problems)")
        #expect(missing.pressure != nil, "the other signals still come")

        try write(refaults: 500)
        let back = try #require(sampler.sample(nowNs: 3 * Self.second)["one"])
        #expect(back.memory == nil && back.problems.isEmpty, "the first reading after the gap is a new baseline")
        try write(refaults: 800)
        #expect(sampler.sample(nowNs: 4 * Self.second)["one"]?.memory?.refaultsFile == 300)
    }

    @Test func brokenSystemFilesAreProblemsOfEverySystemSubject() throws {
        let fixture = try Fixture()
        try fixture.write(vmstat: "nonsense\n", pressure: "garbage\n", v1Stat: Self.v1Stat(refaultsFile: 0), v1Failcnt: 0,
                          v2Stat: Self.v2Stat(refaultsFile: 0, scanned: 0, stolen: 0), v2Max: 0, v2Some: 0)
        let sampler = SignalSampler(files: fixture.files)
        sampler.register(WatchedSubject(name: "a", kind: PolicyKind(rawValue: "oom"), scope: .system))
        sampler.register(WatchedSubject(name: "b", kind: PolicyKind(rawValue: "memnice"), scope: .system))
        sampler.register(WatchedSubject(name: "c", kind: PolicyKind(rawValue: "tiering"), scope: .memcgV2(path: fixture.v2)))
        _ = sampler.sample(nowNs: Self.second)
        let windows = sampler.sample(nowNs: 2 * Self.second)
        for name in ["a", "b"] {
            let window = try #require(windows[name])
            #expect(window.memory == nil && window.pressure == nil)
            #expect(window.problems.count == 2, "\(window.problems)")
            #expect(window.problems.contains { $0.contains("/vmstat") })
        }
        #expect(windows["c"]?.problems == [], "a v2 scope reads neither")
        #expect(windows["c"]?.memory != nil)
    }

    @Test func aClosedProgramDescriptorIsAProblem() throws {
        let fixture = try Fixture()
        try fixture.write(vmstat: Self.vmstat(), pressure: Self.pressure(some: 0, full: 0), v1Stat: Self.v1Stat(refaultsFile: 0),
                          v1Failcnt: 0, v2Stat: Self.v2Stat(refaultsFile: 0, scanned: 0, stolen: 0), v2Max: 0, v2Some: 0)
        let sampler = SignalSampler(files: fixture.files)
        sampler.register(WatchedSubject(name: "a", kind: PolicyKind(rawValue: "oom"), scope: .system,
                                        programs: [WatchedProgram(name: "gone", role: .callback, fd: 9999)],
                                        maps: [WatchedMap(name: "gone_map", fd: 9998)]))
        _ = sampler.sample(nowNs: Self.second)
        let window = try #require(sampler.sample(nowNs: 2 * Self.second)["a"])
        #expect(window.bpf.programs.isEmpty)
        #expect(window.problems.contains { $0.hasPrefix("program gone:") }, "\(window.problems)")
        #expect(window.problems.contains { $0.hasPrefix("map gone_map:") }, "\(window.problems)")
        #expect(window.memory != nil)
    }
}
