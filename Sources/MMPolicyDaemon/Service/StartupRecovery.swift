import BPFKit
import Logging
import MMPolicyCore

/// The daemon's first act on its state: open the store (moving a damaged
/// database aside, ``DamagedStateRecovery``) and put back every knob a
/// daemon before it left changed (``KnobRecovery``: from the journal, the one
/// salvaged from a damaged file, or, when none can be read, the kernel
/// defaults that can be identified), before the guardian is armed and
/// before any knob is changed.
///
/// It exists to keep that sequence, and what it says about it, in one place:
/// the log, an audit event and, for anything wrong with the state, `status`
/// (through the store's ``StateHealth``).
struct StartupRecovery {
    var store: StateStore
    /// Set when the database was damaged and replaced.
    var damage: DamagedState?

    /// Opens the store in `directory`, reporting to `health`.
    static func open(directory: String, health: StateHealth, logger: Logger) throws(StateStoreError) -> StartupRecovery {
        let (store, damage) = try DamagedStateRecovery.open(directory: directory, health: health)
        for notice in store.notices { logger.notice("\(notice)") }
        return StartupRecovery(store: store, damage: damage)
    }

    /// Whether nothing was ever recorded here: only then does the default
    /// set apply. Not after a damaged database was replaced (its desired set
    /// is the one wanted, even when it was lost), nor when the audit trail
    /// cannot be read.
    var isFirstStart: Bool {
        guard damage == nil, let events = try? store.events(EventQuery(limit: 1)) else { return false }
        return events.isEmpty
    }

    /// Restores what a previous daemon left changed and says so.
    func restoreLeftovers(mount: MemoryCgroupMount?, recorder: EventRecorder, logger: Logger) {
        let started = wallClockNanoseconds()
        let source: KnobRecovery.Source
        let desiredSet: () -> Result<[DesiredPolicy], StateStoreError>
        var salvaged: KnobJournal?
        if let damage {
            switch damage.journal {
            case .success(let entries):
                let journal = KnobJournal(storage: InMemoryKnobJournalStorage(entries: entries))
                salvaged = journal
                source = .journal(journal)
            case .failure(let error):
                source = .unreadable(error.summary)
            }
            desiredSet = { damage.desiredSet }
        } else {
            source = .journal(KnobJournal(storage: store))
            let store = self.store
            desiredSet = { Result { () throws(StateStoreError) in try store.desiredPolicies() } }
        }
        let outcome = KnobRecovery.run(source, desiredSet: desiredSet, mount: mount)

        // Salvaged entries that could not be restored stay journaled, in the fresh database.
        if let left = salvaged?.entries(), !left.isEmpty {
            do throws(StateStoreError) { try store.importJournal(left) } catch {
                logger.error("\(left.count) salvaged knob journal entries could not be kept for the next start: \(error)")
            }
        }
        let result = outcome.restoration
        let changed = result.restored + result.vanished
        if !changed.isEmpty || !outcome.failures.isEmpty {
            var summary = "restored \(result.restored.count + result.inherited.count) knob(s) a previous daemon left changed"
            if damage != nil { summary += " (journal salvaged from the damaged database)" }
            summary += ": " + (changed + result.inherited).map { "\($0.path)=\($0.original)" }.joined(separator: ", ")
            if !outcome.failures.isEmpty { summary += "; \(outcome.failures.count) FAILED: " + outcome.failures.joined(separator: " ") }
            recorder.record(EventRecord(timeNs: started, type: .note, policy: nil, summary: summary))
            if outcome.failures.isEmpty { logger.notice("\(summary)") } else { logger.error("\(summary)") }
        }
        if let sweep = outcome.sweep {
            // Logged at error level and recorded by the health board, and shown by `status`.
            store.health.report(.journal, KnobRecovery.describe(sweep))
        }
    }
}
