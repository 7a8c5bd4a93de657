// What the watchdog benchmark sets up and always takes down again (zram
// swap), the 5 ms sampler that times a breach and the knob's return, and
// what it reads from the daemon (`status --json`, `events --json`).
import BPFKit
import MMPolicyCore
import Synchronization

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

/// Swap on /dev/zram0 for the refault trials: on in `init`, off and reset on
/// `off()` or release (any unwinding, ^C included). Refuses a zram0 that is
/// in use: it belongs to somebody else (a live test, another benchmark).
final class ZramSwapDevice {
    static let device = "/dev/zram0"
    static let sysfs = "/sys/block/zram0"
    private var configured = false

    /// Throws, saying why, unless zram0 exists, is not swap and has no disk size.
    static func checkFree() throws {
        guard access(sysfs, F_OK) == 0 else {
            throw BenchError("no \(sysfs): the refault trials need a zram device (`modprobe zram`), or pass --skip-refault")
        }
        let swaps = readSmallFile("/proc/swaps") ?? ""
        let size = readSmallFile(sysfs + "/disksize")?.trimmed(" \n") ?? "?"
        guard !swaps.contains(device), size == "0" else {
            throw BenchError("\(device) is already in use (\(swaps.contains(device) ? "it is active swap" : "disksize \(size)")): something else (a live test, another benchmark) is using it, and this benchmark will not touch it. Wait for it to finish, or free it yourself (`swapoff \(device); echo 1 > \(sysfs)/reset`) if it is a leftover; or pass --skip-refault")
        }
    }

    init(sizeBytes: UInt64) throws {
        try Self.checkFree()
        configured = true
        do {
            try write(Self.sysfs + "/disksize", String(sizeBytes))
            for (tool, arguments) in [("/sbin/mkswap", [Self.device]), ("/sbin/swapon", [Self.device])] {
                let (output, status) = try runCommand(tool, arguments)
                guard status == 0 else { throw BenchError("\(tool) \(arguments.joined(separator: " ")) failed (\(describeStatus(status))): \(output)") }
            }
        } catch {
            off()
            throw error
        }
    }

    /// swapoff and reset (idempotent). A swapoff cut short (a ^C reaches the
    /// whole process group) is retried.
    func off() {
        guard configured else { return }
        configured = false
        for _ in 0..<3 where (readSmallFile("/proc/swaps") ?? "").contains(Self.device) {
            _ = try? runCommand("/sbin/swapoff", [Self.device], timeoutMs: 120_000)
        }
        try? write(Self.sysfs + "/reset", "1")
        let swaps = readSmallFile("/proc/swaps") ?? ""
        let size = readSmallFile(Self.sysfs + "/disksize")?.trimmed(" \n") ?? "?"
        if swaps.contains(Self.device) || size != "0" {
            print("warning: \(Self.device) could not be turned off and reset (disksize \(size)); run `swapoff \(Self.device); echo 1 > \(Self.sysfs)/reset`")
        }
    }

    deinit { off() }
}

/// Reads a memcg's `memory.stat` and `memory.oom_control` every 5 ms on its
/// own thread (a `MeasuringThread`, SCHED_FIFO), one pread each on
/// descriptors kept open, and records:
/// - the breach onset: the first sample whose refault count
///   (`total_workingset_refault_anon`) rose since the previous sample at
///   least at `refaultPagesPerSecond` (when that is set);
/// - every change of `oom_kill_disable`, with the sample's time.
/// Its results are written by its thread only and read after `join`; the
/// main thread may watch `knobOffSinceNs` while it runs.
final class ScopeSampler: @unchecked Sendable {
    static let periodNs: UInt64 = 5_000_000

    let refaultPagesPerSecond: Double?
    private let statFD: Int32
    private let controlFD: Int32
    private let stopping = Atomic<Bool>(false)
    /// While running: since when (CLOCK_MONOTONIC ns) oom_kill_disable has
    /// read 0 without a break; 0 while it reads 1 (or before the first sample).
    let knobOffSinceNs = Atomic<UInt64>(0)

    var firstSampleNs: UInt64?
    var onsetNs: UInt64?
    /// Refaults in the onset sample's interval, and the interval, ns.
    var onsetPages: UInt64 = 0
    var onsetIntervalNs: UInt64 = 0
    /// oom_kill_disable after each change, the first sample's value first.
    var knob: [(ns: UInt64, disabled: Bool)] = []
    var samples = 0
    /// Longest gap between two samples.
    var maxGapNs: UInt64 = 0
    var readErrors = 0

    init(memcg: String, refaultPagesPerSecond: Double?) throws {
        self.refaultPagesPerSecond = refaultPagesPerSecond
        statFD = open(memcg + "/memory.stat", O_RDONLY | O_CLOEXEC)
        controlFD = open(memcg + "/memory.oom_control", O_RDONLY | O_CLOEXEC)
        guard statFD >= 0, controlFD >= 0 else {
            if statFD >= 0 { close(statFD) }
            if controlFD >= 0 { close(controlFD) }
            throw BenchError("cannot open \(memcg)/memory.stat or memory.oom_control: errno \(errno)")
        }
    }

    deinit {
        close(statFD)
        close(controlFD)
    }

    func stop() { stopping.store(true, ordering: .sequentiallyConsistent) }

