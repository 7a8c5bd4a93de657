import MMPolicyCore

/// Checks a plan's actions before anything is moved: every action must name
/// a live process the policy governs (in its scope, not the daemon, not
/// protected by the manifest), and a range inside that process's anonymous
/// memory; every reclaim target a memory cgroup inside the scope that
/// reaches no protected one (``validateTargets``); the plan as a whole
/// stays within the manifest's byte bounds.
///
/// Invalid actions are refused one by one (the rest of the plan still
/// runs) and counted as rejections, which the watchdog's `max_rejections`
/// guard watches. Bounds are not the policy's fault: an action past them is
/// trimmed to what is left (and the trim noted), not refused.
///
/// Pure: what it needs to know about processes comes in a
/// ``TieringProcessFacts`` lookup, so it is tested without a kernel.
public struct TieringValidator: Sendable {
    public var daemonPID: Int32
    public var protect: ProtectList
    public var settings: TieringSettings
    /// The memory cgroup hierarchy, against which relative `[protect]` cgroups are read.
    public var mount: MemoryCgroupMount?
    /// The policy's scope: reclaim targets must lie inside it.
    public var scope: ResolvedScope

    public init(daemonPID: Int32, protect: ProtectList, settings: TieringSettings, mount: MemoryCgroupMount? = nil,
                scope: ResolvedScope = .system) {
        self.daemonPID = daemonPID
        self.protect = protect
        self.settings = settings
        self.mount = mount
        self.scope = scope
    }

    /// One accepted action: its process and the parts of its range that are
    /// anonymous memory (page-aligned, within the bounds).
    public struct Accepted: Sendable, Equatable {
        public var action: TieringAction
        public var ranges: [AddressRange]
        public var bytes: UInt64 { ranges.reduce(0) { $0 + $1.length } }
    }

    /// The outcome of checking one plan.
    public struct Outcome: Sendable, Equatable {
        public var accepted: [Accepted] = []
        public var refusals: [TieringDecisionPayload.Refusal] = []
        public var acceptedTargets: [AcceptedTarget] = []
        public var targetRefusals: [TieringDecisionPayload.TargetRefusal] = []
        /// Bytes the bounds cut from accepted actions and reclaim targets, with why.
        public var trimmedBytes: UInt64 = 0
        public var trimNote: String?
    }

    /// What the validator may ask about a process. nil answers mean "gone".
    public struct TieringProcessFacts: Sendable {
        /// Whether `pid` is one of the processes the policy governs now (in its scope).
        public var governs: @Sendable (Int32) -> Bool
        /// Its comm and memory cgroup path, for `[protect]`.
        public var identity: @Sendable (Int32) -> (comm: String, cgroup: String?)?
        /// Its private anonymous mappings, sorted by start.
        public var anonymousMappings: @Sendable (Int32) -> [AddressRange]?

        public init(governs: @escaping @Sendable (Int32) -> Bool,
                    identity: @escaping @Sendable (Int32) -> (comm: String, cgroup: String?)?,
                    anonymousMappings: @escaping @Sendable (Int32) -> [AddressRange]?) {
            self.governs = governs
            self.identity = identity
            self.anonymousMappings = anonymousMappings
        }
    }

    static let pageSize: UInt64 = 4096

    /// Checks `actions` in order, then `targets` (which share the demote
    /// bytes left by the actions, see ``validateTargets``); `swapFreePercent`
    /// is the slow tier's free share now.
    public func validate(_ actions: [TieringAction], targets: [TieringTarget] = [], facts: TieringProcessFacts,
                         cgroups: TieringCgroupFacts = .none, swapFreePercent: Double) -> Outcome {
        var outcome = Outcome()
        var demoteLeft = swapFreePercent < settings.minSwapFreePercent ? 0 : settings.maxDemoteBytes
        validateActions(actions, facts: facts, swapFreePercent: swapFreePercent, demoteLeft: &demoteLeft, into: &outcome)
        validateTargets(targets, cgroups: cgroups, swapFreePercent: swapFreePercent, demoteLeft: &demoteLeft, into: &outcome)
        return outcome
    }

