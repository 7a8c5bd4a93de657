#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// Kernel kills (the sensors' `oom:mark_victim`) and observe mode: an
/// observed decision is recorded side by side with the kernel's own victim
/// for the same OOM, whichever comes first.
extension OOMEngineLoop {
    static let observeMatchWindowNs: UInt64 = 2_000_000_000

    /// An observe-mode decision: the OOM goes to the kernel (v1), and the
    /// record waits for the kernel's victim unless it was seen already.
    func observed(_ record: OOMRecord, _ policy: OOMPolicyInstance, origin: String?, t0: UInt64) {
        let now = monotonicNanoseconds()
        var pending = PendingDecision(policy: policy.name, origin: origin, record: record, t0: t0,
                                      deadlineNs: now + (origin == nil ? 10 : 2) * 1_000_000_000)
        if let origin { handToKernel(origin, now: now) }
        if let seen = recentKernelVictims.first(where: { $0.timeNs + Self.observeMatchWindowNs >= t0 && Self.contains(origin, $0.path) }) {
            pending.record.sawKernelVictim(seen.pid)
            emit(pending.record, policy: policy.name)
        } else {
            pendingObserved.append(pending)
        }
    }

    func handleKernelKill(_ event: SensorEvent, now: UInt64) {
        let path = environment.mount.flatMap { CgroupTree.directory(withID: event.cgroupID, under: $0.path) }
        // A kill in a governed memcg belongs to its policy; anything else to
        // no policy (the system-scope policy decides system-wide shortages,
        // not other memcgs' OOMs).
        let governing = path.flatMap { governor(of: $0, version: environment.mount?.version ?? .v1) }
        let comm = event.comm
        // Kills outside every governed scope only with --record-ungoverned-kills.
        if environment.shouldRecord(governedBy: governing?.name) {
            environment.record(EventRecord(
                timeNs: wallClockNanoseconds(), type: .kernelKill, policy: governing?.name,
                summary: "the kernel OOM killer chose pid \(event.pid) (\(comm)) in \(path ?? "cgroup id \(event.cgroupID)"), \(event.value >> 20) MiB resident"))
        }
        if let governing, governing.mode == .enforce {
            engine.health.addActions(1, for: governing.name)
        }
        recentKernelVictims.append((now, event.pid, path))
        recentKernelVictims.removeAll { $0.timeNs + Self.observeMatchWindowNs < now }
        if let index = pendingObserved.firstIndex(where: { Self.contains($0.origin, path) }) {
            var pending = pendingObserved.remove(at: index)
            pending.record.sawKernelVictim(event.pid)
            emit(pending.record, policy: pending.policy)
        }
    }

    func servicePendingObserved(now: UInt64) {
        let expired = pendingObserved.filter { $0.deadlineNs <= now }
        pendingObserved.removeAll { $0.deadlineNs <= now }
        for pending in expired { emit(pending.record, policy: pending.policy) }
    }

    /// Whether an OOM in `origin` (nil = system) covers memcg `path`.
    static func contains(_ origin: String?, _ path: String?) -> Bool {
        guard let origin else { return true }
        guard let path else { return false }
        return CgroupTree.isWithin(path, origin)
    }
}
