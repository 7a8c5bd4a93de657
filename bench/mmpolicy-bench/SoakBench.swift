// `mmpolicy-bench soak`: thousands of load/unload cycles against one daemon,
// and what the daemon holds before and after: resident and anonymous memory,
// descriptors, BPF objects and the state database's size. A leak in any of
// them grows with the cycle count. See bench/README.md.
import ArgumentParser
import BPFKit
import Foundation
import MMPolicyCore
import MMPolicyDaemon

#if canImport(Glibc)
import Glibc
#endif

struct SoakBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "Load/unload cycles against one daemon: its RSS, descriptors, BPF objects and database size before and after.",
        discussion: """
            Needs root, built BPF objects (make bpf) and a release mmpolicy. The daemon is the benchmark's own \
            (scratch socket, state and policy directories) and is stopped at the end.
            """)

    @Option(help: "Directory of built BPF objects (the daemon's MMPOLICY_OBJECT_PATH).") var objects = "build/bpf"
    @Option(help: "Path of mmpolicy (the daemon).") var mmpolicy = ".build/release/mmpolicy"
    @Option(help: "Directory of policy manifests to copy for the daemon.") var policies = "policies"
    @Option(help: "Load/unload cycles.") var cycles = 5000
    @Option(help: "Cycles between samples.") var every = 500
    @Option(help: "The policy loaded and unloaded, by name.") var policy = "oom_largest"
    @Option(help: "Its scope.") var scope = "system"
    @Option(help: "Its mode.") var mode = "observe"

    /// What the daemon holds at one moment.
    struct Sample {
        var cycle: Int
        var rssKB: UInt64
        var anonKB: UInt64
        var descriptors: Int
        var bpfObjects: Int
        var databaseKB: UInt64
        var events: Int
    }

    func run() throws {
        guard geteuid() == 0 else { throw BenchError("mmpolicy-bench soak needs root (the daemon loads BPF programs)") }
        let scratch = try ScratchDirectory()
        let daemon = try DaemonSession(mmpolicy: absolutePath(mmpolicy), objects: objects, policies: policies,
                                       scratch: scratch, name: "soak")
        defer { daemon.stop() }
        let client = ControlClient(socketPath: daemon.socket, timeoutSeconds: 30)
        let stateDirectory = scratch.path + "/soak-state"
        print("# mmpolicy-bench soak (kernel \(kernelRelease()), \(cycles) cycles of load + unload of \(policy) on \(scope) in \(mode) mode)\n")

        func cycle() throws {
            let load = try client.send(ControlRequest(command: .load, load: LoadRequest(policy: policy, scope: scope, mode: mode)))
            guard load.ok else { throw BenchError("load failed: \(load.error ?? "?")") }
            let unload = try client.send(ControlRequest(command: .unload, name: policy))
            guard unload.ok else { throw BenchError("unload failed: \(unload.error ?? "?")") }
        }
        // The database is read directly (a second connection, as `sqlite3` would):
        // asking the daemon for every event would make it build a large reply,
        // and the measurement would grow the heap it measures.
        let store = try StateStore(directory: stateDirectory)
        func sample(_ n: Int) throws -> Sample {
            let events = try store.eventCount()
            let fds = Self.descriptorTargets(daemon.pid)
            return Sample(cycle: n, rssKB: (statusBytes(pid: daemon.pid, key: "VmRSS") ?? 0) / 1024,
                          anonKB: (statusBytes(pid: daemon.pid, key: "RssAnon") ?? 0) / 1024,
                          descriptors: fds.count, bpfObjects: fds.filter { $0.hasPrefix("anon_inode:bpf") }.count,
                          databaseKB: Self.databaseBytes(stateDirectory) / 1024, events: events)
        }

        // Warm up: the first load reads the kernel's BTF and sizes the heap.
        for _ in 0..<10 { try cycle() }
        var samples = [try sample(0)]
        let start = monotonicNanoseconds()
        for n in 1...cycles {
            try Interrupt.check()
            try cycle()
            if n % every == 0 || n == cycles {
                samples.append(try sample(n))
                FileHandle.standardError.write(Data("mmpolicy-bench soak: \(n)/\(cycles)\n".utf8))
            }
        }
        let seconds = Double(monotonicNanoseconds() - start) / 1e9
        print("| cycles | VmRSS KB | RssAnon KB | descriptors | BPF objects | database KB | events |")
        print("|---|---|---|---|---|---|---|")
        for s in samples {
            print("| \(s.cycle) | \(s.rssKB) | \(s.anonKB) | \(s.descriptors) | \(s.bpfObjects) | \(s.databaseKB) | \(s.events) |")
        }
        let first = samples[0], last = samples[samples.count - 1]
        print("\n\(cycles) cycles in \(fmt(seconds, 1)) s (\(fmt(seconds * 1000 / Double(cycles), 1)) ms per load + unload).")
        print("Growth over the cycles: VmRSS \(Int(last.rssKB) - Int(first.rssKB)) KB, RssAnon \(Int(last.anonKB) - Int(first.anonKB)) KB, descriptors \(last.descriptors - first.descriptors), BPF objects \(last.bpfObjects - first.bpfObjects), database \(Int(last.databaseKB) - Int(first.databaseKB)) KB (\(last.events - first.events) more events).\n")
    }

    /// Where each of `pid`'s descriptors points ("anon_inode:bpf-prog", "socket:[...]", a path).
    static func descriptorTargets(_ pid: pid_t) -> [String] {
        let dir = "/proc/\(pid)/fd"
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [] }
        return entries.compactMap { try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + $0) }
    }

    /// state.sqlite with its WAL and shared-memory files.
    static func databaseBytes(_ directory: String) -> UInt64 {
        [StateStore.fileName, StateStore.fileName + "-wal", StateStore.fileName + "-shm"].reduce(0) { total, file in
            var info = stat()
            return total + (stat(directory + "/" + file, &info) == 0 ? UInt64(info.st_size) : 0)
        }
    }
}
