import BPFKit
import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's OOM sensors seeing real reclaim, RSS growth and kernel OOM
/// kills, in throwaway memory cgroups.
@Suite(.serialized) struct OOMSensorTests {
    static let mib: UInt64 = 1 << 20
    static let prefix = "mmpolicy-sensor"

    func openSensors(minIntervalNs: UInt64 = OOMSensors.defaultMinIntervalNs) throws -> OOMSensors {
        let path = try #require(OOMSensors.locate(searchPath: ObjectSearchPath(directories: [TestPaths.objectDirectory])),
                                "no \(OOMSensors.objectName) under \(TestPaths.objectDirectory); run `make bpf`")
        return try OOMSensors(objectPath: path, minIntervalNs: minIntervalNs)
    }

    /// Events until `stop` says enough or `seconds` pass, woken by the sensors' fd.
    func collect(_ sensors: OOMSensors, seconds: Double, until stop: ([SensorEvent]) -> Bool = { _ in false }) throws -> [SensorEvent] {
        let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
        var events: [SensorEvent] = []
        while true {
            events += try sensors.drain()
            let now = monotonicNanoseconds()
            if stop(events) || now >= deadline { return events }
            var pfd = pollfd(fd: sensors.pollFD, events: Int16(POLLIN), revents: 0)
            _ = poll(&pfd, 1, Int32(min((deadline - now) / 1_000_000 + 1, 1000)))
        }
    }

    /// The directory's inode: a cgroup's kernfs id.
    func inode(_ path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    /// Without swap a memcg at its limit must reclaim page cache or OOM; if
    /// another test turned swap on, keep this memcg's anonymous memory out of it.
    func keepOutOfSwap(_ memcg: TemporaryMemcg) throws {
        let swaps = try readFile("/proc/swaps").split(separator: "\n")
        if swaps.count > 1, memcg.mount.version == .v1 { try writeFile(memcg.path + "/memory.swappiness", "0") }
    }

    @Test func kernelOOMKillIsReportedWithItsVictimAndMemcg() throws {
        let sensors = try openSensors()
        let memcg = try TemporaryMemcg(prefix: Self.prefix, limitBytes: 64 * Self.mib)
        try keepOutOfSwap(memcg)
        #expect(try readFile(memcg.path + "/memory.oom_control").contains("oom_kill_disable 0"))
        let victim = try workload(["grow", "--rate", "256M", "--max", "512M", "--cgroup", memcg.path])

        let events = try collect(sensors, seconds: 20) { $0.contains { $0.kind == .markVictim && $0.pid == victim.pid } }
        let kill = try #require(events.first { $0.kind == .markVictim && $0.pid == victim.pid }, "no mark_victim for \(victim.pid)")
        #expect(kill.cgroupID == inode(memcg.path))
        #expect(kill.comm == "mmpolicy-worklo", "comm is the kernel's 15-character task name")
        // Killed at its memcg's 64 MiB limit. RSS also counts the mapped pages
        // of its binary and the Swift runtime, charged to whoever read them first.
        #expect(kill.value >= 48 * Self.mib && kill.value <= 96 * Self.mib, "victim rss \(kill.value)")
        // The kernel really killed it.
        var status: Int32 = 0
        var reaped: pid_t = 0
        for _ in 0..<200 where reaped == 0 { reaped = waitpid(victim.pid, &status, WNOHANG); usleep(10_000) }
        #expect(reaped == victim.pid && (status & 0x7f) == SIGKILL)
    }

    @Test func rssBudgetFiresOnceWhenGrowthReachesIt() throws {
        let sensors = try openSensors()
        let stats = try BPFStatsSession()

        // Growth is counted: a 16 MiB process adds at least its 16 MiB.
        try sensors.arm(budgetBytes: 1 << 40)
        let small = try workload(["hold", "--rss", "16M"])
        let counted = try sensors.budget()
        #expect(counted.armed && counted.budgetBytes == 1 << 40)
        #expect(counted.accumulatedBytes >= 16 * Self.mib, "accumulated \(counted.accumulatedBytes)")
        _ = small

        // A 48 MiB budget: 16 MiB must not fire it, 96 MiB must. Other
        // processes grow too (parallel builds), so an attempt whose budget
        // fills before the big workload starts is inconclusive and retried.
        var conclusive = false
        for attempt in 1...12 where !conclusive {
            try sensors.arm(budgetBytes: 48 * Self.mib)
            let armedAt = monotonicNanoseconds()
            let holder = try workload(["hold", "--rss", "16M"])
            let early = try collect(sensors, seconds: 0.2).filter { $0.kind == .rssBudget }
            guard early.isEmpty else {
                // Other tests run in parallel and allocate; wait for a quieter moment.
                print("attempt \(attempt): background growth filled the budget first (\(early))")
                usleep(500_000)
                continue
            }
            conclusive = true
            let bigStart = monotonicNanoseconds()
            let big = try workload(["hold", "--rss", "96M"])
            let events = try collect(sensors, seconds: 10) { $0.contains { $0.kind == .rssBudget } }
            let fired = events.filter { $0.kind == .rssBudget }
            #expect(fired.count == 1, "one event per arming: \(fired)")
            let event = try #require(fired.first)
            #expect(event.value >= 48 * Self.mib && event.value < 96 * Self.mib, "accumulated \(event.value)")
            #expect(event.timeNs > bigStart && event.timeNs > armedAt)
            #expect(try sensors.budget().armed == false, "the budget disarms when it fires")
            _ = (holder, big)
        }
        #expect(conclusive, "background growth filled a 48 MiB budget within 0.2 s in all attempts")

        // Disarmed, nothing more comes and nothing is counted.
        try sensors.disarm()
        let after = try workload(["hold", "--rss", "64M"])
        #expect(try collect(sensors, seconds: 0.3).filter { $0.kind == .rssBudget }.isEmpty)
        #expect(try sensors.budget().accumulatedBytes == 0)
        _ = after

        let rss = try #require(sensors.programStats.first { $0.name == "sensor_rss_stat" })
        #expect(rss.runCount > 0 && rss.runTimeNs > 0)
        print("sensor_rss_stat: \(rss.runCount) runs, \(rss.runTimeNs / max(rss.runCount, 1)) ns per run")
        _ = stats
    }

    @Test func eventsAFullRingBufferCannotTakeAreCounted() throws {
        // No rate limit: every memcg reclaim hit is an event or a drop.
        let sensors = try openSensors(minIntervalNs: 0)
        let stats = try BPFStatsSession()
        let scratch = try ScratchDirectory(prefix: Self.prefix)
        let file = scratch.path + "/cache"
        let made = try runCommand("/bin/dd", ["if=/dev/zero", "of=\(file)", "bs=1M", "count=200", "oflag=direct", "status=none"])
        try #require(made.status == 0, "dd: \(made.output)")
        let memcg = try TemporaryMemcg(prefix: Self.prefix, limitBytes: 64 * Self.mib)
        let program = try #require(sensors.object.program(named: "sensor_memcg_reclaim"))
        let runsBefore = try program.info().runCount
        let dropsBefore = sensors.droppedEvents(of: .memcgReclaim)
        let eventsBefore = try sensors.drain().filter { $0.kind == .memcgReclaim }.count
        let reader = try ChildProcess("/bin/sh", ["-c", "echo $$ > \(memcg.path)/cgroup.procs && echo ready && while :; do cat \(file) > /dev/null; done"])
        // Nothing drains the ring while reclaim runs: it fills.
        let deadline = monotonicNanoseconds() + 20_000_000_000
        while sensors.droppedEvents(of: .memcgReclaim) == dropsBefore, monotonicNanoseconds() < deadline { usleep(100_000) }
        kill(reader.pid, SIGKILL)
        usleep(200_000)
        let runs = try program.info().runCount - runsBefore
        let drained = try sensors.drain().filter { $0.kind == .memcgReclaim }.count + eventsBefore
        let dropped = sensors.droppedEvents(of: .memcgReclaim) - dropsBefore
        print("ring buffer full: \(runs) memcg reclaim hits, \(drained) events read, \(dropped) dropped")
        #expect(dropped > 0, "20 s of reclaim without draining fills a 256 KiB ring buffer (\(runs) hits)")
        #expect(UInt64(drained) + dropped >= runs && UInt64(drained) + dropped <= runs + UInt64(eventsBefore),
                "every hit is an event or a counted drop: \(drained) + \(dropped) vs \(runs)")
        _ = (reader, stats)
    }

    @Test func memcgReclaimIsReportedWithItsMemcgAndRateLimited() throws {
        let interval: UInt64 = 50_000_000
        let sensors = try openSensors(minIntervalNs: interval)
        let stats = try BPFStatsSession()
        let scratch = try ScratchDirectory(prefix: Self.prefix)
        let file = scratch.path + "/cache"
        // Written around the page cache, so its pages get charged to whoever reads them.
        let made = try runCommand("/bin/dd", ["if=/dev/zero", "of=\(file)", "bs=1M", "count=200", "oflag=direct", "status=none"])
        try #require(made.status == 0, "dd: \(made.output)")
        let memcg = try TemporaryMemcg(prefix: Self.prefix, limitBytes: 64 * Self.mib)
        // Reads 200 MiB through a 64 MiB memcg, over and over: sustained reclaim.
        let reader = try ChildProcess("/bin/sh", ["-c", "echo $$ > \(memcg.path)/cgroup.procs && echo ready && while :; do cat \(file) > /dev/null; done"])
        usleep(500_000)
        _ = try sensors.drain()

        let program = try #require(sensors.object.program(named: "sensor_memcg_reclaim"))
        let runsBefore = try program.info().runCount
        let start = monotonicNanoseconds()
        let events = try collect(sensors, seconds: 1.3).filter { $0.kind == .memcgReclaim }
        let runs = try program.info().runCount - runsBefore
        let window = events.filter { $0.timeNs >= start && $0.timeNs < start + 1_000_000_000 }

        #expect(events.contains { $0.cgroupID == inode(memcg.path) && $0.pid > 0 }, "no memcg reclaim event for the reader's memcg")
        #expect(window.count <= Int(1_000_000_000 / interval) + 1, "\(window.count) events in 1 s")
        #expect(window.count >= 5, "reclaim went on for 1 s, so events must keep coming: \(window.count)")
        #expect(runs > UInt64(events.count), "the tracepoint fired \(runs) times: the limit must have held some back")
        print("memcg reclaim: \(runs) tracepoint hits, \(window.count) events in 1 s")
        _ = (reader, stats)
    }
}
