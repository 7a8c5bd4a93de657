import MMPolicyCore

/// The oom kind's part of a decision record: who the policy considered,
/// whom it chose and why, and whom the kernel's own killer chose.
///
/// Version 1 is the layout the v3 store migration writes for decisions
/// recorded before the envelope existed; change a field and bump `version`.
public struct OOMDecisionPayload: DecisionPayloadBody {
    public static let version = 1

    /// Tasks the policy considered.
    public var candidates: Int
    public var victimPID: Int32?
    public var victimComm: String?
    /// The victim cgroup's path when the policy asked to kill a whole group.
    public var victimCgroup: String?
    /// The victim's score, in the policy's own unit.
    public var score: Int64?
    /// Why the policy chose it (`enum mmpolicy_oom_reason`'s name).
    public var reason: String?
    /// Resident memory of the victim(s) just before the kill, bytes.
    public var victimRSSBytes: UInt64?
    /// Observe mode: the pid the kernel's killer chose for this OOM, if seen.
    public var kernelVictimPID: Int32?

    public init(candidates: Int = 0, victimPID: Int32? = nil, victimComm: String? = nil, victimCgroup: String? = nil,
                score: Int64? = nil, reason: String? = nil, victimRSSBytes: UInt64? = nil, kernelVictimPID: Int32? = nil) {
        self.candidates = candidates
        self.victimPID = victimPID
        self.victimComm = victimComm
        self.victimCgroup = victimCgroup
        self.score = score
        self.reason = reason
        self.victimRSSBytes = victimRSSBytes
        self.kernelVictimPID = kernelVictimPID
    }

    /// "pid 4242 (worker)", "cgroup /sys/fs/cgroup/a" or "no victim".
    public var victimDescription: String {
        victimCgroup.map { "cgroup \($0)" } ?? victimPID.map { "pid \($0) (\(victimComm ?? "?"))" } ?? "no victim"
    }
}

/// The step names the oom kind's records time, from the trigger seen.
public enum OOMStep {
    public static let kill = "SIGKILL"
    public static let released = "released"
    public static let cleared = "cleared"
    /// The guardian gave the OOM to the kernel killer (the daemon had not resolved it).
    public static let handedOver = "handed to the kernel"
}

extension DecisionRecord {
    /// The record's oom payload, if it is an oom decision of a version this build reads.
    public var oom: OOMDecisionPayload? { payload.decode(OOMDecisionPayload.self) }
}