    /// Checks `actions` in order, taking what demotions are granted from `demoteLeft`.
    func validateActions(_ actions: [TieringAction], facts: TieringProcessFacts, swapFreePercent: Double,
                         demoteLeft: inout UInt64, into outcome: inout Outcome) {
        var promoteLeft = settings.maxPromoteBytes
        var demotedPerProcess: [Int32: UInt64] = [:]
        var mappingsCache: [Int32: [AddressRange]] = [:]
        for action in actions {
            if let reason = refusal(of: action, facts: facts) {
                outcome.refusals.append(.init(action: action, reason: reason))
                continue
            }
            let mappings: [AddressRange]
            if let cached = mappingsCache[action.pid] {
                mappings = cached
            } else if let read = facts.anonymousMappings(action.pid) {
                mappings = read
                mappingsCache[action.pid] = read
            } else {
                outcome.refusals.append(.init(action: action, reason: "pid \(action.pid) has exited"))
                continue
            }
            let start = action.start / Self.pageSize * Self.pageSize
            let (end, overflow) = action.start.addingReportingOverflow(action.length)
            guard action.length > 0, !overflow else {
                outcome.refusals.append(.init(action: action, reason: "an empty or overflowing range"))
                continue
            }
            let alignedEnd = (end + Self.pageSize - 1) / Self.pageSize * Self.pageSize
            var ranges = AddressRange(start: start, end: alignedEnd).clipped(to: mappings)
            guard !ranges.isEmpty else {
                outcome.refusals.append(.init(action: action, reason: "0x\(String(action.start, radix: 16))+\(action.length) is not in pid \(action.pid)'s anonymous memory"))
                continue
            }
            // Bounds: trim, never refuse.
            var allowed = UInt64.max
            switch action.kind {
            case .demote:
                let perProcess = settings.maxDemotePerProcessBytes - min(settings.maxDemotePerProcessBytes, demotedPerProcess[action.pid] ?? 0)
                allowed = min(demoteLeft, perProcess)
            case .promote: allowed = promoteLeft
            case .cold: break
            }
            let asked = ranges.reduce(0) { $0 + $1.length }
            if asked > allowed {
                ranges = AddressRange.prefix(ranges, bytes: allowed)
                outcome.trimmedBytes += asked - allowed
                outcome.trimNote = action.kind == .demote && demoteLeft == 0 && swapFreePercent < settings.minSwapFreePercent
                    ? "the slow tier is \(Int(100 - swapFreePercent)) % full (min_swap_free_percent \(Int(settings.minSwapFreePercent)))"
                    : "past the plan's bounds (max_demote_mb, max_demote_mb_per_process, max_promote_mb)"
            }
            let granted = ranges.reduce(0) { $0 + $1.length }
            guard granted > 0 else { continue }
            switch action.kind {
            case .demote:
                demoteLeft -= granted
                demotedPerProcess[action.pid, default: 0] += granted
            case .promote: promoteLeft -= granted
            case .cold: break
            }
            outcome.accepted.append(Accepted(action: action, ranges: ranges))
        }
    }

    /// Why `action`'s process may not be touched, if it may not.
    func refusal(of action: TieringAction, facts: TieringProcessFacts) -> String? {
        if action.pid == daemonPID { return "pid \(action.pid) is the daemon" }
        if action.pid <= 1 { return "pid \(action.pid) is not a process a policy may touch" }
        guard facts.governs(action.pid) else { return "pid \(action.pid) is outside the policy's scope" }
        guard let identity = facts.identity(action.pid) else { return "pid \(action.pid) has exited" }
        return protection(of: action.pid, comm: identity.comm, cgroup: identity.cgroup)
    }

    /// Why `[protect]` keeps process `pid` out, if it does. The engine asks
    /// the same before it tracks a process at all.
    public func protection(of pid: Int32, comm: String, cgroup: String?) -> String? {
        if protect.comms.contains(comm) { return "pid \(pid) (\(comm)) is protected by [protect] comms" }
        if let cgroup, let protected = protect.cgroupEntry(containing: cgroup, mount: mount) {
            return "pid \(pid) (\(comm)) is in \(protected), protected by [protect] cgroups"
        }
        return nil
    }
}
