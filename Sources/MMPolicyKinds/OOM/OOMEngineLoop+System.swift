#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// What woke the system scope in one turn of the loop.
struct SystemWake {
    /// A sensor or the system PSI trigger fired (else only the poll is due).
    var woken = false
    /// The PSI trigger fired: stalls count, thresholds are doubled.
    var pressure = false
    /// For the record: "rss-budget", "kswapd-wake", "direct-reclaim", "psi" or "poll".
    var wokenBy = "poll"
    /// The sensor event's time stamp, when a sensor woke it.
    var eventNs: UInt64?
}

/// System scope: MemAvailable/SwapFree shortage, woken by the in-kernel
/// sensors and PSI, polled adaptively.
extension OOMEngineLoop {
    /// Drains the in-kernel sensors: kernel kills go to observe-mode
    /// matching, reclaim and RSS-budget events wake the system scope (the
    /// first one names the wake).
    func readSensors(now: UInt64) -> SystemWake {
        var wake = SystemWake()
        guard let sensors else { return wake }
        do {
            for event in try sensors.drain() {
                switch event.kind {
                case .markVictim: handleKernelKill(event, now: now)
                case .directReclaim, .kswapdWake, .rssBudget:
                    if !wake.woken {
                        wake.wokenBy = event.kind == .rssBudget ? "rss-budget" : event.kind == .kswapdWake ? "kswapd-wake" : "direct-reclaim"
                        wake.eventNs = event.timeNs
                    }
                    wake.woken = true
                case .memcgReclaim: break
                }
            }
        } catch { environment.log("reading the OOM sensors failed: \(error)") }
        // Lost events mean a kernel kill or a wake-up this engine never saw: say so when it happens.
        let dropped = sensors.droppedEvents()
        if dropped > reportedSensorDrops {
            environment.log("the OOM sensors' ring buffer was full: \(dropped - reportedSensorDrops) event(s) lost (\(dropped) since start); kernel kills or reclaim wake-ups in that time were not seen")
            reportedSensorDrops = dropped
        }
        return wake
    }

    func checkSystem(t0: UInt64, pressure: Bool, wokenBy: String = "poll", eventNs: UInt64? = nil) {
        guard let policy = systemPolicy else { return }
        guard let memory = try? MemInfo.read() else { return }
        // Poll adaptively as earlyoom does: sooner when the headroom would
        // fill in under a second at 6 GiB/s (10 ms at most 60 MiB above the
        // line). The sensors' RSS budget wakes the daemon within ~0.1 ms of
        // the growth that spends it, but memory that is no process's RSS
        // (tmpfs and memfd pages, the kernel's own) also eats the headroom,
        // and only a fresh MemAvailable re-arms the budget to match: the poll
        // bounds the reaction, the sensors make it immediate.
        let threshold = UInt64(Double(memory.memTotal) * policy.trigger.memAvailablePercent / 100)
        let headroom = memory.memAvailable > threshold ? memory.memAvailable - threshold : 0
        let pollNs = Swift.max(10_000_000, Swift.min(1_000_000_000, headroom / 6))
        nextSystemCheckNs = t0 + pollNs
        if let sensors { try? sensors.arm(budgetBytes: SystemShortage.wakeBudget(memory, policy.trigger)) }
        guard t0 >= systemSettleUntilNs, SystemShortage.isShort(memory, policy.trigger, pressure: pressure) else { return }
        decide(policy, origin: nil, scope: .system, trigger: pressure ? .pressure : .lowMemory,
               limit: memory.memTotal + memory.swapTotal,
               usage: (memory.memTotal - memory.memAvailable) + (memory.swapTotal - memory.swapFree), t0: t0,
               wokenBy: wokenBy, eventNs: eventNs)
        systemSettleUntilNs = monotonicNanoseconds() + (policy.mode == .enforce ? 50_000_000 : 1_000_000_000)
        nextSystemCheckNs = Swift.min(nextSystemCheckNs, systemSettleUntilNs)
    }
}
