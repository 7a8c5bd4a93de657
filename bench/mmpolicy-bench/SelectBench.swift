// `mmpolicy-bench select`: the figures of issue #2, measured on the running kernel.
//
//   load:     open + verify + load time of each reference policy object.
//   select:   select_victim latency (BPF_PROG_RUN round trip, measured in user
//             space) at 100 and 1,000 live processes, system scope, next to an
//             earlyoom-style /proc scan (read every process's oom_score and
//             pick the highest) on the same processes, as a ratio.
import ArgumentParser
import BPFKit
import MMPolicyCore
import MMPolicyKinds

#if canImport(Glibc)
import Glibc
#endif

struct SelectBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "select", abstract: "Policy load time and select_victim latency against an earlyoom-style /proc scan.")

    @Option(help: "Directory of built policy objects.") var objects = "build/bpf"
    @Option(help: "Path of mmpolicy-workload.") var workload = ".build/release/mmpolicy-workload"
    @Option(help: "Load trials per object.") var loadTrials = 30
    @Option(help: "select_victim runs per process count.") var runs = 1000
    @Option(parsing: .upToNextOption, help: "Live process counts to measure at.") var processCounts: [Int] = [100, 1000]

    func run() throws {
        let policies = ["oom_largest", "oom_growth"]
        print("# mmpolicy-bench (kernel \(kernelRelease()), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) CPUs)\n")

        print("## Policy load: open + verify + load + close, \(loadTrials) trials\n")
        print("| object | p50 ms | p99 ms | max ms | target |")
        print("|---|---|---|---|---|")
        for name in policies {
            var samples: [Double] = []
            for _ in 0..<loadTrials {
                let start = monotonicNanoseconds()
                let policy = try Policy.open(objectPath: "\(objects)/\(name).bpf.o", kinds: .builtIn)
                try policy.load()
                samples.append(Double(monotonicNanoseconds() - start) / 1e6)
            }
            print("| \(name) | \(fmt(percentile(samples, 50))) | \(fmt(percentile(samples, 99))) | \(fmt(samples.max()!)) | <= 100 ms |")
        }

        print("\n## select_victim latency, system scope, \(runs) runs per row\n")
        print("| live processes | policy | p50 us | p99 us | BPF run ns (mean) | /proc scan p50 us | /proc scan p99 us | p99 ratio (policy / scan) |")
        print("|---|---|---|---|---|---|---|---|")
        let stats = try BPFStatsSwitch()
        defer { stats.restore() }
        let measured = policies.map { ($0, "\(objects)/\($0).bpf.o") } + [("walk_floor (iterator only)", "\(objects)/bench/walk_floor.bpf.o")]
        let loaded = try measured.map { name, path -> (String, Policy, OOMSelector) in
            let policy = try Policy.open(objectPath: path, kinds: .builtIn)
            try policy.load()
            return (name, policy, try OOMSelector(policy: policy.object, ops: policy.ops))
        }
        // oom_growth runs with its sensor attached, as in the daemon.
        let sensor = try loaded[1].1.object.program(named: "growth_rss_stat")?.attach()
        defer { sensor?.detach() }
        let limit = physicalMemoryBytes()
        for target in processCounts.sorted() {
            let current = liveProcessCount()
            let filler = target > current ? try IdleProcesses(workload: workload, count: target - current) : nil
            let live = liveProcessCount()
            let scan = (0..<min(runs, 200)).map { _ -> Double in
                let start = monotonicNanoseconds()
                _ = procScanVictim()
                return Double(monotonicNanoseconds() - start) / 1e3
            }
            for (name, policy, selector) in loaded {
                let request = OOMRequest(trigger: .test, scope: .system, limitBytes: limit, daemonPID: getpid())
                let program = policy.object.program(named: policy.ops.program(for: "select_victim")!)!
                let before = try program.info()
                var samples: [Double] = []
                samples.reserveCapacity(runs)
                for _ in 0..<runs {
                    let start = monotonicNanoseconds()
                    let decision = try selector.selectVictim(request)
                    samples.append(Double(monotonicNanoseconds() - start) / 1e3)
                    precondition(decision.decided, "\(name) made no decision")
                }
                let after = try program.info()
                let bpfMean = after.runCount > before.runCount
                    ? Double(after.runTimeNanoseconds - before.runTimeNanoseconds) / Double(after.runCount - before.runCount) : .nan
                let ratio = percentile(samples, 99) / percentile(scan, 99)
                print("| \(live) | \(name) | \(fmt(percentile(samples, 50))) | \(fmt(percentile(samples, 99))) | \(fmt(bpfMean, 0)) | \(fmt(percentile(scan, 50))) | \(fmt(percentile(scan, 99))) | \(fmt(ratio, 3)) |")
            }
            withExtendedLifetime(filler) {}
        }
        print("\nTargets: load <= 100 ms per object; select_victim p99 <= 50 us at 1,000 processes.")
        print("walk_floor visits every process and reads only its pid: no policy that walks all processes can be faster.")
    }
}

