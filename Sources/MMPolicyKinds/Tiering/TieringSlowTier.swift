import BPFKit
import MMPolicyCore
import Synchronization

/// Makes sure every tiering policy has a slow tier to move memory to, and
/// gives back the zram swap it set up for one.
///
/// At attach: with a swap area active, nothing to do; with none, the zram
/// swap the manifest asks for (`[tiering] setup_zram = "1G"`) is set up,
/// journaled with the policy as its owner (``ZramSwapSetup``), or the load
/// is refused naming the fixes. At detach, a zram the policy owns is torn
/// down (the journal entry restored, like any knob of the policy), unless it
/// is the last swap area and another tiering policy is attached: that one
/// relies on it, so the entry is handed to it and goes when it does.
///
/// Attach and detach may run at once (the daemon awaits the engine between
/// them), so the policies that use the tier are kept here, and the check,
/// set-up, hand-over and teardown happen under one lock: a policy being
/// attached while another's zram is being given back either becomes its
/// heir or finds no swap and sets up its own.
final class TieringSlowTier: Sendable {
    /// Tiering policies attached or being attached.
    private let users = Mutex<Set<String>>([])

    /// Provides the slow tier for `instance` before it is attached.
    func provide(for instance: TieringPolicyInstance, environment: KindEnvironment) throws(TieringAttachError) {
        try users.withLock { users throws(TieringAttachError) in
            if !SlowTier.current().isConfigured {
                guard let size = instance.settings.setupZram else {
                    throw TieringAttachError(
                        policy: instance.name,
                        reason: "no swap device is active, so there is no slow tier to move memory to (/proc/swaps lists none)",
                        fix: "Set one up first: `mmpolicy tier setup-zram 4G` (zram swap, journaled; `mmpolicy tier teardown-zram` undoes it), or add `setup_zram = \"4G\"` to the manifest's [tiering] so the daemon sets it up for this policy alone, or mkswap and swapon a device of your own (docs/kinds/tiering.md); then load the policy again")
                }
                let record: ZramSwapRecord
                do { record = try ZramSwapSetup.setUp(ZramSwapRequest(size: size), owner: instance.name, journal: environment.journal) } catch {
                    throw TieringAttachError(
                        policy: instance.name,
                        reason: "no swap device is active, and the zram swap its manifest asks for ([tiering] setup_zram = \"\(size)\") could not be set up: \(error)",
                        fix: "Fix what that names, or set swap up yourself (`mmpolicy tier setup-zram SIZE`), then load the policy again")
                }
                note(environment, instance.name, "set up zram swap for it ([tiering] setup_zram): \(record.summary); journaled, it goes when the policy is unloaded")
            }
            users.insert(instance.name)
        }
    }

    /// Gives back what was provided for `name` (detached, or its attach failed).
    func release(_ name: String, environment: KindEnvironment) {
        users.withLock { users in
            users.remove(name)
            let journal = environment.journal
            for record in journal.entries(owner: name).compactMap(ZramSwapRecord.init) {
                let otherSwap = SlowTier.current().devices.contains { $0.path != record.device.path }
                if !otherSwap, let heir = users.sorted().first {
                    do throws(KnobError) {
                        try journal.transaction { (journal: borrowing KnobJournalTransaction) throws(KnobError) in
                            try journal.reassign(record.journalKey, to: heir)
                        }
                        note(environment, name, "its zram swap \(record.device.path) stays: it is the last swap area and tiering policy '\(heir)' relies on it, so it goes when '\(heir)' is unloaded")
                        note(environment, heir, "now owns zram swap \(record.device.path), set up for '\(name)' (unloaded): the last swap area, which it relies on")
                    } catch {
                        // Still journaled under the unloaded policy: the next restore of everything (shutdown, restart) tears it down.
                        environment.log("tiering: zram swap \(record.device.path) of unloaded policy '\(name)' stays for '\(heir)', but its journal entry could not be handed over (\(error)); the daemon's shutdown tears it down")
                    }
                    continue
                }
                do throws(ZramError) {
                    switch try ZramSwapSetup.tearDownJournaled(record, owner: name, journal: journal) {
                    case .tornDown:
                        note(environment, name, "tore down its zram swap \(record.device.path) (swapoff, \(record.hotAdded ? "device removed" : "device reset"))")
                    case .gone(let why):
                        note(environment, name, "its zram swap had nothing left to undo: \(why)")
                    }
                } catch {
                    note(environment, name, "its zram swap \(record.device.path) could NOT be torn down and stays journaled (the daemon's next restore, at shutdown or start, tries again): \(error)")
                    environment.log("tiering: tearing down zram swap \(record.device.path) of '\(name)' failed: \(error)")
                }
            }
        }
    }

    private func note(_ environment: KindEnvironment, _ policy: String, _ summary: String) {
        environment.record(EventRecord(timeNs: wallClockNanoseconds(), type: .note, policy: policy, summary: summary))
    }
}

extension TieringSettings {
    /// `[tiering] setup_zram`: a size ("1G"), at least 1 MiB; nil when absent.
    static func readSetupZram(_ reader: ManifestSectionReader) throws(ManifestError) -> ByteSize? {
        let rule = "a zram swap size such as \"1G\" or \"512M\" (binary units K, M, G, T), at least 1M"
        guard let text = try reader.string(section, "setup_zram", rule) else { return nil }
        guard let size = ByteSize(parsing: text), size >= ZramSwapRequest.minimumSize else {
            throw reader.invalid(section, "setup_zram", expected: rule)
        }
        return size
    }
}
