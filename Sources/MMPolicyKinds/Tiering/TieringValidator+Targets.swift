import MMPolicyCore

/// What the validator may ask about memory cgroups, for reclaim targets.
public struct TieringCgroupFacts: Sendable {
    /// The directory of the memory cgroup whose id (inode number) is `id`,
    /// anywhere in the hierarchy; nil if there is none.
    public var directory: @Sendable (UInt64) -> String?

    public init(directory: @escaping @Sendable (UInt64) -> String?) { self.directory = directory }

    /// No cgroup is known: every target is refused.
    public static let none = TieringCgroupFacts { _ in nil }
}

extension TieringValidator {
    /// One accepted reclaim target: its memory cgroup and the bytes the
    /// bounds grant it.
    public struct AcceptedTarget: Sendable, Equatable {
        public var target: TieringTarget
        /// The memory cgroup's directory.
        public var cgroup: String
        /// `target.bytes`, trimmed to what the plan's bounds left.
        public var bytes: UInt64
    }

    /// Checks `targets` in order. A target must name, by a non-zero byte
    /// count and an id the hierarchy knows, a memory cgroup inside the
    /// policy's scope (the scope's own group or one below it; for the
    /// system scope any but the root), named once per plan, whose subtree
    /// holds no `[protect]` cgroup (its reclaim would reach them). Bounds
    /// trim, they do not refuse: a target's bytes come out of the same
    /// per-plan `max_demote_mb` as demote actions (`demoteLeft`, what the
    /// actions left), and nothing while the slow tier has less than
    /// `min_swap_free_percent` free.
    func validateTargets(_ targets: [TieringTarget], cgroups: TieringCgroupFacts, swapFreePercent: Double,
                         demoteLeft: inout UInt64, into outcome: inout Outcome) {
        var named = Set<UInt64>()
        for target in targets {
            let cgroup: String
            switch check(target, cgroups: cgroups, named: named) {
            case .refused(let reason):
                outcome.targetRefusals.append(.init(target: target, reason: reason))
                continue
            case .cgroup(let directory):
                cgroup = directory
            }
            named.insert(target.cgroupID)
            let granted = min(target.bytes, demoteLeft)
            if granted < target.bytes {
                outcome.trimmedBytes += target.bytes - granted
                outcome.trimNote = swapFreePercent < settings.minSwapFreePercent
                    ? "the slow tier is \(Int(100 - swapFreePercent)) % full (min_swap_free_percent \(Int(settings.minSwapFreePercent)))"
                    : "past the plan's bounds (max_demote_mb, shared by demote actions and reclaim targets)"
            }
            guard granted > 0 else { continue }
            demoteLeft -= granted
            outcome.acceptedTargets.append(AcceptedTarget(target: target, cgroup: cgroup, bytes: granted))
        }
    }

    /// A target's memory cgroup, or why it may not be reclaimed.
    enum TargetCheck: Equatable {
        case cgroup(String)
        case refused(String)
    }

    func check(_ target: TieringTarget, cgroups: TieringCgroupFacts, named: Set<UInt64>) -> TargetCheck {
        let id = target.cgroupID
        guard target.bytes > 0 else { return .refused("a reclaim target of 0 bytes (cgroup \(id))") }
        guard let cgroup = cgroups.directory(id) else {
            return .refused("cgroup \(id) is not a memory cgroup (no directory of the hierarchy has that id)")
        }
        if let scopePath = scope.cgroupPath {
            guard CgroupTree.isWithin(cgroup, scopePath) else {
                return .refused("cgroup \(id) (\(cgroup)) is outside the policy's scope \(scopePath)")
            }
        } else if let mount, CgroupTree.isWithin(mount.path, cgroup) {
            return .refused("cgroup \(id) (\(cgroup)) is the root memory cgroup, which no policy may reclaim")
        }
        guard !named.contains(id) else { return .refused("cgroup \(id) (\(cgroup)) is named by an earlier target of this plan") }
        if let protected = protect.cgroupEntries(reachedFrom: cgroup, mount: mount).first {
            return .refused("cgroup \(id) (\(cgroup)) reaches \(protected), protected by [protect] cgroups (its reclaim would take their memory too)")
        }
        return .cgroup(cgroup)
    }
}