/// Turns on kernel.bpf_stats_enabled for the run and puts back what it was.
final class BPFStatsSwitch {
    let path = "/proc/sys/kernel/bpf_stats_enabled"
    let original: String
    init() throws {
        original = try String(contentsOfProcFile: path).trimmed("\n ")
        try write(path, "1")
    }
    func restore() { try? write(path, original) }
    deinit { restore() }
}

/// `count` extra sleeping processes, removed when released.
final class IdleProcesses {
    let pid: pid_t
    let input: Int32
    init(workload: String, count: Int) throws {
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0]
        pipe(&toChild); pipe(&fromChild)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        posix_spawn_file_actions_addclose(&actions, toChild[1])
        posix_spawn_file_actions_addclose(&actions, fromChild[0])
        let words: [String] = [workload, "idle", "--count", String(count), "--rss", "64K"]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        var child: pid_t = 0
        let rc = posix_spawn(&child, workload, &actions, nil, argv, environ)
        argv.forEach { free($0) }
        posix_spawn_file_actions_destroy(&actions)
        close(toChild[0]); close(fromChild[1])
        guard rc == 0 else { throw BenchError("cannot start \(workload): errno \(rc); build it with `swift build -c release`") }
        pid = child
        input = toChild[1]
        var byte: UInt8 = 0
        var line: [UInt8] = []
        while read(fromChild[0], &byte, 1) == 1, byte != 10 { line.append(byte) }
        close(fromChild[0])
        guard String(decoding: line, as: UTF8.self).hasPrefix("ready") else { throw BenchError("workload idle did not become ready") }
    }
    deinit {
        close(input)
        kill(pid, SIGTERM)
        var status: Int32 = 0
        waitpid(pid, &status, 0)
    }
}

/// What a user-space killer such as earlyoom does to pick a victim: read every
/// process's oom_score from /proc and take the highest.
func procScanVictim() -> Int32 {
    var best: (pid: Int32, score: Int) = (0, -1)
    guard let dir = opendir("/proc") else { return 0 }
    defer { closedir(dir) }
    var buffer = [UInt8](repeating: 0, count: 64)
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let pid = Int32(name) else { continue }
        let fd = open("/proc/\(pid)/oom_score", O_RDONLY)
        guard fd >= 0 else { continue }
        let n = read(fd, &buffer, buffer.count)
        close(fd)
        guard n > 0, let score = Int(String(decoding: buffer[0..<n].prefix { $0 != 10 }, as: UTF8.self)) else { continue }
        if score > best.score { best = (pid, score) }
    }
    return best.pid
}

func liveProcessCount() -> Int {
    guard let dir = opendir("/proc") else { return 0 }
    defer { closedir(dir) }
    var count = 0
    while let entry = readdir(dir) {
        let first = withUnsafeBytes(of: entry.pointee.d_name) { $0[0] }
        if first >= UInt8(ascii: "0") && first <= UInt8(ascii: "9") { count += 1 }
    }
    return count
}

