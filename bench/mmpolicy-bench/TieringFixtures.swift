// What the tiering benchmark sets up and always takes down again (a zram
// device of its own), and the kernel counters it reads: a process's CPU
// split into user and system time, kswapd's CPU, key-value files
// (/proc/vmstat, memory.stat).
import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// A zram device of the benchmark's own (/sys/class/zram-control/hot_add),
/// lz4, swapped on at a given priority; swapped off, reset and removed
/// (hot_remove) by `off()` or on release.
///
/// Exists because each contender run needs a fresh slow tier of the same
/// size, and zram0 (or any device another engineer's test or benchmark
/// added) is not ours to touch. Swap is global: while it is on, any
/// process's pages may land on it, so the benchmark checks that no other
/// swap area is in use during a run (`TierSample.otherSwapInUse`).
final class OwnedZramSwap {
    static let control = "/sys/class/zram-control"

    /// "zramN".
    let name: String
    /// "/dev/zramN".
    var device: String { "/dev/" + name }
    var sysfs: String { "/sys/block/" + name }
    private var added = false
    private var swapped = false

    init(sizeBytes: UInt64, algorithm: String = "lz4", priority: Int) throws {
        guard access(Self.control + "/hot_add", R_OK) == 0 else {
            throw BenchError("no \(Self.control)/hot_add: the tiering benchmark needs the zram module with device hot-add (Linux 4.2+)")
        }
        let text = readSmallFile(Self.control + "/hot_add") ?? ""
        guard let number = Int(text.trimmed(" \n")) else { throw BenchError("reading \(Self.control)/hot_add gave '\(text)', not a device number") }
        name = "zram\(number)"
        added = true
        do {
            // The algorithm must be set before the size.
            try write(sysfs + "/comp_algorithm", algorithm)
            try write(sysfs + "/disksize", String(sizeBytes))
            let (made, madeStatus) = try runCommand("/sbin/mkswap", [device])
            guard madeStatus == 0 else { throw BenchError("mkswap \(device) failed (\(describeStatus(madeStatus))): \(made)") }
            let (on, onStatus) = try runCommand("/sbin/swapon", ["-p", String(priority), device])
            guard onStatus == 0 else { throw BenchError("swapon -p \(priority) \(device) failed (\(describeStatus(onStatus))): \(on)") }
            swapped = true
        } catch {
            off()
            throw error
        }
    }

    /// The device's mm_stat.
    func stats() throws -> ZramStats { try ZramStats.read(device: name) }

    /// swapoff, reset, hot_remove; idempotent. swapoff fails (ENOMEM)
    /// while pages it must bring back cannot be charged: swap is global, so
    /// a process of someone else's memcg at its limit may have pages here.
    /// It is retried for up to two minutes, as such a test ends.
    func off() {
        guard added else { return }
        let active = { (readSmallFile("/proc/swaps") ?? "").contains(self.device + " ") }
        if swapped {
            let deadline = monotonicNanoseconds() + 120_000_000_000
            var said = false
            while active() && monotonicNanoseconds() < deadline {
                if let child = try? ChildProcess("/sbin/swapoff", [device], output: .null), child.wait(timeoutMs: 120_000) == 0 { break }
                if !said && active() {
                    let stored = (try? stats().storedBytes).map { "\($0 >> 20) MiB" } ?? "?"
                    print("(swapoff \(device) failed; it still stores \(stored): pages that cannot be brought back yet, likely another test's memcg at its limit. Retrying for up to 2 min.)")
                    said = true
                }
                sleepMs(500)
            }
            swapped = active()
        }
        guard !swapped else {
            print("warning: \(device) is still active swap; run `swapoff \(device); echo 1 > \(sysfs)/reset; echo \(name.dropFirst(4)) > \(Self.control)/hot_remove`")
            return
        }
        try? write(sysfs + "/reset", "1")
        for _ in 0..<50 {
            // EBUSY while something still holds the device open (udev after mkswap/swapoff).
            if (try? write(Self.control + "/hot_remove", String(name.dropFirst(4)))) != nil || access(sysfs, F_OK) != 0 {
                added = false
                return
            }
            sleepMs(100)
        }
        print("warning: could not remove \(device); run `echo \(name.dropFirst(4)) > \(Self.control)/hot_remove`")
    }

    deinit { off() }
}

/// utime and stime of a process (all its threads), in clock ticks, from
/// /proc/PID/stat; nil once it is gone.
struct ProcessCPU: Equatable {
    var userTicks: UInt64
    var systemTicks: UInt64
    var totalTicks: UInt64 { userTicks + systemTicks }

    static func read(pid: pid_t) -> ProcessCPU? {
        guard let stat = readSmallFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the comm: state is field 3, utime 14, stime 15 -> offsets 11 and 12.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return ProcessCPU(userTicks: user, systemTicks: system)
    }

    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// The kernel's kswapd threads (one per NUMA node): where background
/// reclaim, and with it zram compression, runs when the system is short
/// of memory.
enum KswapdThreads {
    static func pids() -> [pid_t] {
        ProcessSnapshot.allPIDs().filter { pid in
            readSmallFile("/proc/\(pid)/comm")?.hasPrefix("kswapd") == true
        }
    }

