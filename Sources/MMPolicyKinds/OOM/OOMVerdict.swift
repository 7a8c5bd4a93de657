import BPFKit
import CMMPolicyABI
import MMPolicyCore

/// Who a validated OOM decision would kill: one process, or every process
/// of a cgroup the policy named.
struct OOMVictims {
    var processes: [ValidatedVictim]
    /// The cgroup's path when the policy asked to kill a whole group.
    var cgroup: String?
}

/// What one OOM decision comes to, before anything is carried out.
///
/// It exists so that the judging is a pure function of what the policy's
/// callback answered, how long it took against its deadline, and what the
/// validator said (``judge(_:elapsedNs:deadlineNs:mode:validate:)``), and so
/// that the engine counts, records and acts on every outcome in one place.
enum OOMVerdict {
    /// Enforce mode: kill these victims.
    case kill(OOMVictims)
    /// Observe mode: record these victims, and let the kernel decide.
    case observe(OOMVictims)
    /// The kernel decides. `counted` is what the decision counters count
    /// (`.rejection` is a strike and records as rejected; anything else
    /// records as a fallback); `detail` says why.
    case fallBack(counted: OOMDecisionOutcome, detail: String)

    /// Judges the callback's `answer`: it must have run, returned
    /// MMPOLICY_DECIDED or MMPOLICY_NO_DECISION within `deadlineNs`
    /// (`elapsedNs` is from the trigger to the answer) and, when it decided,
    /// named victims `validate` accepts (called only then).
    static func judge(_ answer: Result<OOMDecision, BPFError>, elapsedNs: UInt64, deadlineNs: UInt64, mode: PolicyMode,
                      validate: (OOMDecision) -> Result<OOMVictims, OOMRejection>) -> OOMVerdict {
        let decision: OOMDecision
        switch answer {
        case .failure(let error):
            return .fallBack(counted: .error, detail: "select_victim failed: \(error)")
        case .success(let answered):
            decision = answered
        }
        guard elapsedNs <= deadlineNs else {
            return .fallBack(counted: .deadlineMiss,
                             detail: "select_victim missed its deadline: \(OOMEngineLoop.ms(elapsedNs)) > \(OOMEngineLoop.ms(deadlineNs))")
        }
        guard decision.decided || decision.status == UInt32(MMPOLICY_NO_DECISION.rawValue) else {
            return .fallBack(counted: .error,
                             detail: "select_victim failed: it returned \(Int32(bitPattern: decision.status)) (neither MMPOLICY_DECIDED nor MMPOLICY_NO_DECISION)")
        }
        guard decision.decided else {
            return .fallBack(counted: .noDecision,
                             detail: "the policy made no decision (status \(decision.status), \(decision.candidates) candidates)")
        }
        switch validate(decision) {
        case .failure(let rejection): return .fallBack(counted: .rejection, detail: rejection.reason)
        case .success(let victims): return mode == .observe ? .observe(victims) : .kill(victims)
        }
    }

    /// Whether the policy's answer got as far as naming a victim (a kill,
    /// an observation or a rejection): its score, reason and pid belong in
    /// the record then.
    var named: Bool {
        switch self {
        case .kill, .observe: return true
        case .fallBack(let counted, _): return counted == .rejection
        }
    }
}