    func run() {
        let refaultKey = Array("total_workingset_refault_anon".utf8), disableKey = Array("oom_kill_disable".utf8)
        var buffer = [UInt8](repeating: 0, count: 16384)
        var previous: (ns: UInt64, refaults: UInt64)?
        var lastSampleNs: UInt64?
        var next = monotonicNanoseconds()
        while !stopping.load(ordering: .sequentiallyConsistent) && !Interrupt.requested {
            let now = monotonicNanoseconds()
            let disabled = Self.read(controlFD, &buffer, disableKey).map { $0 != 0 }
            let refaults = refaultPagesPerSecond == nil ? nil : Self.read(statFD, &buffer, refaultKey)
            if let last = lastSampleNs { maxGapNs = max(maxGapNs, now - last) }
            if firstSampleNs == nil { firstSampleNs = now }
            lastSampleNs = now
            samples += 1
            if let disabled {
                if knob.last?.disabled != disabled {
                    knob.append((now, disabled))
                    knobOffSinceNs.store(disabled ? 0 : now, ordering: .sequentiallyConsistent)
                }
            } else {
                readErrors += 1
            }
            if let rate = refaultPagesPerSecond {
                if let refaults {
                    if let previous {
                        let pages = refaults &- previous.refaults, interval = now - previous.ns
                        if onsetNs == nil, refaults > previous.refaults, Double(pages) * 1e9 >= rate * Double(interval) {
                            (onsetNs, onsetPages, onsetIntervalNs) = (now, pages, interval)
                        }
                    }
                    previous = (now, refaults)
                } else {
                    readErrors += 1
                }
            }
            // A fixed 5 ms grid; a late sample does not shift the next.
            next += Self.periodNs
            let after = monotonicNanoseconds()
            if next <= after { next = after + Self.periodNs }
            var deadline = timespec(tv_sec: Int(next / 1_000_000_000), tv_nsec: Int(next % 1_000_000_000))
            while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, nil) == EINTR {}
        }
    }

    /// The sample that began the run of `oom_kill_disable 0` still going at
    /// the last sample; nil if the knob read 1 last.
    var finalOffNs: UInt64? {
        guard let last = knob.last, !last.disabled else { return nil }
        return last.ns
    }

    /// Times the knob went from 1 to 0.
    var knobDrops: Int {
        zip(knob, knob.dropFirst()).filter { $0.disabled && !$1.disabled }.count
    }

    /// The value after `key` + " " on a line of the file at `fd` (pread at 0).
    static func read(_ fd: Int32, _ buffer: inout [UInt8], _ key: [UInt8]) -> UInt64? {
        let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return nil }
        return buffer.withUnsafeBufferPointer { bytes -> UInt64? in
            var lineStart = 0
            while lineStart + key.count < n {
                var matches = bytes[lineStart + key.count] == 32
                var j = 0
                while matches && j < key.count {
                    if bytes[lineStart + j] != key[j] { matches = false }
                    j += 1
                }
                if matches {
                    var k = lineStart + key.count + 1, value: UInt64 = 0
                    while k < n, bytes[k] >= 48, bytes[k] <= 57 { value = value * 10 + UInt64(bytes[k] - 48); k += 1 }
                    return value
                }
                while lineStart < n && bytes[lineStart] != 10 { lineStart += 1 }
                lineStart += 1
            }
            return nil
        }
    }
}

/// The parts of `mmpolicy status --json` the watchdog benchmark reads.
struct WatchdogStatusView: Decodable {
    struct Cost: Decodable {
        var windowSeconds: Double
        var samples: UInt64
        var cpuNs: UInt64
        var cpuPercent: Double
        var policies: Int
    }
    struct Policy: Decodable {
        struct Watchdog: Decodable {
            struct Window: Decodable { var endNs: UInt64 }
            var windowSeconds: Double
            var latest: Window?
        }
        var name: String
        var watchdog: Watchdog?
    }
    var watchdog: Cost?
    var policies: [Policy]
}

extension DaemonSession {
    func watchdogStatus() throws -> WatchdogStatusView {
        let text = try cli(["status", "--json"])
        do { return try JSONDecoder().decode(WatchdogStatusView.self, from: Data(text.utf8)) } catch {
            throw BenchError("cannot read `mmpolicy status --json`: \(error)")
        }
    }

    /// Every event (of `policy`, if given), oldest first.
    func events(policy: String? = nil) throws -> [EventRecord] {
        let text = try cli(["events", "--json", "--limit", "10000"] + (policy.map { ["--policy", $0] } ?? []))
        do { return try JSONDecoder().decode([EventRecord].self, from: Data(text.utf8)).sorted { $0.timeNs < $1.timeNs } } catch {
            throw BenchError("cannot read `mmpolicy events --json`: \(error)")
        }
    }

    /// Waits until the watchdog has judged `policy` in `windows` windows
    /// (the latest window in `status --json` changed that often).
    func waitForWindows(policy: String, windows: Int, timeoutMs: Int = 15_000) throws {
        let deadline = monotonicNanoseconds() + UInt64(timeoutMs) * 1_000_000
        var seen: [UInt64] = []
        while seen.count < windows {
            try Interrupt.check()
            guard monotonicNanoseconds() < deadline else {
                throw BenchError("the watchdog showed \(seen.count) window(s) of \(policy) in \(timeoutMs / 1000) s, not \(windows); daemon log in \(log)")
            }
            if let end = try watchdogStatus().policies.first(where: { $0.name == policy })?.watchdog?.latest?.endNs, end != seen.last {
                seen.append(end)
            }
            if seen.count < windows { sleepMs(100) }
        }
    }
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, ns: turns the daemon's event times
/// (wall clock) into the samplers' clock.
func wallMinusMonotonicNs() -> Int64 {
    var best: (span: UInt64, offset: Int64) = (.max, 0)
    for _ in 0..<5 {
        let a = monotonicNanoseconds(), wall = wallClockNanoseconds(), b = monotonicNanoseconds()
        if b - a < best.span { best = (b - a, wall - Int64(a / 2 + b / 2)) }
    }
    return best.offset
}
