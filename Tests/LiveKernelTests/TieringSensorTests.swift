import BPFKit
import CMMPolicyABI
import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The daemon's tiering sensors counting a real process's faults and
/// swap-ins, per 2 MiB region, and the daemon's writes into their maps.
///
/// The swap-in test turns zram swap on (a device of its own, hot-added) for
/// a few seconds: `make test` runs this suite after the others, which it
/// would otherwise let swap; it skips when no zram device can be added.
@Suite(.serialized) struct TieringSensorTests {
    static let mib: UInt64 = 1 << 20
    static let pageSize: UInt64 = 4096
    static let pagesPerRegion = Int(MMPOLICY_TIER_REGION_BYTES) / 4096

    func openSensors() throws -> TieringSensors {
        let path = try #require(TieringSensors.locate(searchPath: ObjectSearchPath(directories: [TestPaths.objectDirectory])),
                                "no \(TieringSensors.objectName) under \(TestPaths.objectDirectory); run `make bpf`")
        return try TieringSensors(objectPath: path)
    }

    /// Faults of `regions` of `pid` as the sensors counted them (0 for a region without entry).
    func faults(_ sensors: TieringSensors, _ pid: Int32, _ regions: [UInt64]) throws -> [UInt64] {
        let counted = Dictionary(uniqueKeysWithValues: try sensors.regions(of: pid).map { ($0.region, $0.stats) })
        return regions.map { counted[$0]?.faults ?? 0 }
    }

    @Test func loadsWithItsMapsAndCountsNothingUntilAttached() throws {
        let sensors = try openSensors()
        #expect(!sensors.isAttached)
        #expect(Set(sensors.sharedMaps.keys) == [String(cString: MMPOLICY_TIER_PROCS_MAP), String(cString: MMPOLICY_TIER_REGIONS_MAP)])
        #expect(TieringSensors.maxProcesses == 4096)

        let work = try HotColdWorkload(hotBytes: 0, coldBytes: 8 * Self.mib, untouched: true)
        try sensors.track(pid: work.pid, cgroupID: 1)
        try work.touchAll()
        #expect(try sensors.process(pid: work.pid)?.faults == 0, "detached: a tracked process's faults are not counted")
        #expect(try sensors.regions(of: work.pid).isEmpty)

        try sensors.attachPrograms()
        try sensors.attachPrograms()  // idempotent
        #expect(sensors.isAttached)
        sensors.detachPrograms()
        sensors.detachPrograms()
        #expect(!sensors.isAttached)
    }

    /// A process tracked before it touches its memory: each first touch is
    /// one fault in the region of its address, exactly, even while the
    /// daemon writes into the same entry all along.
    @Test func firstTouchesCountAsFaultsInTheirRegions() throws {
        let sensors = try openSensors()
        try sensors.attachPrograms()
        let work = try HotColdWorkload(hotBytes: 16 * Self.mib, coldBytes: 48 * Self.mib, untouched: true)
        let hotRegions = HotColdWorkload.regions(of: work.hot), coldRegions = HotColdWorkload.regions(of: work.cold)
        #expect(hotRegions.count == 8 && coldRegions.count == 24)
        let start = monotonicNanoseconds()
        try sensors.track(pid: work.pid, cgroupID: 42)

        kill(work.pid, SIGUSR1)
        // Writes through tier_write while the 16,384 faults are being counted.
        var writes: UInt64 = 0
        while try (sensors.process(pid: work.pid)?.faults ?? 0) < 16_384, writes < 1_000_000 {
            try sensors.setResidency(pid: work.pid, anonBytes: writes * Self.pageSize, swapBytes: 0)
            try sensors.addDemoted(pid: work.pid, bytes: 1)
            writes += 1
        }
        let touched = try work.process.readLine(timeoutSeconds: 60)
        #expect(touched == "touched 16384")

        let regions = try sensors.regions(of: work.pid)
        let byRegion = Dictionary(uniqueKeysWithValues: regions.map { ($0.region, $0.stats) })
        for region in hotRegions + coldRegions {
            let stats = try #require(byRegion[region], "no entry for region 0x\(String(region << 21, radix: 16))")
            #expect(stats.faults == UInt64(Self.pagesPerRegion), "region 0x\(String(region << 21, radix: 16)): \(stats.faults) faults")
            #expect(stats.swapins == 0 && stats.refaults == 0 && stats.demoted_ns == 0)
            #expect(stats.first_fault_ns >= start && stats.first_fault_ns <= stats.last_fault_ns && stats.last_fault_ns <= monotonicNanoseconds())
        }
        let proc = try #require(try sensors.process(pid: work.pid))
        // Its runtime faults elsewhere too (stack, heap), in other regions.
        #expect(proc.faults >= 16_384 && proc.faults == regions.reduce(0) { $0 + $1.stats.faults })
        #expect(proc.cgroup_id == 42 && proc.swapins == 0 && proc.refaults == 0)
        #expect(proc.last_fault_ns >= start)
        #expect(proc.demoted_bytes == writes && proc.anon_pages == writes - 1, "the daemon's writes all landed")
        print("first touches: \(proc.faults) faults counted, \(writes) daemon writes meanwhile, \(regions.count) regions")

        // The hot part stays resident: passes over it fault no more.
        usleep(100_000)
        #expect(try faults(sensors, work.pid, hotRegions) == Array(repeating: UInt64(Self.pagesPerRegion), count: hotRegions.count))
    }

    @Test func anUntrackedProcessCountsNothing() throws {
        let sensors = try openSensors()
        try sensors.attachPrograms()
        let tracked = try HotColdWorkload(hotBytes: 0, coldBytes: 4 * Self.mib, untouched: true)
        let untracked = try HotColdWorkload(hotBytes: 0, coldBytes: 16 * Self.mib, untouched: true)
        try sensors.track(pid: tracked.pid, cgroupID: 0)
        try untracked.touchAll()
        try tracked.touchAll()
        #expect(try sensors.process(pid: untracked.pid) == nil)
        #expect(try sensors.regions(of: untracked.pid).isEmpty)
        #expect(try sensors.trackedProcesses() == [tracked.pid])
        #expect(try faults(sensors, tracked.pid, HotColdWorkload.regions(of: tracked.cold)) == [512, 512])

        // Untracked again: its entry and regions go, and it counts no more.
        try sensors.untrack(pid: tracked.pid)
        #expect(try sensors.process(pid: tracked.pid) == nil)
        #expect(try sensors.regions(of: tracked.pid).isEmpty)
        try tracked.touchAll()
        #expect(try sensors.regions(of: tracked.pid).isEmpty)
        try sensors.untrack(pid: tracked.pid)  // not tracked: nothing happens
    }

    /// 64 MiB paged out to zram and touched again: 16,384 swap-ins, each in
    /// its region; in the regions marked demoted, each also a refault.
    @Test func swapInsAreCountedExactlyInTheirRegionsAndAsRefaultsWhereDemoted() throws {
        // A zram device of this test's own: suites running at the same time do not fight over zram0.
        let zram: ZramSwap
        do { zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true) } catch let error as ZramSwapError {
            try Test.cancel("needs a zram device as swap: \(error)")
        }
        defer { withExtendedLifetime(zram) {} }
        // The workload goes before zram does (its swapped pages with it).
        try {
            let sensors = try openSensors()
            try sensors.attachPrograms()
            let work = try HotColdWorkload(hotBytes: 0, coldBytes: 64 * Self.mib)
            try sensors.track(pid: work.pid, cgroupID: 0)
            let regions = HotColdWorkload.regions(of: work.cold)

            let swapped = try pageOutAll(work)
            let expected = regions.indices.map { i in
                swapped[(i * Self.pagesPerRegion)..<((i + 1) * Self.pagesPerRegion)].filter { $0 }.count
            }
            #expect(expected.reduce(0, +) == 16_384, "paged out \(expected.reduce(0, +)) of 16,384 pages")
            #expect(try sensors.process(pid: work.pid)?.swapins == 0)

            // The first half marked demoted (as the daemon does after its PAGEOUT).
            let demoted = Set(regions.prefix(regions.count / 2))
            let demotedAt = monotonicNanoseconds()
            for region in demoted { try sensors.markDemoted(pid: work.pid, region: region, now: demotedAt) }

            try work.touchAll()
            let byRegion = Dictionary(uniqueKeysWithValues: try sensors.regions(of: work.pid).map { ($0.region, $0.stats) })
            for (region, pages) in zip(regions, expected) {
                let name = "region 0x\(String(region << 21, radix: 16))"
                let stats = try #require(byRegion[region], "no entry for \(name)")
                #expect(stats.swapins == UInt64(pages), "\(name): \(stats.swapins) swap-ins of \(pages) pages out")
                #expect(stats.faults == UInt64(pages), "\(name): \(stats.faults) faults")
                if demoted.contains(region) {
                    #expect(stats.refaults == UInt64(pages) && stats.demotions == 1 && stats.demoted_ns == demotedAt, "\(name): \(stats)")
                } else {
                    #expect(stats.refaults == 0 && stats.demotions == 0 && stats.demoted_ns == 0, "\(name): \(stats)")
                }
            }
            let proc = try #require(try sensors.process(pid: work.pid))
            let demotedPages = zip(regions, expected).filter { demoted.contains($0.0) }.reduce(0) { $0 + $1.1 }
            #expect(proc.swapins == 16_384, "\(proc.swapins) swap-ins counted")
            #expect(proc.refaults == UInt64(demotedPages))
            print("swap-ins: \(proc.swapins) counted for 16,384 pages out, refaults \(proc.refaults) of \(demotedPages) in demoted regions")

            // A demotion zeroes the region's refaults; its swap-ins stay.
            let first = regions[0]
            try sensors.markDemoted(pid: work.pid, region: first, now: demotedAt + 1)
            let again = try #require(try sensors.region(of: work.pid, first))
            #expect(again.refaults == 0 && again.demotions == 2 && again.swapins == UInt64(expected[0]))

            // Swap-ins the kernel takes in kernel mode (write(2) reading the
            // memory) are the process's, but no user fault says where: no region gets them.
            let before = try sensors.regions(of: work.pid).reduce(0) { $0 + $1.stats.swapins }
            let outAgain = try pageOutAll(work).filter { $0 }.count
            try work.copyAll()
            let after = try #require(try sensors.process(pid: work.pid))
            #expect(after.swapins == proc.swapins + UInt64(outAgain), "\(after.swapins - proc.swapins) kernel-mode swap-ins of \(outAgain) pages out")
            #expect(try sensors.regions(of: work.pid).reduce(0) { $0 + $1.stats.swapins } == before)
            #expect(after.refaults == proc.refaults, "without a region, no refault either")
        }()
    }

    /// Pages the workload's cold part out to swap; which of its pages are out.
    /// PAGEOUT skips pages still in a CPU's LRU batch and drains only the
    /// batch of the CPU it runs on: so it is done from every CPU.
    func pageOutAll(_ work: HotColdWorkload) throws -> [Bool] {
        var swapped: [Bool] = []
        for _ in 0..<3 {
            try SensorTestPaging.onEachCPU { try SensorTestPaging.pageOut(pid: work.pid, start: work.cold.start, bytes: work.cold.bytes) }
            swapped = try SensorTestPaging.swappedPages(pid: work.pid, start: work.cold.start, bytes: work.cold.bytes)
            if !swapped.contains(false) { break }
        }
        return swapped
    }

    /// Every write of the daemon changes the fields it names and no other.
    @Test func theDaemonsWritesChangeOnlyTheirFields() throws {
        let sensors = try openSensors()  // not attached: nothing but these writes changes the maps
        let pid: Int32 = 0x3fff_fff0  // above pid_max: no process has it
        try sensors.track(pid: pid, cgroupID: 7)
        var proc = try #require(try sensors.process(pid: pid))
        #expect(proc.cgroup_id == 7 && proc.faults == 0 && proc.demoted_bytes == 0)

        try sensors.setResidency(pid: pid, anonBytes: 8 * Self.mib, swapBytes: 4 * Self.mib + 100)
        try sensors.addDemoted(pid: pid, bytes: 4096)
        try sensors.addDemoted(pid: pid, bytes: 4096)
        try sensors.track(pid: pid, cgroupID: 9)  // tracked already: the cgroup changes, nothing else
        proc = try #require(try sensors.process(pid: pid))
        #expect(proc.cgroup_id == 9 && proc.anon_pages == 2048 && proc.swap_pages == 1024 && proc.demoted_bytes == 8192)

        let (r1, r2, r3, r4): (UInt64, UInt64, UInt64, UInt64) = (0x3f_0000, 0x3f_0001, 0x3f_0002, 0x3f_0003)
        #expect(try sensors.seedRegions(pid: pid, regions: [r1, r2], now: 123) == 2)
        #expect(try sensors.seedRegions(pid: pid, regions: [r1, r3], now: 456) == 1, "a region with an entry is not seeded again")
        var one = try #require(try sensors.region(of: pid, r1))
        #expect(one.last_fault_ns == 123 && one.first_fault_ns == 0 && one.faults == 0 && one.demoted_ns == 0)

        try sensors.markDemoted(pid: pid, region: r1, now: 500)
        try sensors.markDemoted(pid: pid, region: r1, now: 600)
        one = try #require(try sensors.region(of: pid, r1))
        #expect(one.demoted_ns == 600 && one.demotions == 2 && one.refaults == 0 && one.last_fault_ns == 123)

        try sensors.setCompressibility(pid: pid, region: r2, permille: 950)
        var two = try #require(try sensors.region(of: pid, r2))
        #expect(two.compressed_permille == 950 && two.flags & MMPOLICY_TIER_REGION_INCOMPRESSIBLE != 0 && two.last_fault_ns == 123)
        try sensors.setCompressibility(pid: pid, region: r2, permille: 300)
        two = try #require(try sensors.region(of: pid, r2))
        #expect(two.compressed_permille == 300 && two.flags & MMPOLICY_TIER_REGION_INCOMPRESSIBLE == 0)

        try sensors.markDemoted(pid: pid, region: r4, now: 700)  // no entry: made
        let four = try #require(try sensors.region(of: pid, r4))
        #expect(four.demoted_ns == 700 && four.demotions == 1 && four.last_fault_ns == 0)
        #expect(try sensors.regions(of: pid).map(\.region) == [r1, r2, r3, r4])

        // The process writes need a tracked process.
        for write in [{ try sensors.setResidency(pid: pid + 1, anonBytes: 1, swapBytes: 1) },
                      { try sensors.addDemoted(pid: pid + 1, bytes: 1) }] {
            let error = try #require(throws: BPFError.self) { try write() }
            #expect(error.errno?.rawValue == ENOENT && error.description.contains("not tracked"), "\(error)")
        }

        try sensors.untrack(pid: pid)
        #expect(try sensors.process(pid: pid) == nil && sensors.regions(of: pid).isEmpty)
    }

    @Test func trackingMoreThanMaxProcessesIsRefusedWithAFix() throws {
        let sensors = try openSensors()
        let first: Int32 = 0x3000_0000
        let pids = (0..<Int32(TieringSensors.maxProcesses)).map { first + $0 }
        for pid in pids { try sensors.track(pid: pid, cgroupID: 0) }
        let error = try #require(throws: BPFError.self) { try sensors.track(pid: first - 1, cgroupID: 0) }
        #expect(error.errno?.rawValue == E2BIG && error.description.contains("4096 processes are tracked already")
                && error.fix != nil, "\(error)")
        try sensors.track(pid: pids[0], cgroupID: 5)  // one already tracked still takes its cgroup
        for pid in pids { try sensors.untrack(pid: pid) }
        #expect(try sensors.trackedProcesses().isEmpty)
    }

    /// A second object that declares the maps through tiering.bpf.h, as a
    /// policy does, handed the sensors' maps before it loads: it reads what
    /// the sensors counted and what the daemon wrote.
    @Test func aPolicyObjectReusingTheSensorsMapsSeesTheSameEntries() throws {
        let sensors = try openSensors()
        try sensors.attachPrograms()
        let work = try HotColdWorkload(hotBytes: 0, coldBytes: 4 * Self.mib, untouched: true)
        try sensors.track(pid: work.pid, cgroupID: 3)
        try work.touchAll()
        let region = HotColdWorkload.regions(of: work.cold)[1]
        try sensors.markDemoted(pid: work.pid, region: region, now: 77)

        let reader = try BPFObject(path: TestPaths.fixture("tier_map_reader"))
        for (name, fd) in sensors.sharedMaps { try #require(reader.map(named: name)).reuse(fd: fd) }
        try reader.load()
        let program = try #require(reader.program(named: "read_region"))
        var context = TierReadContext(tgid: UInt32(work.pid), region: region)
        try program.run(context: &context)
        #expect(context.found == 3, "process and region found through the shared maps")
        let counted = try #require(try sensors.region(of: work.pid, region))
        #expect(context.stats.faults == 512 && context.stats.faults == counted.faults)
        #expect(context.stats.first_fault_ns == counted.first_fault_ns && context.stats.demoted_ns == 77)
        let proc = try #require(try sensors.process(pid: work.pid))
        #expect(context.proc.cgroup_id == 3 && context.proc.faults == proc.faults)

        // And through the second object's own map view.
        var key = mmpolicy_tier_region_key()
        key.tgid = UInt32(work.pid)
        key.region = region
        let viaReader = try #require(try reader.map(named: "tier_regions")?.lookup(key, as: mmpolicy_tier_region.self))
        #expect(viaReader.faults == 512 && viaReader.demoted_ns == 77)
        // Its plan map is its own, not shared.
        #expect(sensors.sharedMaps[String(cString: MMPOLICY_TIER_PLAN_MAP)] == nil)
    }

    /// How long the daemon takes to read a full region map for one process.
    @Test func listingAFullRegionMap() throws {
        let sensors = try openSensors()
        let pid: Int32 = 0x3fff_fff1
        let count = Int(TieringSensors.maxRegions)
        let seedStart = monotonicNanoseconds()
        let made = try sensors.seedRegions(pid: pid, regions: (0..<UInt64(count)).map { 0x10_0000 + $0 }, now: 1)
        let seeded = Double(monotonicNanoseconds() - seedStart) / 1e6
        let listStart = monotonicNanoseconds()
        let regions = try sensors.regions(of: pid)
        let listed = Double(monotonicNanoseconds() - listStart) / 1e6
        let untrackStart = monotonicNanoseconds()
        try sensors.untrack(pid: pid)
        let untracked = Double(monotonicNanoseconds() - untrackStart) / 1e6
        print("region map: seeded \(made) in \(seeded) ms, listed \(regions.count) in \(listed) ms, untracked in \(untracked) ms")
        #expect(made == count)
        // The LRU map may evict a little before it is full (per-CPU free lists).
        #expect(regions.count >= count - 2048 && regions.count <= count, "\(regions.count) listed")
        #expect(try sensors.regions(of: pid).isEmpty)
    }
}

