#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import CMMPolicyABI
import MMPolicyCore

/// Why a plan is being asked for (`enum mmpolicy_tier_trigger`).
public enum TieringTrigger: UInt32, Sendable, CaseIterable {
    case test = 0, periodic = 1, pressure = 2

    /// The name events and the CLI use.
    public var name: String {
        switch self {
        case .test: return "test"
        case .periodic: return "periodic"
        case .pressure: return "pressure"
        }
    }
}

/// What to do with a range of a process's memory (`enum mmpolicy_tier_action_kind`).
public enum TieringActionKind: UInt32, Sendable, CaseIterable, Codable {
    /// Page it out to the slow tier now.
    case demote = 1
    /// Deactivate it: reclaim takes it first.
    case cold = 2
    /// Bring it back from the slow tier.
    case promote = 3

    public var name: String {
        switch self {
        case .demote: return "demote"
        case .cold: return "cold"
        case .promote: return "promote"
        }
    }
}

/// The inputs of one plan, marshalled into `struct mmpolicy_tiering_ctx`.
public struct TieringRequest: Sendable {
    public var trigger: TieringTrigger
    public var scope: ResolvedScope
    public var intervalNs: UInt64
    public var pressure: PressureStall?
    /// Stall time since the previous plan (µs), some and full.
    public var someDeltaUs: UInt64
    public var fullDeltaUs: UInt64
    public var memory: MemInfo?
    public var scopeUsageBytes: UInt64
    public var scopeLimitBytes: UInt64
    public var tier: TierFigures
    public var maxDemoteBytes: UInt64
    public var maxPromoteBytes: UInt64
    public var daemonPID: Int32

    public init(trigger: TieringTrigger, scope: ResolvedScope, intervalNs: UInt64, pressure: PressureStall? = nil,
                someDeltaUs: UInt64 = 0, fullDeltaUs: UInt64 = 0, memory: MemInfo? = nil, scopeUsageBytes: UInt64 = 0,
                scopeLimitBytes: UInt64 = 0, tier: TierFigures = TierFigures(), maxDemoteBytes: UInt64, maxPromoteBytes: UInt64,
                daemonPID: Int32) {
        self.trigger = trigger
        self.scope = scope
        self.intervalNs = intervalNs
        self.pressure = pressure
        self.someDeltaUs = someDeltaUs
        self.fullDeltaUs = fullDeltaUs
        self.memory = memory
        self.scopeUsageBytes = scopeUsageBytes
        self.scopeLimitBytes = scopeLimitBytes
        self.tier = tier
        self.maxDemoteBytes = maxDemoteBytes
        self.maxPromoteBytes = maxPromoteBytes
        self.daemonPID = daemonPID
    }

    var context: mmpolicy_tiering_ctx {
        var ctx = mmpolicy_tiering_ctx()
        ctx.abi_version = mmpolicyABIVersion
        ctx.trigger = trigger.rawValue
        ctx.scope = scope.abi
        ctx.now_ns = monotonicNanoseconds()
        ctx.interval_ns = intervalNs
        ctx.psi_some_avg10 = UInt32(max(0, (pressure?.some.avg10 ?? 0) * 100))
        ctx.psi_full_avg10 = UInt32(max(0, (pressure?.full.avg10 ?? 0) * 100))
        ctx.psi_some_total_delta_us = someDeltaUs
        ctx.psi_full_total_delta_us = fullDeltaUs
        ctx.mem_total_bytes = memory?.memTotal ?? 0
        ctx.mem_available_bytes = memory?.memAvailable ?? 0
        ctx.scope_usage_bytes = scopeUsageBytes
        ctx.scope_limit_bytes = scopeLimitBytes
        ctx.tier.swap_total_bytes = tier.swapTotalBytes
        ctx.tier.swap_free_bytes = tier.swapFreeBytes
        ctx.tier.stored_bytes = tier.storedBytes
        ctx.tier.compressed_bytes = tier.compressedBytes
        ctx.tier.used_bytes = tier.usedBytes
        ctx.max_demote_bytes = maxDemoteBytes
        ctx.max_promote_bytes = maxPromoteBytes
        ctx.daemon_tgid = UInt32(daemonPID)
        return ctx
    }
}

/// The slow tier as a plan sees it: every active swap device, and what
/// zram (if that is the tier) stores and what it costs.
public struct TierFigures: Sendable, Equatable, Codable {
    public var swapTotalBytes: UInt64 = 0
    public var swapFreeBytes: UInt64 = 0
    public var storedBytes: UInt64 = 0
    public var compressedBytes: UInt64 = 0
    public var usedBytes: UInt64 = 0

