import MMPolicyCore
import MMPolicyKinds
import Testing

/// The tiering validator on its own: who may be touched, what is clipped,
/// what the bounds trim.
struct TieringValidatorTests {
    static let mib: UInt64 = 1 << 20
    static let mount = MemoryCgroupMount(version: .v1, path: "/sys/fs/cgroup/memory")

    func facts(governed: Set<Int32> = [100, 101], mappings: [AddressRange] = [AddressRange(start: 0x10_0000, length: 8 << 20)])
        -> TieringValidator.TieringProcessFacts {
        TieringValidator.TieringProcessFacts(
            governs: { governed.contains($0) },
            identity: { pid in pid == 101 ? ("sshd", "/sys/fs/cgroup/memory/job") : pid == 100 ? ("worker", "/sys/fs/cgroup/memory/job/batch") : nil },
            anonymousMappings: { governed.contains($0) ? mappings : nil })
    }

    func validator(protect: ProtectList = ProtectList(), settings: TieringSettings = .defaults) -> TieringValidator {
        TieringValidator(daemonPID: 7, protect: protect, settings: settings, mount: Self.mount)
    }

    @Test func whoMayNotBeTouchedIsRefusedWithWhy() {
        let v = validator(protect: ProtectList(comms: ["sshd"], cgroups: ["job/batch"]))
        let actions = [7, 1, 999, 101, 100].map { TieringAction(pid: $0, kind: .demote, start: 0x10_0000, length: 2 * Self.mib) }
        let outcome = v.validate(actions, facts: facts(governed: [100, 101, 7, 1]), swapFreePercent: 50)
        #expect(outcome.accepted.isEmpty)
        #expect(outcome.refusals.map(\.reason) == [
            "pid 7 is the daemon", "pid 1 is not a process a policy may touch", "pid 999 is outside the policy's scope",
            "pid 101 (sshd) is protected by [protect] comms",
            "pid 100 (worker) is in job/batch, protected by [protect] cgroups",
        ], "a relative [protect] cgroup is read against the hierarchy's root")
    }

    @Test func rangesAreClippedToAnonymousMemoryAndBoundsTrim() {
        var settings = TieringSettings.defaults
        settings.maxDemotePerProcessBytes = 3 * Self.mib
        let v = validator(settings: settings)
        let outcome = v.validate([
            TieringAction(pid: 100, kind: .demote, start: 0, length: 2 * Self.mib),  // half before the mapping
            TieringAction(pid: 100, kind: .demote, start: 0x40_0000, length: 4 * Self.mib),  // past the per-process bound
            TieringAction(pid: 100, kind: .cold, start: 0x9000_0000, length: Self.mib),  // outside every mapping
        ], facts: facts(), swapFreePercent: 50)
        #expect(outcome.accepted.map(\.bytes) == [Self.mib, 2 * Self.mib])
        #expect(outcome.accepted[0].ranges == [AddressRange(start: 0x10_0000, end: 0x20_0000)])
        #expect(outcome.trimmedBytes == 2 * Self.mib && outcome.trimNote?.contains("max_demote_mb_per_process") == true)
        #expect(outcome.refusals.count == 1 && outcome.refusals[0].reason.contains("not in pid 100's anonymous memory"))
    }

    @Test func aFullSlowTierStopsDemotionButNotPromotion() {
        let v = validator()
        let outcome = v.validate([
            TieringAction(pid: 100, kind: .demote, start: 0x10_0000, length: Self.mib),
            TieringAction(pid: 100, kind: .promote, start: 0x10_0000, length: Self.mib),
        ], facts: facts(), swapFreePercent: 5)
        #expect(outcome.accepted.map(\.action.kind) == [.promote])
        #expect(outcome.refusals.isEmpty && outcome.trimNote?.contains("full") == true)
    }
}

/// Reclaim targets: which memory cgroups a plan may have the kernel reclaim,
/// and how they share the plan's demote bytes.
struct TieringTargetValidatorTests {
    static let mib: UInt64 = 1 << 20
    static let mount = MemoryCgroupMount(version: .v1, path: "/sys/fs/cgroup/memory")
    static let root = "/sys/fs/cgroup/memory"
    /// id -> directory, as the hierarchy would answer.
    static let directories: [UInt64: String] = [
        1: root, 10: root + "/job", 11: root + "/job/batch", 12: root + "/job/keep", 20: root + "/other",
    ]
    static let cgroups = TieringCgroupFacts { directories[$0] }
    static let noProcesses = TieringValidator.TieringProcessFacts(governs: { _ in false }, identity: { _ in nil },
                                                                   anonymousMappings: { _ in nil })

    func validator(scope: ResolvedScope, protect: ProtectList = ProtectList(), settings: TieringSettings = .defaults) -> TieringValidator {
        TieringValidator(daemonPID: 7, protect: protect, settings: settings, mount: Self.mount, scope: scope)
    }

    static let jobScope = ResolvedScope(cgroupPath: root + "/job", cgroupID: 10, level: 1, mount: mount)

