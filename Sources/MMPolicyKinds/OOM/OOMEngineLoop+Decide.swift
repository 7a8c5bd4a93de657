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
        var record = DecisionRecord(trigger: trigger.name, scope: policy.scope.description, origin: origin ?? "system",
                                    outcome: .fallback)
        record.wokenBy = wokenBy
        record.latency.wakeUs = eventNs.map { t0 > $0 ? Double(t0 - $0) / 1000 : 0 }
        let request = OOMRequest(trigger: trigger, scope: scope, limitBytes: limit, usageBytes: usage,
                                 shortfallBytes: usage > limit ? usage - limit : 0, daemonPID: environment.daemonPID)
        let callStart = monotonicNanoseconds()
        let answer = Result { () throws(BPFError) in try policy.selector.selectVictim(request) }
        let decided = monotonicNanoseconds()
        if case .success(let decision) = answer {
            record.latency.decisionUs = Double(decided - t0) / 1000
            record.latency.callbackUs = Double(decided - callStart) / 1000
            record.candidates = decision.candidates
        }
        let verdict = OOMVerdict.judge(answer, elapsedNs: decided - t0, deadlineNs: policy.deadlineNs, mode: policy.mode) {
            validate($0, policy, origin: origin)
        }
        if verdict.named, case .success(let decision) = answer {
            record.score = decision.score
            record.reason = decision.reason.name
            record.victimPID = decision.victimCgroupID == nil ? decision.victimPID : nil
        }
        carryOut(verdict, policy, origin: origin, record: record, t0: t0)
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
    func carryOut(_ verdict: OOMVerdict, _ policy: OOMPolicyInstance, origin: String?, record: DecisionRecord, t0: UInt64) {
        var record = record
        let counted: OOMDecisionOutcome
        switch verdict {
        case .fallBack(let outcome, let detail):
            record.outcome = outcome == .rejection ? .rejected : .fallback
            record.detail = detail
            counted = outcome
        case .observe(let victims):
            describe(victims, in: &record)
            record.outcome = .observed
            counted = .observed
        case .kill(let victims):
            describe(victims, in: &record)
            let result = OOMKiller.kill(victims.processes)
            record.latency.killUs = Double(result.killedNs - t0) / 1000
            record.latency.releasedUs = result.releasedNs.map { Double($0 - t0) / 1000 }
            record.detail = result.problems.joined(separator: "; ")
            record.outcome = result.killed.isEmpty ? .fallback : .enforced
            counted = result.killed.isEmpty ? .killFailed : .enforced(kills: result.killed.count)
        }
        count(policy, counted)

        switch counted {
        case .observed:
            observed(record, policy, origin: origin, t0: t0)
        case .enforced:
            if let origin, case .v1 = domain(of: policy) {
                awaitingClear.append(PendingDecision(policy: policy.name, origin: origin, record: record, t0: t0,
                                                     deadlineNs: t0 + Self.clearTimeoutNs))
            } else {
                emit(record, policy: policy.name)
            }
        case .error, .deadlineMiss, .noDecision, .rejection, .killFailed:
            fallBack(policy, origin: origin, record: record)
        }
    }

    /// The victims' names and sizes, for the record.
    func describe(_ victims: OOMVictims, in record: inout DecisionRecord) {
        if let cgroup = victims.cgroup { record.victimCgroup = cgroup }
        record.victimComm = victims.processes.count == 1 ? victims.processes[0].process.comm : "\(victims.processes.count) processes"
        record.victimRSSBytes = victims.processes.reduce(0) { $0 + $1.process.rssBytes }
    }

    func count(_ policy: OOMPolicyInstance, _ outcome: OOMDecisionOutcome) {
        engine.counters.withLock { counters in
            guard var entry = counters[policy.name] else { return }
            outcome.apply(to: &entry)
            counters[policy.name] = entry
        }
    }

    func fallBack(_ policy: OOMPolicyInstance, origin: String?, record: DecisionRecord) {
        // v1 scopes run with the kernel killer disabled in both modes: the
        // OOM goes back to the kernel until it clears.
        if let origin, case .v1 = domain(of: policy) { handToKernel(origin, now: monotonicNanoseconds()) }
        emit(record, policy: policy.name)
    }

    // MARK: records

    func emit(_ record: DecisionRecord, policy: String) {
        environment.record(EventRecord(timeNs: wallClockNanoseconds(), type: .decision, policy: policy,
                                       summary: Self.summary(record, policy: policy), decision: record))
    }

    static func summary(_ r: DecisionRecord, policy: String) -> String {
        let victim = r.victimCgroup.map { "cgroup \($0)" } ?? r.victimPID.map { "pid \($0) (\(r.victimComm ?? "?"))" } ?? "no victim"
        let steps = [("decided", r.latency.decisionUs), ("SIGKILL", r.latency.killUs), ("released", r.latency.releasedUs), ("cleared", r.latency.clearedUs)]
            .compactMap { name, us in us.map { "\(name) \(decimalString($0 / 1000, places: 2)) ms" } }.joined(separator: ", ")
        let detail = r.detail.isEmpty ? "" : ": \(r.detail)"
        switch r.outcome {
        case .enforced: return "\(r.trigger) in \(r.origin): killed \(victim), \(r.reason ?? "") score \(r.score ?? 0) of \(r.candidates) candidates; \(steps)\(detail)"
        case .observed:
            let kernel = r.kernelVictimPID.map { $0 == r.victimPID ? "; the kernel chose the same" : "; the kernel chose pid \($0)" } ?? ""
            return "\(r.trigger) in \(r.origin): would kill \(victim) (observe)\(kernel)"
        case .rejected: return "\(r.trigger) in \(r.origin): rejected \(victim)\(detail); handed to the kernel"
        case .fallback: return "\(r.trigger) in \(r.origin): fell back to the kernel\(detail)"
        }
    }

    static func ms(_ ns: UInt64) -> String { decimalString(Double(ns) / 1e6, places: 2) + " ms" }
}
