// `mmpolicy-bench tiering-sensors`: what the tiering sensors cost a process
// that does nothing but take page faults, with the sensors detached, attached
// with the process untracked, and attached with it tracked; their own run
// time per event; and how long the daemon takes to list a full region map.
// See bench/README.md, "Tiering sensors".
import ArgumentParser
import BPFKit
import MMPolicyCore
import MMPolicyKinds

#if canImport(Glibc)
import Glibc
#endif

struct TieringSensorsBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tiering-sensors",
        abstract: "Page-fault slowdown from the tiering sensors (detached / attached, untracked / tracked), ns per event, region listing time.",
        discussion: """
            Needs root, the sensors object (make bpf) and a release mmpolicy-workload. One \
            `mmpolicy-workload faults` process per thread count (first-touch every page, MADV_DONTNEED, \
            again) runs one block per contender and round, the contenders interleaved in a rotating order; \
            slowdown is judged on the process's CPU time per fault, which time spent waiting for a CPU \
            other programs hold does not inflate.
            """)

    @Option(help: "Directory of built BPF objects.") var objects = "build/bpf"
    @Option(help: "The sensors object (default: sensors/tiering_sensors.bpf.o under --objects).") var object: String?
    @Option(help: "Path of mmpolicy-workload.") var workload = ".build/release/mmpolicy-workload"
    @Option(help: "Memory faulted in and given back per pass.") var size = "64M"
    @Option(help: "Passes per block (one contender's turn).") var passes = 2
    @Option(help: "Rounds: each runs every contender's block once.") var rounds = 60
    @Option(help: "Blocks per contender with BPF run statistics on (for ns per run).") var statsBlocks = 10
    @Option(parsing: .upToNextOption, help: "Thread counts of the workload.") var threads: [Int] = [1, 2]
    @Flag(help: "Skip the region listing measurement.") var skipListing = false

    enum Contender: String, CaseIterable {
        case detached = "sensors detached (baseline)"
        case floor = "floor: empty programs on the same tracepoints"
        case untracked = "attached, process untracked"
        case tracked = "attached, process tracked"
    }

    /// The contenders whose programs' run time is measured.
    static let timedContenders: [Contender] = [.floor, .untracked, .tracked]

    /// One block's outcome: one run of the workload under one contender.
    struct Block {
        var wallNsPerFault: Double
        var cpuNsPerFault: Double
        var faults: Int
        /// Per sensor program: runs and run time during the block (the whole system's events).
        var programs: [String: (runs: UInt64, ns: UInt64)]
        /// Tracked: faults of the block the sensors did not count for the process.
        var missed: Int
    }

    func run() throws {
        guard geteuid() == 0 else { throw BenchError("mmpolicy-bench tiering-sensors needs root (it loads BPF programs)") }
        Interrupt.install()
        let path = object ?? objects + "/" + TieringSensors.objectName
        let sensors = try TieringSensors(objectPath: path)
        defer { sensors.detachPrograms() }
        let floor = try FloorPrograms(path: objects + "/bench/tier_floor.bpf.o")
        defer { floor.detach() }
        let cpus = sysconf(Int32(_SC_NPROCESSORS_ONLN))
        print("# mmpolicy-bench tiering-sensors (kernel \(kernelRelease()), \(cpus) CPUs, object \(path), load average \(loadAverage()))\n")
        print("Workload: one `mmpolicy-workload faults --size \(size) --passes \(passes)` process per thread count; \(rounds) rounds of one block per contender, interleaved in a rotating order.\n")

        for threadCount in threads {
            try measure(sensors, floor, threads: threadCount)
        }
        if !skipListing { try measureListing(sensors) }
        print("Load average at the end: \(loadAverage())\n")
    }

    private func measure(_ sensors: TieringSensors, _ floor: FloorPrograms, threads threadCount: Int) throws {
        let child = try ChildProcess(workload, ["faults", "--size", size, "--passes", String(passes), "--threads", String(threadCount),
                                                "--runs", String(rounds * Contender.allCases.count + statsBlocks * Self.timedContenders.count)])
        try child.waitReady()
        var blocks: [Contender: [Block]] = [:]
        var cpuRatios: [Contender: [Double]] = [:], wallRatios: [Contender: [Double]] = [:]
        // Timed without BPF run statistics: with them on, the kernel reads
        // the clock twice around every program run, which costs more than
        // these programs do (a KVM guest's clock is not cheap).
        for round in 0..<rounds {
            try Interrupt.check()
            // Rotate the order so no contender always runs first or after the same one.
            let all = Contender.allCases
            let order = (0..<all.count).map { all[($0 + round) % all.count] }
            var thisRound: [Contender: Block] = [:]
            for contender in order { thisRound[contender] = try block(sensors, floor, contender, child) }
            let base = thisRound[.detached]!
            for (contender, block) in thisRound {
                blocks[contender, default: []].append(block)
                cpuRatios[contender, default: []].append(block.cpuNsPerFault / base.cpuNsPerFault)
                wallRatios[contender, default: []].append(block.wallNsPerFault / base.wallNsPerFault)
            }
        }
        // The programs' own run time: separate blocks with statistics on.
        var timed: [Contender: [Block]] = [:]
        do {
            let stats = try BPFStatsSession()
            for _ in 0..<statsBlocks {
                for contender in Self.timedContenders {
                    timed[contender, default: []].append(try block(sensors, floor, contender, child))
                }
            }
            withExtendedLifetime(stats) {}
        }
        try sensors.untrack(pid: child.pid)
        child.wait(timeoutMs: 10_000)

        let faults = blocks[.detached]![0].faults
        print("## \(threadCount) thread\(threadCount == 1 ? "" : "s"): \(faults) faults per block\n")
        print("| contender | CPU ns per fault p50 | wall ns per fault p50 | CPU ratio to baseline, p50 of \(rounds) rounds | p25 | p75 | wall ratio p50 | p25 | p75 |")
        print("|---|---|---|---|---|---|---|---|---|")
        for contender in Contender.allCases {
            let list = blocks[contender]!, cpu = cpuRatios[contender]!, wall = wallRatios[contender]!
            print("| \(contender.rawValue) | \(fmt(percentile(list.map(\.cpuNsPerFault), 50), 1)) | \(fmt(percentile(list.map(\.wallNsPerFault), 50), 1)) | \(fmt(percentile(cpu, 50), 4)) | \(fmt(percentile(cpu, 25), 4)) | \(fmt(percentile(cpu, 75), 4)) | \(fmt(percentile(wall, 50), 4)) | \(fmt(percentile(wall, 25), 4)) | \(fmt(percentile(wall, 75), 4)) |")
        }
        print("\nThe programs' own run time (\(statsBlocks) blocks each with BPF run statistics on; runs per fault count the whole system's events during the blocks; the floor's empty programs show what the statistics' own clock reads add to each run):\n")
        print("| contender | tier_fault ns per run | runs per fault | tier_swapin ns per run | runs per fault | BPF ns per fault |")
        print("|---|---|---|---|---|---|")
        for contender in Self.timedContenders {
            let list = timed[contender]!
            let faultsDone = Double(list.reduce(0) { $0 + $1.faults })
            var cells: [String] = []
            var perFault = 0.0
            for name in TieringSensors.sensorPrograms {
                let runs = list.reduce(UInt64(0)) { $0 + ($1.programs[name]?.runs ?? 0) }
                let time = list.reduce(UInt64(0)) { $0 + ($1.programs[name]?.ns ?? 0) }
                cells.append(runs > 0 ? fmt(Double(time) / Double(runs), 1) : "-")
                cells.append(fmt(Double(runs) / faultsDone, 2))
                perFault += Double(time) / faultsDone
            }
            print("| \(contender.rawValue) | \(cells.joined(separator: " | ")) | \(fmt(perFault, 1)) |")
        }
        let trackedBlocks = blocks[.tracked]! + timed[.tracked]!
        let missed = trackedBlocks.reduce(0) { $0 + $1.missed }
        print("\nTracked blocks: the sensors counted \(missed == 0 ? "every one" : "all but \(missed)") of the process's \(trackedBlocks.count * faults) page faults.")
        print("Overhead in CPU time (p50 of per-round ratios - 1): untracked \(fmt((percentile(cpuRatios[.untracked]!, 50) - 1) * 100, 2)) %, tracked \(fmt((percentile(cpuRatios[.tracked]!, 50) - 1) * 100, 2)) % (target <= 2 %); the floor, empty programs, \(fmt((percentile(cpuRatios[.floor]!, 50) - 1) * 100, 2)) %.")
        let base = percentile(blocks[.detached]!.map(\.cpuNsPerFault), 50)
        let extra = [Contender.floor, .untracked, .tracked].map { "\($0 == .floor ? "floor" : $0 == .untracked ? "untracked" : "tracked") +\(fmt(percentile(blocks[$0]!.map(\.cpuNsPerFault), 50) - base, 1))" }
        print("CPU ns per fault added (p50 - baseline p50): \(extra.joined(separator: ", ")).\n")
    }

    /// One run of the workload under `contender`.
    private func block(_ sensors: TieringSensors, _ floor: FloorPrograms, _ contender: Contender, _ child: ChildProcess) throws -> Block {
        if contender != .floor { floor.detach() }
        switch contender {
        case .detached:
            sensors.detachPrograms()
        case .floor:
            sensors.detachPrograms()
            try floor.attach()
        case .untracked:
            try sensors.untrack(pid: child.pid)
            try sensors.attachPrograms()
        case .tracked:
            // Counts from zero each block (untrack deletes its regions too).
            try sensors.untrack(pid: child.pid)
            try sensors.track(pid: child.pid, cgroupID: 0)
            try sensors.attachPrograms()
        }
        let before = Dictionary(uniqueKeysWithValues: (sensors.programStats + floor.programStats).map { ($0.name, ($0.runCount, $0.runTimeNs)) })
        child.kill(SIGUSR1)
        guard let line = child.readLine(timeoutMs: 300_000), line.hasPrefix("done ") else {
            throw BenchError("the faults workload (pid \(child.pid)) did not finish a run: \(child.wait(timeoutMs: 1000).map(describeStatus) ?? "still running")")
        }
        let after = Dictionary(uniqueKeysWithValues: (sensors.programStats + floor.programStats).map { ($0.name, ($0.runCount, $0.runTimeNs)) })
        let words = line.split(separator: " ")
        guard words.count == 4, let wall = Double(words[1]), let cpu = Double(words[2]), let faults = Int(words[3]), faults > 0 else {
            throw BenchError("unexpected output of the faults workload: \(line)")
        }
        var programs: [String: (runs: UInt64, ns: UInt64)] = [:]
        for (name, end) in after {
            let start = before[name] ?? (0, 0)
            // The floor's programs are reported in their sensor counterpart's column.
            let column = contender == .floor ? FloorPrograms.counterpart[name] : (FloorPrograms.counterpart[name] == nil ? name : nil)
            if let column { programs[column] = (end.0 &- start.0, end.1 &- start.1) }
        }
        var missed = 0
        if contender == .tracked {
            let counted = try sensors.process(pid: child.pid)?.faults ?? 0
            missed = max(0, faults - Int(counted))
        }
        return Block(wallNsPerFault: wall / Double(faults), cpuNsPerFault: cpu / Double(faults), faults: faults, programs: programs,
                     missed: missed)
    }

    /// tier_floor's programs (bench/bpf/tier_floor.bpf.c), attached on demand.
    final class FloorPrograms {
        let object: BPFObject
        private var links: [BPFLink] = []

        init(path: String) throws {
            object = try BPFObject(path: path)
            try object.load()
        }

        func attach() throws {
            guard links.isEmpty else { return }
            links = try object.programs.map { try $0.attach() }
        }

        func detach() {
            for link in links { link.detach() }
            links = []
        }

        /// Each floor program's sensor counterpart.
        static let counterpart = ["floor_fault": "tier_fault", "floor_bio": "tier_swapin"]

        var programStats: [(name: String, runCount: UInt64, runTimeNs: UInt64)] {
            object.programs.compactMap { program in (try? program.info()).map { (program.name, $0.runCount, $0.runTimeNanoseconds) } }
        }
    }

    private func loadAverage() -> String {
        (readSmallFile("/proc/loadavg") ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
    }

    /// Seeds a full region map for one made-up process and times listing and untracking it.
    private func measureListing(_ sensors: TieringSensors) throws {
        let pid: Int32 = 0x3fff_fff2  // above pid_max: no process has it
        let count = Int(TieringSensors.maxRegions)
        var listings: [Double] = []
        var listed = 0
        let seedStart = monotonicNanoseconds()
        let made = try sensors.seedRegions(pid: pid, regions: (0..<UInt64(count)).map { 0x10_0000 + $0 }, now: 1)
        let seedMs = Double(monotonicNanoseconds() - seedStart) / 1e6
        for _ in 0..<5 {
            let start = monotonicNanoseconds()
            listed = try sensors.regions(of: pid).count
            listings.append(Double(monotonicNanoseconds() - start) / 1e6)
        }
        let untrackStart = monotonicNanoseconds()
        try sensors.untrack(pid: pid)
        let untrackMs = Double(monotonicNanoseconds() - untrackStart) / 1e6
        print("## Region map: \(count) entries of one process\n")
        print("| step | ms |")
        print("|---|---|")
        print("| seed \(made) regions (one tier_write run each) | \(fmt(seedMs, 1)) |")
        print("| list them, regions(of:), \(listed) listed, p50 of 5 | \(fmt(percentile(listings, 50), 1)) (min \(fmt(listings.min()!, 1)), max \(fmt(listings.max()!, 1))) |")
        print("| untrack (delete them all) | \(fmt(untrackMs, 1)) |")
        print("")
    }
}
