#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// Deciding: ask the governing policy, judge its answer (``OOMVerdict``),
/// then count, record and carry out the verdict in one place.
extension OOMEngineLoop {
    /// Asks `policy` for a victim for an OOM in `origin` (nil = system),
    /// validates, and kills or falls back; records the outcome.
    func decide(_ policy: OOMPolicyInstance, origin: String?, scope: ResolvedScope, trigger: OOMTrigger,
                limit: UInt64, usage: UInt64, t0: UInt64, wokenBy: String? = nil, eventNs: UInt64? = nil) {
        var record = OOMRecord(
            envelope: DecisionRecord(kind: .oom, trigger: trigger.name, scope: policy.scope.description, origin: origin ?? "system",
                                     mode: policy.mode, outcome: .fellBack, wokenBy: wokenBy),
            payload: OOMDecisionPayload(), triggerNs: t0)
        record.envelope.timing.wakeUs = eventNs.map { t0 > $0 ? Double(t0 - $0) / 1000 : 0 }
        let request = OOMRequest(trigger: trigger, scope: scope, limitBytes: limit, usageBytes: usage,
                                 shortfallBytes: usage > limit ? usage - limit : 0, daemonPID: environment.daemonPID)
        let callStart = monotonicNanoseconds()
        let answer = Result { () throws(BPFError) in try policy.selector.selectVictim(request) }
        let decided = monotonicNanoseconds()
        if case .success(let decision) = answer {
            record.envelope.timing.decidedUs = Double(decided - t0) / 1000
            record.envelope.timing.callbackUs = Double(decided - callStart) / 1000
            record.payload.candidates = decision.candidates
        }
        let verdict = OOMVerdict.judge(answer, elapsedNs: decided - t0, deadlineNs: policy.deadlineNs, mode: policy.mode) {
            validate($0, policy, origin: origin)
        }
        if verdict.named, case .success(let decision) = answer {
            record.payload.score = decision.score
            record.payload.reason = decision.reason.name
            record.payload.victimPID = decision.victimCgroupID == nil ? decision.victimPID : nil
        }
        carryOut(verdict, policy, origin: origin, record: record, t0: t0, usage: usage)
    }

    /// The validator's view of `decision`: a whole group (within `origin`,
    /// else the memory controller's root) or one process (within `origin`).
    func validate(_ decision: OOMDecision, _ policy: OOMPolicyInstance, origin: String?) -> Result<OOMVictims, OOMRejection> {
        if let groupID = decision.victimCgroupID {
            let within = origin ?? environment.mount?.path
            return policy.validator.validateGroup(id: groupID, within: within ?? "/").map { OOMVictims(processes: $0.victims, cgroup: $0.path) }
        }
        return policy.validator.validate(pid: decision.victimPID, within: origin).map { OOMVictims(processes: [$0], cgroup: nil) }
    }

    /// The one place a verdict is carried out, counted and recorded. A kill
    /// comes first (before the counters' lock); a kill that reached nobody
    /// falls back like any other fallback.
    func carryOut(_ verdict: OOMVerdict, _ policy: OOMPolicyInstance, origin: String?, record: OOMRecord, t0: UInt64,
                  usage: UInt64) {
        var record = record
        let counted: OOMDecisionOutcome
        var killed: [PidFD] = []
        switch verdict {
        case .fallBack(let outcome, let detail):
            record.detail = detail
            counted = outcome
        case .observe(let victims):
            describe(victims, in: &record.payload)
            counted = .observed
        case .kill(let victims):
            describe(victims, in: &record.payload)
            let result = OOMKiller.kill(victims.processes)
            record.envelope.timing.set(OOMStep.kill, Double(result.killedNs - t0) / 1000)
            record.envelope.timing.set(OOMStep.released, result.releasedNs.map { Double($0 - t0) / 1000 })
            record.detail = result.problems.joined(separator: "; ")
            counted = result.killed.isEmpty ? .killFailed : .enforced(kills: result.killed.count)
            killed = victims.processes.filter { result.killed.contains($0.process.pid) }.map(\.pidfd)
        }
        record.envelope.outcome = counted.outcome
        engine.health.count(counted.health, for: policy.name)

        switch counted {
        case .observed:
            observed(record, policy, origin: origin, t0: t0)
        case .enforced:
            if let origin, case .v1 = domain(of: policy) {
                awaitingClear.append(PendingDecision(policy: policy.name, origin: origin, record: record, t0: t0,
                                                     deadlineNs: t0 + Self.clearTimeoutNs, victims: killed,
                                                     usageAtKill: usage, victimBytes: record.payload.victimRSSBytes ?? 0))
            } else {
                emit(record, policy: policy.name)
            }
        case .error, .deadlineMiss, .noDecision, .rejection, .killFailed:
            fallBack(policy, origin: origin, record: record)
        }
    }

    /// The victims' names and sizes, for the record.
    func describe(_ victims: OOMVictims, in payload: inout OOMDecisionPayload) {
        if let cgroup = victims.cgroup { payload.victimCgroup = cgroup }
        payload.victimComm = victims.processes.count == 1 ? victims.processes[0].process.comm : "\(victims.processes.count) processes"
        payload.victimRSSBytes = victims.processes.reduce(0) { $0 + $1.process.rssBytes }
    }

    func fallBack(_ policy: OOMPolicyInstance, origin: String?, record: OOMRecord) {
        var record = record
        // v1 scopes run with the kernel killer disabled in both modes: the
        // OOM goes back to the kernel until it clears.
        if let origin, case .v1 = domain(of: policy) { handToKernel(origin, now: monotonicNanoseconds()) }
        // Once the kernel has the OOM: what the policy said about its failure.
        if record.envelope.outcome == .error { record.envelope.policyError = policy.takeErrorReport() }
        emit(record, policy: policy.name)
    }

    // MARK: records

    /// Records `record`: the last step of a decision, after anything it did.
    func emit(_ record: OOMRecord, policy: String) {
        var record = record
        stampOnset(&record)
        environment.record(EventRecord(timeNs: wallClockNanoseconds(), type: .decision, policy: policy,
                                       summary: OOMDecisionText.summary(record.envelope, record.payload), decision: record.record))
    }

    static func ms(_ ns: UInt64) -> String { decimalString(Double(ns) / 1e6, places: 2) + " ms" }
}
