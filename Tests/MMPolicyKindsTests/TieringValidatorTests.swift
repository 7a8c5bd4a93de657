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
