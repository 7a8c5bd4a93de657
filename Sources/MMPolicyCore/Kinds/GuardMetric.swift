/// The figure of a watchdog window a guard watches, by name.
///
/// The identity lives in Core so that the guard table (``GuardTable``) and
/// each kind's own guards (``PolicyKindDefinition/guards``) can name the
/// figure they judge without depending on the watchdog; how a figure is read
/// from a window is the watchdog's (`GuardMetric.value(in:)` in
/// MMPolicyWatchdog). The raw value is the name trips and status output use.
public enum GuardMetric: String, Sendable, Equatable, Codable, CaseIterable {
    /// Refaulted pages / evicted pages. Activity: evicted pages per second
    /// (system scope: evictions not caused by memcg limits).
    case refaultRatio = "refault_ratio"
    /// Refaulted pages per second per GiB of the scope's memory. Activity:
    /// as refaultRatio; on cgroup v1, which counts no evictions, refaulted
    /// pages per second.
    case refaultRatePerGiB = "refault_rate_per_gib"
    /// Pages reclaim stole / pages it scanned (system scope: global reclaim).
    /// Activity: scanned pages per second.
    case scanEfficiency = "scan_efficiency"
    /// PSI memory `some` avg10, percent.
    case psiSomeAvg10 = "psi_some_avg10"
    /// Mean run time of the policy's BPF programs, ns. Activity: runs per second.
    case bpfNsPerRun = "bpf_ns_per_run"
    /// The policy's BPF run time as a share of one CPU, percent.
    case bpfCPUPercent = "bpf_cpu_percent"
    /// Mean run time of the policy's callbacks over the last minute, µs.
    /// Activity: callback runs in the last minute.
    case callbackMicroseconds = "callback_us"
    /// Memory charged for the policy's maps, KiB.
    case mapMemoryKB = "map_memory_kb"
    /// Actions the policy's decisions carried out in the last 60 s (for
    /// oom: kills).
    case actionsPerMinute = "actions_per_minute"
    /// The current run of decisions handed back to the kernel's default.
    case consecutiveFallbacks = "consecutive_fallbacks"
    case rejectionsPerMinute = "rejections_per_minute"
    case decisionErrorsPerMinute = "decision_errors_per_minute"
    case deadlineMissesPerMinute = "deadline_misses_per_minute"

    /// What the activity a rule's floor is compared with counts, for
    /// documentation; nil for figures that need no floor.
    public var activityUnit: String? {
        switch self {
        case .refaultRatio: return "evicted pages/s"
        case .refaultRatePerGiB: return "evicted (v1: refaulted) pages/s"
        case .scanEfficiency: return "scanned pages/s"
        case .bpfNsPerRun: return "runs/s"
        case .callbackMicroseconds: return "callback runs in 60 s"
        default: return nil
        }
    }
}