    public init(swapTotalBytes: UInt64 = 0, swapFreeBytes: UInt64 = 0, storedBytes: UInt64 = 0, compressedBytes: UInt64 = 0,
                usedBytes: UInt64 = 0) {
        self.swapTotalBytes = swapTotalBytes
        self.swapFreeBytes = swapFreeBytes
        self.storedBytes = storedBytes
        self.compressedBytes = compressedBytes
        self.usedBytes = usedBytes
    }

    /// Memory the tier saves: what it stores minus what storing it costs.
    public var savedBytes: Int64 { Int64(storedBytes) - Int64(usedBytes) }
}

/// One action a plan asked for.
public struct TieringAction: Sendable, Equatable, Codable {
    public var pid: Int32
    public var kind: TieringActionKind
    public var start: UInt64
    public var length: UInt64

    public init(pid: Int32, kind: TieringActionKind, start: UInt64, length: UInt64) {
        self.pid = pid
        self.kind = kind
        self.start = start
        self.length = length
    }
}

/// One reclaim target a plan asked for (`struct mmpolicy_tier_target`):
/// have the kernel's own reclaim take `bytes` from the memory cgroup whose
/// id (its directory's inode number) is `cgroupID`.
public struct TieringTarget: Sendable, Equatable, Codable {
    public var cgroupID: UInt64
    public var bytes: UInt64

    public init(cgroupID: UInt64, bytes: UInt64) {
        self.cgroupID = cgroupID
        self.bytes = bytes
    }
}

/// What a plan asked for (the output half of `struct mmpolicy_tiering_ctx`).
public struct TieringPlan: Sendable, Equatable {
    /// False when the policy declined (returned MMPOLICY_NO_DECISION).
    public var decided: Bool
    public var actions: [TieringAction]
    /// Action entries with an unknown kind (refused before validation).
    public var malformed: Int
    public var targets: [TieringTarget]
    /// The callback's return value.
    public var status: UInt32
}

/// Runs a tiering policy's `plan` callback and reads its plan map.
public struct TieringPlanner {
    public let program: BPFProgram
    /// The policy's own `tier_plan` map, where the callback writes its lists.
    public let planMap: BPFMap

    /// `policy` must be a loaded object whose ops table is of kind tiering.
    public init(policy: BPFObject, ops: OpsTable) throws(OpsTableError) {
        guard ops.kind == .tiering, let name = ops.program(for: "plan"), let program = policy.program(named: name) else {
            throw OpsTableError(object: policy.name, slot: "plan", program: nil,
                                reason: "it is not a tiering policy with a plan callback", fix: "Load a tiering policy")
        }
        guard let map = policy.map(named: MMPOLICY_TIER_PLAN_MAP) else {
            throw OpsTableError(object: policy.name, slot: "plan", program: name,
                                reason: "it has no \(MMPOLICY_TIER_PLAN_MAP) map for its plan",
                                fix: "Include mmpolicy/tiering.bpf.h (it declares the map) and rebuild")
        }
        self.program = program
        self.planMap = map
    }

    public func plan(_ request: TieringRequest) throws(BPFError) -> TieringPlan {
        var ctx = request.context
        let status = try program.run(context: &ctx)
        var lists = mmpolicy_tier_plan()
        if ctx.nr_actions > 0 || ctx.nr_targets > 0 {
            lists = try planMap.lookup(UInt32(0), as: mmpolicy_tier_plan.self) ?? lists
        }
        return Self.plan(from: ctx, lists: lists, status: status)
    }

    /// The plan in `ctx` and `lists` (counts clamped to the lists' sizes).
    static func plan(from ctx: mmpolicy_tiering_ctx, lists: mmpolicy_tier_plan, status: UInt32) -> TieringPlan {
        var actions: [TieringAction] = [], malformed = 0
        let actionCount = min(Int(ctx.nr_actions), Int(MMPOLICY_TIER_MAX_ACTIONS))
        withUnsafeBytes(of: lists.actions) { raw in
            for entry in raw.bindMemory(to: mmpolicy_tier_action.self).prefix(actionCount) {
                guard let kind = TieringActionKind(rawValue: entry.kind) else { malformed += 1; continue }
                actions.append(TieringAction(pid: Int32(bitPattern: entry.tgid), kind: kind, start: entry.start, length: entry.len))
            }
        }
        var targets: [TieringTarget] = []
        let targetCount = min(Int(ctx.nr_targets), Int(MMPOLICY_TIER_MAX_TARGETS))
        withUnsafeBytes(of: lists.targets) { raw in
            for entry in raw.bindMemory(to: mmpolicy_tier_target.self).prefix(targetCount) {
                targets.append(TieringTarget(cgroupID: entry.cgroup_id, bytes: entry.bytes))
            }
        }
        return TieringPlan(decided: status == UInt32(MMPOLICY_DECIDED.rawValue), actions: actions, malformed: malformed,
                           targets: targets, status: status)
    }
}
