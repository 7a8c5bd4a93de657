import MMPolicyCore

/// earlyoom's rule for "the system is out of memory": MemAvailable and
/// SwapFree both at or below their thresholds.
public enum SystemShortage {
    /// Whether `memory` is short by `settings`; with `pressure` (a PSI trigger
    /// fired) the thresholds are doubled: stalls plus nearly-short memory count.
    public static func isShort(_ memory: MemInfo, _ settings: OOMTriggerSettings, pressure: Bool = false) -> Bool {
        let factor = pressure ? 2.0 : 1.0
        let swapFree = memory.swapTotal == 0 ? 0 : memory.swapFreePercent
        return memory.availablePercent <= settings.memAvailablePercent * factor
            && swapFree <= settings.swapFreePercent * factor
    }

    /// Bytes of MemAvailable left before the threshold: the RSS budget the
    /// in-kernel sensor is armed with (half of it, so the daemon wakes well
    /// before the line is crossed), never below 4 MiB.
    public static func wakeBudget(_ memory: MemInfo, _ settings: OOMTriggerSettings) -> UInt64 {
        let threshold = UInt64(Double(memory.memTotal) * settings.memAvailablePercent / 100)
        let headroom = memory.memAvailable > threshold ? memory.memAvailable - threshold : 0
        return max(headroom / 2, 4 << 20)
    }
}

/// When a cgroup v2 group is about to run out of memory: the kernel OOM
/// killer cannot be disabled on v2, so the daemon acts before memory.max.
public enum MemcgV2EarlyTrigger {
    /// Whether to ask the policy now.
    ///
    /// `unreclaimable` is what reclaim cannot take back without swap (anon +
    /// shmem from memory.stat): memory.current itself sits at memory.max
    /// whenever page cache fills the group, which is healthy. `max == nil`
    /// means no limit (never early). An `oom` or `oom_kill` count that went up
    /// since `previous` means the kernel got there first; that is reported
    /// too, so the policy's view is recorded.
    public static func shouldAct(unreclaimable: UInt64, max: UInt64?, events: MemcgV2.MemoryEvents, previous: MemcgV2.MemoryEvents?,
                                 headroomPercent: Double, pressure: Bool) -> Bool {
        if let previous, events.oom > previous.oom || events.oomKill > previous.oomKill { return true }
        guard let max, max > 0 else { return false }
        if Double(unreclaimable) >= Double(max) * (1 - headroomPercent / 100) { return true }
        // A PSI stall counts if usage is within twice the headroom.
        return pressure && Double(unreclaimable) >= Double(max) * (1 - 2 * headroomPercent / 100)
    }
}
