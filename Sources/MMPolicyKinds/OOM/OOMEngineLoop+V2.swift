#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// A cgroup v2 scope's decision point.
final class MemcgV2Watch {
    let path: String
    let events: FileModificationWatch?
    let psi: PSITrigger?
    var previous: MemcgV2.MemoryEvents?
    var settleUntilNs: UInt64 = 0
    var nextCheckNs: UInt64 = 0
    var steeredPID: Int32?
    /// The pid a journal-then-write of oom_score_adj is on its way for.
    var steerInFlight: Int32?

    init(path: String, events: FileModificationWatch?, psi: PSITrigger?) {
        self.path = path
        self.events = events
        self.psi = psi
        self.previous = try? MemcgV2(path: path).events()
    }
}

/// cgroup v2: the kernel killer cannot be disabled, so the engine watches
/// memory.events and memory.pressure, acts before memory.max (early
/// trigger), and steers oom_score_adj so a kernel kill hits the policy's choice.
extension OOMEngineLoop {
    func checkV2(_ watch: MemcgV2Watch, _ policy: OOMPolicyInstance, t0: UInt64, pressure: Bool, wokenBy: String = "poll") {
        watch.nextCheckNs = t0 + 1_000_000_000
        let memcg = MemcgV2(path: watch.path)
        guard let events = try? memcg.events() else { return }
        defer { watch.previous = events }
        let max = try? memcg.max()
        let unreclaimable = Self.unreclaimableBytes(of: watch.path)
        let act = MemcgV2EarlyTrigger.shouldAct(unreclaimable: unreclaimable, max: max ?? nil, events: events, previous: watch.previous,
                                               headroomPercent: policy.trigger.memcgHeadroomPercent, pressure: pressure)
        if act && t0 >= watch.settleUntilNs {
            let kernelWasFirst = watch.previous.map { events.oom > $0.oom || events.oomKill > $0.oomKill } ?? false
            decide(policy, origin: watch.path, scope: policy.scope, trigger: kernelWasFirst ? .memcgOOM : .pressure,
                   limit: (max ?? nil) ?? 0, usage: (try? memcg.current()) ?? 0, t0: t0, wokenBy: wokenBy)
            watch.settleUntilNs = monotonicNanoseconds() + (policy.mode == .enforce ? 100_000_000 : 1_000_000_000)
        } else if policy.trigger.steerOOMScoreAdj && policy.mode == .enforce {
            steer(watch, policy)
        }
    }

    /// anon + shmem from memory.stat: what reclaim cannot drop without swap.
    static func unreclaimableBytes(of path: String) -> UInt64 {
        guard let text = try? String(contentsOfProcFile: path + "/memory.stat") else { return 0 }
        var total: UInt64 = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, parts[0] == "anon" || parts[0] == "shmem", let value = UInt64(parts[1]) else { continue }
            total += value
        }
        return total
    }

    /// Keeps oom_score_adj 1000 on the policy's current choice, so that if
    /// the kernel's killer gets there first it kills the same process.
    /// The write goes through the journal worker; the pid counts as steered
    /// once it answers.
    func steer(_ watch: MemcgV2Watch, _ policy: OOMPolicyInstance) {
        guard watch.steerInFlight == nil else { return }
        let request = OOMRequest(trigger: .test, scope: policy.scope, limitBytes: 0, daemonPID: environment.daemonPID)
        guard let decision = try? policy.selector.selectVictim(request), decision.decided, decision.victimCgroupID == nil,
              decision.victimPID != watch.steeredPID,
              case .success = policy.validator.validate(pid: decision.victimPID, within: watch.path) else { return }
        if let previous = watch.steeredPID {
            for failure in restoreKnobs(["/proc/\(previous)/oom_score_adj"]) { environment.log("restoring oom_score_adj failed: \(failure)") }
            watch.steeredPID = nil
        }
        watch.steerInFlight = decision.victimPID
        requestKnobWrite("1000", to: "/proc/\(decision.victimPID)/oom_score_adj", owner: policy.name,
                         tag: .steer(policy: policy.name, pid: decision.victimPID))
    }
}