    @Test func aTargetMustBeAMemoryCgroupInsideTheScopeThatReachesNoProtectedOne() {
        let v = validator(scope: Self.jobScope, protect: ProtectList(cgroups: ["job/keep"]))
        let targets = [10, 11, 20, 99, 11, 1].map { TieringTarget(cgroupID: UInt64($0), bytes: 4 * Self.mib) }
            + [TieringTarget(cgroupID: 11, bytes: 0)]
        let outcome = v.validate([], targets: targets, facts: Self.noProcesses, cgroups: Self.cgroups, swapFreePercent: 50)
        #expect(outcome.acceptedTargets.map(\.cgroup) == [Self.root + "/job/batch"])
        #expect(outcome.acceptedTargets.first?.bytes == 4 * Self.mib)
        #expect(outcome.targetRefusals.map(\.reason) == [
            "cgroup 10 (\(Self.root)/job) reaches job/keep, protected by [protect] cgroups (its reclaim would take their memory too)",
            "cgroup 20 (\(Self.root)/other) is outside the policy's scope \(Self.root)/job",
            "cgroup 99 is not a memory cgroup (no directory of the hierarchy has that id)",
            "cgroup 11 (\(Self.root)/job/batch) is named by an earlier target of this plan",
            "cgroup 1 (\(Self.root)) is outside the policy's scope \(Self.root)/job",
            "a reclaim target of 0 bytes (cgroup 11)",
        ])
        #expect(outcome.refusals.isEmpty, "target refusals are their own list")
    }

    @Test func theSystemScopeMayReclaimAnyMemoryCgroupButTheRoot() {
        let v = validator(scope: .system, protect: ProtectList(cgroups: ["\(Self.root)/job/keep"]))
        let targets = [1, 20, 11, 12].map { TieringTarget(cgroupID: UInt64($0), bytes: Self.mib) }
        let outcome = v.validate([], targets: targets, facts: Self.noProcesses, cgroups: Self.cgroups, swapFreePercent: 50)
        #expect(outcome.acceptedTargets.map(\.target.cgroupID) == [20, 11])
        #expect(outcome.targetRefusals.map(\.target.cgroupID) == [1, 12])
        #expect(outcome.targetRefusals[0].reason.contains("the root memory cgroup"))
        #expect(outcome.targetRefusals[1].reason.contains("protected by [protect] cgroups"))
    }

    @Test func targetsShareTheDemoteBudgetWithActionsAndStopWhenTheTierIsFull() {
        var settings = TieringSettings.defaults
        settings.maxDemoteBytes = 10 * Self.mib
        let v = validator(scope: Self.jobScope, settings: settings)
        let facts = TieringValidator.TieringProcessFacts(
            governs: { $0 == 100 }, identity: { _ in ("worker", Self.root + "/job/batch") },
            anonymousMappings: { _ in [AddressRange(start: 0x10_0000, length: 64 << 20)] })
        let demote = TieringAction(pid: 100, kind: .demote, start: 0x10_0000, length: 4 * Self.mib)
        let targets = [TieringTarget(cgroupID: 11, bytes: 4 * Self.mib), TieringTarget(cgroupID: 10, bytes: 4 * Self.mib)]
        let outcome = v.validate([demote], targets: targets, facts: facts, cgroups: Self.cgroups, swapFreePercent: 50)
        #expect(outcome.accepted.map(\.bytes) == [4 * Self.mib], "actions first")
        #expect(outcome.acceptedTargets.map(\.bytes) == [4 * Self.mib, 2 * Self.mib], "then targets, from what the actions left")
        #expect(outcome.trimmedBytes == 2 * Self.mib && outcome.trimNote?.contains("max_demote_mb") == true)
        #expect(outcome.targetRefusals.isEmpty, "a bound trims, it does not refuse")

        let full = v.validate([], targets: targets, facts: facts, cgroups: Self.cgroups, swapFreePercent: 5)
        #expect(full.acceptedTargets.isEmpty && full.targetRefusals.isEmpty)
        #expect(full.trimmedBytes == 8 * Self.mib && full.trimNote?.contains("full") == true,
                "no reclaim while the slow tier has less than min_swap_free_percent free")
    }
}

/// Decision records: a version 1 tiering record (before reclaim targets)
/// still decodes, as a plan with none.
struct TieringDecisionPayloadTests {
    @Test func aVersion1RecordDecodesWithoutReclaimFields() throws {
        // What version 1 wrote: today's fields less the reclaim ones.
        let written = TieringDecisionPayload(actionsAsked: 3, demotedBytes: 4_194_304, tier: TierFigures(swapTotalBytes: 1024))
        guard case .object(var fields) = try JSONValue(encoding: written) else {
            Issue.record("a payload encodes as an object")
            return
        }
        for key in ["targetsAsked", "reclaimedBytes", "reclaims", "targetRefusals"] { fields[key] = nil }
        let body = JSONValue.object(fields)
        let payload = try #require(DecisionPayload(version: 1, body: body).decode(TieringDecisionPayload.self))
        #expect(payload.actionsAsked == 3 && payload.demotedBytes == 4_194_304)
        #expect(payload.targetsAsked == 0 && payload.reclaims.isEmpty && payload.reclaimedBytes == 0)
        #expect(DecisionPayload(version: 3, body: body).decode(TieringDecisionPayload.self) == nil, "a later version is not guessed at")

        var current = payload
        current.targetsAsked = 1
        current.reclaims = [.init(cgroupID: 9, cgroup: "/sys/fs/cgroup/memory/job", askedBytes: 8, grantedBytes: 8, reclaimedBytes: 6)]
        let wrapped = DecisionPayload(current)
        #expect(wrapped.version == 2)
        #expect(wrapped.decode(TieringDecisionPayload.self) == current)
    }
}
