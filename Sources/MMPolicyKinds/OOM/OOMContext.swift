#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import CMMPolicyABI
import MMPolicyCore

/// Why an OOM decision is being asked for (`enum mmpolicy_oom_trigger`).
public enum OOMTrigger: UInt32, Sendable, CaseIterable {
    case test = 0, memcgOOM = 1, pressure = 2, lowMemory = 3

    /// The name events and the CLI use.
    public var name: String {
        switch self {
        case .test: return "test"
        case .memcgOOM: return "memcg-oom"
        case .pressure: return "pressure"
        case .lowMemory: return "low-memory"
        }
    }
}

/// The inputs of one OOM decision, marshalled into `struct mmpolicy_oom_ctx`.
public struct OOMRequest: Sendable {
    public var trigger: OOMTrigger
    public var scope: ResolvedScope
    public var limitBytes: UInt64
    public var usageBytes: UInt64
    public var shortfallBytes: UInt64
    /// The daemon's own pid: never a candidate.
    public var daemonPID: Int32

    public init(trigger: OOMTrigger, scope: ResolvedScope, limitBytes: UInt64, usageBytes: UInt64 = 0,
                shortfallBytes: UInt64 = 0, daemonPID: Int32) {
        self.trigger = trigger
        self.scope = scope
        self.limitBytes = limitBytes
        self.usageBytes = usageBytes
        self.shortfallBytes = shortfallBytes
        self.daemonPID = daemonPID
    }

    var context: mmpolicy_oom_ctx {
        var ctx = mmpolicy_oom_ctx()
        ctx.abi_version = mmpolicyABIVersion
        ctx.trigger = trigger.rawValue
        ctx.scope = scope.abi
        ctx.limit_bytes = limitBytes
        ctx.usage_bytes = usageBytes
        ctx.shortfall_bytes = shortfallBytes
        ctx.now_ns = monotonicNanoseconds()
        ctx.daemon_tgid = UInt32(daemonPID)
        return ctx
    }
}

/// What an OOM policy decided (the output half of `struct mmpolicy_oom_ctx`).
public struct OOMDecision: Sendable, Equatable {
    public enum Reason: Sendable, Equatable {
        case none, largest, fastestGrowth, policy(UInt32)
        init(raw: UInt32) {
            switch raw {
            case UInt32(MMPOLICY_OOM_REASON_NONE.rawValue): self = .none
            case UInt32(MMPOLICY_OOM_REASON_LARGEST.rawValue): self = .largest
            case UInt32(MMPOLICY_OOM_REASON_FASTEST_GROWTH.rawValue): self = .fastestGrowth
            default: self = .policy(raw)
            }
        }
        public var name: String {
            switch self {
            case .none: return "none"
            case .largest: return "largest"
            case .fastestGrowth: return "fastest-growth"
            case .policy(let code): return "policy-\(code)"
            }
        }
    }

    /// False when the policy declined (returned MMPOLICY_NO_DECISION).
    public var decided: Bool
    public var victimPID: Int32
    /// Set when the policy asks to kill a whole cgroup.
    public var victimCgroupID: UInt64?
    public var score: Int64
    public var reason: Reason
    public var candidates: Int
    /// The callback's return value.
    public var status: UInt32
}

/// Runs an oom policy's `select_victim` callback.
public struct OOMSelector {
    public let program: BPFProgram

    /// `policy` must be a loaded object whose ops table is of kind oom.
    public init(policy: BPFObject, ops: OpsTable) throws(OpsTableError) {
        guard ops.kind == .oom, let name = ops.program(for: "select_victim"), let program = policy.program(named: name) else {
            throw OpsTableError(object: policy.name, slot: "select_victim", program: nil,
                                reason: "it is not an oom policy with a select_victim callback", fix: "Load an oom policy")
        }
        self.program = program
    }

    public func selectVictim(_ request: OOMRequest) throws(BPFError) -> OOMDecision {
        var ctx = request.context
        let status = try program.run(context: &ctx)
        let decided = status == UInt32(MMPOLICY_DECIDED.rawValue)
        return OOMDecision(
            decided: decided, victimPID: Int32(bitPattern: ctx.victim_tgid),
            victimCgroupID: ctx.flags & UInt32(MMPOLICY_OOM_KILL_CGROUP) != 0 ? ctx.victim_cgroup_id : nil,
            score: ctx.score, reason: .init(raw: ctx.reason), candidates: Int(ctx.candidates), status: status)
    }
}