/// The tier_map_reader fixture's context (struct tier_read_ctx).
struct TierReadContext {
    var tgid: UInt32
    var found: UInt32 = 0
    var region: UInt64
    var proc = mmpolicy_tier_proc()
    var stats = mmpolicy_tier_region()
}

/// process_madvise(2) and /proc/PID/pagemap for these tests: paging another
/// process's memory out and seeing which of its pages are in swap.
enum SensorTestPaging {
    private typealias Syscall = @convention(c) (Int, Int, Int, Int, Int, Int) -> Int
    // glibc's `syscall` is variadic; on x86_64 and aarch64 it only moves integer registers.
    private static let syscall = unsafeBitCast(dlsym(nil, "syscall")!, to: Syscall.self)
    // sched_{get,set}affinity need _GNU_SOURCE, which Swift's Glibc module leaves out.
    private typealias Affinity = @convention(c) (Int32, Int, UnsafeMutablePointer<cpu_set_t>) -> Int32
    private static let getAffinity = unsafeBitCast(dlsym(nil, "sched_getaffinity")!, to: Affinity.self)
    private static let setAffinity = unsafeBitCast(dlsym(nil, "sched_setaffinity")!, to: Affinity.self)
    private static let pidfdOpen = 434, processMadvise = 440
    private static let madvPageout = 21

