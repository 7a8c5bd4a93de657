import BPFKit
import CMMPolicyABI
import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

@testable import MMPolicyWatchdog

/// The sampler and guards against the running kernel: the real /proc, a
/// real memcg made to thrash, and a real BPF policy's run statistics.
@Suite(.serialized) struct LiveSignalTests {
    static let mib: UInt64 = 1 << 20
    static let prefix = "mmpolicy-wd-live"

    @Test func aSystemWindowOverTheRealProcIsSane() throws {
        let sampler = SignalSampler()
        sampler.register(WatchedSubject(name: "sys", kind: .oom, scope: .system))
        let start = monotonicNanoseconds()
        #expect(sampler.sample(nowNs: start).isEmpty)
        usleep(1_000_000)
        let end = monotonicNanoseconds()
        let window = try #require(sampler.sample(nowNs: end)["sys"])
        #expect(window.problems.isEmpty, "\(window.problems)")
        #expect(window.startNs == start && window.endNs == end)
        #expect(window.seconds >= 1 && window.seconds < 2)
        let memory = try #require(window.memory)
        #expect(memory.scopeBytes == (try MemInfo.read()).memTotal)
        #expect(memory.scanned != nil && memory.stolen != nil && memory.evicted != nil, "the system scope counts reclaim")
        #expect(memory.stolen! <= memory.scanned!, "reclaim cannot free more than it scanned")
        if let ratio = window.derived.refaultRatio { #expect(ratio >= 0) }
        if let efficiency = window.derived.scanEfficiency { #expect(efficiency >= 0 && efficiency <= 1) }
        let pressure = try #require(window.pressure)
        #expect(pressure.someStallMicroseconds <= UInt64(window.seconds * 1e6) + 1000, "a stall cannot outlast the window")
        #expect(pressure.fullStallMicroseconds <= pressure.someStallMicroseconds + 1000)
        #expect(pressure.systemWide)
        #expect(window.derived.actionsPerMinute == 0 && window.bpf.programs.isEmpty)
    }

    /// A file twice the size of its reader's memcg, read over and over: page
    /// cache thrash that refaults every page it reads, without touching swap
    /// (zram is shared with other tests running on this machine).
    @Test func aThrashingMemcgShowsRefaultsAndTripsTheRefaultGuardWithinFiveSeconds() throws {
        guard let mount = MemoryCgroupMount.detect() else {
            Issue.record("this machine has no memory cgroup controller")
            return
        }
        let scratch = try ScratchDirectory(prefix: Self.prefix)
        let file = scratch.path + "/cache"
        // Written around the page cache, so its pages get charged to whoever reads them.
        let made = try runCommand("/bin/dd", ["if=/dev/zero", "of=\(file)", "bs=1M", "count=128", "oflag=direct", "status=none"])
        try #require(made.status == 0, "dd: \(made.output)")
        let memcg = try TemporaryMemcg(prefix: Self.prefix, limitBytes: 64 * Self.mib)
        let reader = try ChildProcess("/bin/sh", ["-c", "echo $$ > \(memcg.path)/cgroup.procs && echo ready && while :; do cat \(file) > /dev/null; done"])
        usleep(300_000)

        let scope = SignalScope(try ResolvedScope.cgroup(memcg.path, mount: mount))
        #expect(scope == (mount.version == .v1 ? .memcgV1(path: memcg.path) : .memcgV2(path: memcg.path)))
        let sampler = SignalSampler()
        sampler.register(WatchedSubject(name: "reader", kind: PolicyKind(rawValue: "readahead"), scope: scope))
        // A system-scope policy next to it: the memcg's thrash is not the system's.
        sampler.register(WatchedSubject(name: "host", kind: .oom, scope: .system))
        var monitor = GuardMonitor(subject: "reader", definition: nil)
        var hostMonitor = GuardMonitor(subject: "host", definition: OOMKind())
        var hostTrips: [GuardTrip] = []
        var hostUnderGlobalReclaim = false
        let start = monotonicNanoseconds()
        _ = sampler.sample(nowNs: start)
        var trip: GuardTrip?
        var windows: [SignalWindow] = []
        while trip == nil, monotonicNanoseconds() - start < 8_000_000_000 {
            usleep(1_000_000)
            let sampled = sampler.sample()
            let window = try #require(sampled["reader"])
            windows.append(window)
            trip = monitor.observe(window)
            let host = try #require(sampled["host"])
            let hostMemory = try #require(host.memory)
            #expect(hostMemory.evicted ?? 0 >= hostMemory.globalEvicted ?? 0)
            if Double(hostMemory.globalEvicted ?? 0) / host.seconds >= 1000 { hostUnderGlobalReclaim = true }
            if let hostTrip = hostMonitor.observe(host) { hostTrips.append(hostTrip) }
            let memory = window.memory
            print("thrash window: refaults \(memory?.refaults ?? 0), failcnt \(memory?.failcnt.map(String.init) ?? "-"), "
                  + "refaults/s/GiB \(window.derived.refaultsPerSecondPerGiB.map { decimalString($0, places: 0) } ?? "-"), "
                  + "ratio \(window.derived.refaultRatio.map { decimalString($0, places: 2) } ?? "-")")
        }
        let first = try #require(windows.first)
        #expect(first.problems.isEmpty, "\(first.problems)")
        let memory = try #require(first.memory)
        #expect(memory.refaultsFile > 10_000, "64 MiB of cache turning over many times a second refaults: \(memory)")
        #expect(memory.scopeBytes == 64 * Self.mib)
        if mount.version == .v1 {
            #expect(memory.failcnt ?? 0 > 0, "the limit is hit over and over")
            #expect(first.derived.refaultRatio == nil, "v1 counts no evictions")
        }
        let tripped = try #require(trip, "no guard tripped in \(windows.count) windows")
        #expect(["max_refault_ratio", "max_refault_rate_per_gib"].contains(tripped.guardName))
        #expect(tripped.windows == 3)
        #expect(tripped.endNs - start <= 5_200_000_000, "tripped \(Double(tripped.endNs - start) / 1e9) s after sampling began")
        print("trip: \(tripped)")
        if hostUnderGlobalReclaim {
            print("the host itself was reclaiming (other work on this machine); its guards are not checked")
        } else {
            #expect(hostTrips.isEmpty, "a system-scope policy was blamed for one memcg's thrash: \(hostTrips)")
        }
        _ = reader
    }

    @Test func aLoadedPolicysRunsAndMapsShowInItsWindow() throws {
        let stats = try BPFStatsSession()
        let policy = try Policy.open(objectPath: TestPaths.policyObject("oom_growth"), kinds: .builtIn)
        try policy.load()
        let sensor = try #require(policy.object.programs.first { $0.type != .syscall })
        let link = try sensor.attach()
        let callbackName = try #require(policy.ops.program(for: "select_victim"))
        let callback = try #require(policy.object.program(named: callbackName))

        let health = HealthCounter()
        let subject = WatchedSubject(policy: policy, scope: .system, health: { health.read() })
        #expect(subject.name == "oom_growth" && subject.kind == .oom && subject.scope == .system)
        #expect(subject.programs.first { $0.name == callbackName }?.role == .callback)
        #expect(subject.programs.first { $0.name == sensor.name }?.role == .sensor)
        #expect(subject.maps.contains { $0.name == "growth_by_tgid" })

        let sampler = SignalSampler()
        sampler.register(subject)
        _ = sampler.sample()
        // Callbacks run by BPF_PROG_RUN; the sensor runs on every RSS change,
        // and a fresh 32 MiB allocation makes plenty.
        let runs = 25
        for _ in 0..<runs {
            var ctx = mmpolicy_oom_ctx()
            try callback.run(context: &ctx)
        }
        let size = Int(32 * Self.mib)
        let memory = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        for offset in stride(from: 0, to: size, by: 4096) { memory.storeBytes(of: 1, toByteOffset: offset, as: UInt8.self) }
        munmap(memory, size)
        health.update { $0.decisions = UInt64(runs); $0.errors = 1 }
        usleep(100_000)

        let window = try #require(sampler.sample()["oom_growth"])
        #expect(window.problems.isEmpty, "\(window.problems)")
        let callbackWindow = try #require(window.bpf.programs.first { $0.name == callbackName })
        #expect(callbackWindow.runs == UInt64(runs), "every BPF_PROG_RUN is counted while statistics are on")
        #expect(callbackWindow.runTimeNanoseconds > 0)
        let sensorWindow = try #require(window.bpf.programs.first { $0.name == sensor.name })
        #expect(sensorWindow.runs > 0, "the rss_stat sensor ran")
        #expect(window.derived.meanBPFNsPerRun.map { $0 > 0 } == true)
        #expect(window.derived.callbackMicrosecondsPerRun.map { $0 > 0 } == true)
        #expect(window.lastMinute.callbackRuns == UInt64(runs))
        #expect(window.bpf.mapMemoryBytes > 32_768 * 8, "a 32768-entry LRU hash is charged at least its keys: \(window.bpf.mapMemoryBytes)")
        #expect(window.decisions.decisions == UInt64(runs) && window.derived.errorsPerMinute == 1)
        print("oom_growth window: \(window.bpf.programs), maps \(window.bpf.mapMemoryBytes) bytes, "
              + "\(decimalString(window.derived.bpfCPUPercent, places: 3)) % CPU")
        var monitor = GuardMonitor(subject: "oom_growth", definition: OOMKind())
        #expect(monitor.observe(window) == nil)
        _ = (stats, link)
    }
}
