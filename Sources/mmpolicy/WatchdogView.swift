import BPFKit
import MMPolicyCore
import MMPolicyDaemon
import MMPolicyWatchdog

/// How `mmpolicy status` and `status --watch` print the watchdog's view:
/// one row per window with the figures the guards judge.
enum WatchdogView {
    /// The columns, each a guard's figure.
    static let metrics: [(header: String, metric: GuardMetric)] = [
        ("REFAULT RATIO", .refaultRatio), ("REFAULTS/S/GIB", .refaultRatePerGiB), ("SCAN EFF", .scanEfficiency),
        ("PSI SOME", .psiSomeAvg10), ("ACTIONS/MIN", .actionsPerMinute), ("REJECT/MIN", .rejectionsPerMinute),
        ("ERRORS/MIN", .decisionErrorsPerMinute), ("FALLBACKS", .consecutiveFallbacks), ("CALLBACK US", .callbackMicroseconds),
        ("BPF NS/RUN", .bpfNsPerRun),
    ]

    static func cells(_ window: SignalWindow) -> [String] {
        metrics.map { column in column.metric.value(in: window).map(column.metric.format) ?? "-" }
    }

    /// Guards with a run of breaches going: "max_kills_per_minute 2/3".
    static func breaching(_ status: WatchdogPolicyStatus) -> String {
        let running = status.guards.filter { $0.consecutiveBreaches > 0 }
        return running.isEmpty ? "-" : running.map { "\($0.rule.name) \($0.consecutiveBreaches)/\(status.breachWindows)" }.joined(separator: ", ")
    }

    /// One row per loaded policy: its latest window.
    static func latestTable(_ policies: [PolicyStatus]) -> String {
        table(["NAME"] + metrics.map(\.header) + ["BREACHING"], policies.map { p in
            guard let status = p.watchdog, let latest = status.latest else {
                return [p.name] + metrics.map { _ in "-" } + ["(first window pending)"]
            }
            return [p.name] + cells(latest) + [breaching(status)]
        })
    }

    /// One row per recent window of `policy`, oldest first, timed from now.
    static func historyTable(_ policy: PolicyStatus, nowNs: UInt64) -> String {
        let windows = policy.watchdog?.history ?? []
        guard !windows.isEmpty else { return "    (no window yet)" }
        return table(["AGO"] + metrics.map(\.header), windows.map { window in
            let ago = nowNs > window.endNs ? Double(nowNs - window.endNs) / 1e9 : 0
            return ["\(decimalString(ago, places: 1))s"] + cells(window)
        }, indent: "    ")
    }

    static func exitLine(_ exit: EventRecord) -> String {
        "\(exit.policy ?? "?") ejected \(formatTime(exit.timeNs)): \(exit.summary)"
    }
}
