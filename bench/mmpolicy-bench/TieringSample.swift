// One reading, every second of a tiering run: where the workloads' memory
// is, what zram holds for it, and what it cost (CPU, refaults); the hot
// loops' reports are collected along the way.
import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// Everything the tiering benchmark reads at one instant of a contender run.
///
/// Exists so that every figure of the report is computed from the same
/// readings, taken the same way for every contender: a figure's change over
/// the run is the difference of two samples, and "time to 90 %" is a walk
/// over them.
struct TierSample {
    /// CLOCK_MONOTONIC ns of the reading, and seconds since the contender was applied.
    var ns: UInt64
    var seconds: Double
    /// Every process's part, summed (pagemap).
    var parts: [TierPart: PageResidency]
    /// Sums of the processes' /proc/PID/status.
    var swapBytes: UInt64
    var rssAnonBytes: UInt64
    var rssFileBytes: UInt64
    /// The run's own zram device.
    var zram: ZramStats
    var memcgUsageBytes: UInt64
    /// The memcg's memory.stat: total_swap (swap charged to it, swap-cache
    /// copies of pages back in RAM included), total_workingset_refault_anon,
    /// total_pgmajfault.
    var memcgSwapBytes: UInt64
    var refaultsAnon: UInt64
    var majorFaults: UInt64
    /// The workloads' CPU, all threads of all of them.
    var workloadCPU: ProcessCPU
    /// The daemon's CPU (policy contenders only), ticks.
    var daemonTicks: UInt64?
    var kswapdTicks: UInt64
    /// Swap areas other than the run's own that hold something: while any
    /// does, pages may land there instead (swap is global).
    var otherSwapInUse: [String]

    /// What moving memory out saved: what left the processes' RAM for
    /// swap (VmSwap), minus what zram takes to hold it (mem_used_total,
    /// allocator overhead included). Should pages of processes outside the
    /// run land on the run's device (swap is global), zram's RAM is counted
    /// in the share of its stored bytes that the memcg's swap accounts for.
    var savedBytes: Int64 { Int64(swapBytes) - Int64(zramBytesForUs) }

    /// zram's RAM, scaled down to the run's share of what it stores.
    var zramBytesForUs: UInt64 {
        guard zram.storedBytes > memcgSwapBytes + Self.foreignSlack, zram.storedBytes > 0 else { return zram.usedBytes }
        return UInt64(Double(zram.usedBytes) * Double(memcgSwapBytes) / Double(zram.storedBytes))
    }

    /// Bytes zram stores beyond the memcg's swap: other processes' pages on
    /// the run's device (0 when none).
    var foreignBytes: UInt64 { zram.storedBytes > memcgSwapBytes + Self.foreignSlack ? zram.storedBytes - memcgSwapBytes : 0 }

    /// The memcg's swap beyond what the run's device stores: its pages on
    /// another swap area (0 when none).
    var elsewhereBytes: UInt64 { memcgSwapBytes > zram.storedBytes + Self.foreignSlack ? memcgSwapBytes - zram.storedBytes : 0 }

    /// Counter skew tolerated between zram and the memcg (per-CPU batches, the swap header).
    static let foreignSlack: UInt64 = 1 << 20

    /// Bytes of `part` in swap, all processes.
    func swappedBytes(_ part: TierPart) -> UInt64 { UInt64(parts[part]?.swappedPages ?? 0) * UInt64(ProcessSnapshot.pageSize) }

    /// Share of `part` in swap, 0...1.
    func swappedShare(_ part: TierPart) -> Double {
        guard let residency = parts[part] else { return .nan }
        let total = residency.residentPages + residency.swappedPages + residency.absentPages
        return total == 0 ? .nan : Double(residency.swappedPages) / Double(total)
    }

    /// Resident bytes of every part together.
    var residentPartBytes: UInt64 {
        parts.values.reduce(0) { $0 + UInt64($1.residentPages) } * UInt64(ProcessSnapshot.pageSize)
    }

    /// Reads everything once.
    static func take(since startNs: UInt64, workloads: [TierWorkload], memcg: TierMemcg, zram: OwnedZramSwap,
                     daemon: pid_t?, kswapd: [pid_t]) throws -> TierSample {
        let now = monotonicNanoseconds()
        var parts: [TierPart: PageResidency] = [:]
        var swap: UInt64 = 0, anon: UInt64 = 0, file: UInt64 = 0
        var cpu = ProcessCPU(userTicks: 0, systemTicks: 0)
        for workload in workloads {
            try workload.checkAlive()
            workload.poll()
            for (part, residency) in try workload.residency() {
                var sum = parts[part] ?? PageResidency()
                sum.residentPages += residency.residentPages
                sum.swappedPages += residency.swappedPages
                sum.absentPages += residency.absentPages
                parts[part] = sum
            }
            let status = try ProcessMemoryStatus.read(pid: workload.pid)
            swap += status.swapBytes
            anon += status.rssAnonBytes
            file += status.rssFileBytes
            if let used = ProcessCPU.read(pid: workload.pid) {
                cpu.userTicks += used.userTicks
                cpu.systemTicks += used.systemTicks
            }
        }
        let stat = memcg.stat()
        let others = ((try? SwapDevices.read()) ?? []).filter { $0.path != zram.device && $0.usedBytes > 0 }
            .map { "\($0.path) (\($0.usedBytes >> 20) MiB used)" }
        return TierSample(
            ns: now, seconds: Double(Int64(now) - Int64(startNs)) / 1e9, parts: parts, swapBytes: swap, rssAnonBytes: anon,
            rssFileBytes: file, zram: try zram.stats(), memcgUsageBytes: (try? memcg.usageBytes()) ?? 0,
            memcgSwapBytes: stat["total_swap"] ?? 0, refaultsAnon: stat["total_workingset_refault_anon"] ?? 0,
            majorFaults: stat["total_pgmajfault"] ?? 0, workloadCPU: cpu,
            daemonTicks: daemon.flatMap { ProcessCPU.read(pid: $0)?.totalTicks }, kswapdTicks: KswapdThreads.ticks(kswapd),
            otherSwapInUse: others)
    }
}