    /// MADV_PAGEOUT on `bytes` from `start` in process `pid`; the bytes advised.
    @discardableResult
    static func pageOut(pid: Int32, start: UInt64, bytes: UInt64) throws -> Int {
        let pidfd = syscall(pidfdOpen, Int(pid), 0, 0, 0, 0)
        guard pidfd >= 0 else { throw SystemCallError(operation: "pidfd_open", target: "process \(pid)", errno: .init(rawValue: errno)) }
        defer { close(Int32(pidfd)) }
        var vector = iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(start)), iov_len: Int(bytes))
        let advised = withUnsafePointer(to: &vector) { syscall(processMadvise, pidfd, Int(bitPattern: $0), 1, madvPageout, 0) }
        guard advised >= 0 else { throw SystemCallError(operation: "process_madvise(MADV_PAGEOUT)", target: "process \(pid)", errno: .init(rawValue: errno)) }
        return advised
    }

    /// Runs `body` once on each CPU this thread may run on (pinned to it),
    /// then gives the thread its CPUs back.
    static func onEachCPU(_ body: () throws -> Void) throws {
        var original = cpu_set_t()
        guard getAffinity(0, MemoryLayout<cpu_set_t>.size, &original) == 0 else {
            throw SystemCallError(operation: "sched_getaffinity", target: "this thread", errno: .init(rawValue: errno))
        }
        defer { _ = setAffinity(0, MemoryLayout<cpu_set_t>.size, &original) }
        let allowed = withUnsafeBytes(of: original) { bytes in
            (0..<(bytes.count * 8)).filter { bytes[$0 / 8] & (1 << ($0 % 8)) != 0 }
        }
        for cpu in allowed {
            var one = cpu_set_t()
            withUnsafeMutableBytes(of: &one) { $0[cpu / 8] = 1 << (cpu % 8) }
            guard setAffinity(0, MemoryLayout<cpu_set_t>.size, &one) == 0 else { continue }  // went offline
            try body()
        }
    }

    /// For each page from `start`: is it in swap (pagemap bit 62)?
    static func swappedPages(pid: Int32, start: UInt64, bytes: UInt64) throws -> [Bool] {
        let fd = open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SystemCallError(operation: "open", target: "/proc/\(pid)/pagemap", errno: .init(rawValue: errno)) }
        defer { close(fd) }
        var entries = [UInt64](repeating: 0, count: Int(bytes / 4096))
        let length = entries.count * 8
        let got = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, length, off_t(start / 4096 * 8)) }
        guard got == length else { throw SystemCallError(operation: "pread", target: "/proc/\(pid)/pagemap", errno: .init(rawValue: errno)) }
        return entries.map { $0 & (1 << 62) != 0 }
    }
}