    /// Their CPU (utime + stime) in clock ticks, all together.
    static func ticks(_ pids: [pid_t]) -> UInt64 {
        pids.reduce(0) { $0 + (ProcessCPU.read(pid: $1)?.totalTicks ?? 0) }
    }
}

/// "key value" lines (/proc/vmstat, a v1 memcg's memory.stat) as a dictionary.
func keyValueFile(_ path: String) -> [String: UInt64] {
    var values: [String: UInt64] = [:]
    for line in (readSmallFile(path) ?? "").split(separator: "\n") {
        let words = line.split(separator: " ")
        if words.count == 2, let value = UInt64(words[1]) { values[String(words[0])] = value }
    }
    return values
}

/// CPU time of the calling thread, ns (CLOCK_THREAD_CPUTIME_ID): what a
/// write to memory.limit_in_bytes costs the writer, which reclaims (and
/// compresses into zram) in its own context.
func threadCPUNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

/// /proc/loadavg's three averages.
func loadAverageText() -> String {
    (readSmallFile("/proc/loadavg") ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
}

/// A v1 memory cgroup for one contender run: created empty and unlimited,
/// removed (after killing anything left in it) by `remove()` or on release.
///
/// Exists apart from the OOM benchmark's `BenchMemcg` because a run must
/// be able to remove it at a chosen point of its teardown (after the
/// daemon and before swap goes off), not whenever Swift releases it.
final class TierMemcg {
    let path: String
    var memcg: MemcgV1 { MemcgV1(path: path) }
    private var exists = false

    init(path: String) throws {
        self.path = path
        if mkdir(path, 0o755) != 0 {
            guard errno == EEXIST else {
                throw BenchError("cannot create \(path): errno \(errno) (is the memory controller on cgroup v1 at \(parentDirectory(path))?)")
            }
            exists = true
            // Left over from an interrupted run: empty it and start again.
            remove()
            guard mkdir(path, 0o755) == 0 else { throw BenchError("\(path) is left over from an earlier run and cannot be removed") }
        }
        exists = true
    }

    /// memory.usage_in_bytes.
    func usageBytes() throws -> UInt64 { try memcg.usageBytes() }

    /// Writes memory.limit_in_bytes: below the usage, the kernel reclaims at once, in the writer's context.
    func setLimit(_ bytes: UInt64) throws { try write(path + "/memory.limit_in_bytes", String(bytes)) }

    /// memory.stat.
    func stat() -> [String: UInt64] { keyValueFile(path + "/memory.stat") }

    /// Kills what is left in it and removes it; idempotent. rmdir can fail
    /// with EBUSY for a moment after the group looks empty (a task still
    /// exiting), so it retries for up to 10 s.
    func remove() {
        guard exists else { return }
        let deadline = monotonicNanoseconds() + 10_000_000_000
        var failure: Int32 = 0
        repeat {
            for pid in (try? memcg.procs()) ?? [] { kill(pid, SIGKILL) }
            if rmdir(path) == 0 || errno == ENOENT {
                exists = false
                return
            }
            failure = errno
            sleepMs(20)
        } while monotonicNanoseconds() < deadline
        print("warning: could not remove \(path): errno \(failure)")
    }

    deinit { remove() }
}

/// Writes a memcg's memory.limit_in_bytes on a thread of its own and
/// measures that thread's CPU time.
///
/// Exists because a v1 limit below the usage is reached by reclaim in the
/// writer's context before the write returns: the static contender's
/// compression CPU is spent there, and the benchmark's readings must go on
/// meanwhile. An ordinary thread (not SCHED_FIFO like `MeasuringThread`):
/// it competes with the workloads as any reclaimer would.
final class LimitWriter: @unchecked Sendable {
    private var thread = pthread_t()
    private var joined = false
    /// Set by the thread, read after `finish()`.
    private(set) var cpuNs: UInt64 = 0
    private(set) var failure: String?

    init(memcg: TierMemcg, bytes: UInt64) throws {
        let path = memcg.path + "/memory.limit_in_bytes"
        let box = Unmanaged.passRetained(Job { [self] in
            let before = threadCPUNanoseconds()
            do { try write(path, String(bytes)) } catch { failure = "\(error)" }
            cpuNs = threadCPUNanoseconds() - before
        })
        let rc = pthread_create(&thread, nil, { context in
            Unmanaged<Job>.fromOpaque(context!).takeRetainedValue().body()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw BenchError("pthread_create: errno \(rc)")
        }
    }

    private final class Job {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Waits for the write; the thread's CPU time, ns.
    func finish() -> UInt64 {
        if !joined {
            pthread_join(thread, nil)
            joined = true
        }
        return cpuNs
    }

    deinit { _ = finish() }
}
