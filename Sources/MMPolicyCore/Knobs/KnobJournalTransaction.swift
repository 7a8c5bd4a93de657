/// The knob journal's storage while ``KnobJournal/transaction(_:)`` holds
/// the journal's lock: for changes that are not one file write (a zram swap
/// device: pick a device, journal it, set it up, forget it if that failed),
/// which must not interleave with another such change or a restore.
///
/// Valid only inside the transaction's closure (it is not copyable, so it
/// cannot escape it).
public struct KnobJournalTransaction: ~Copyable {
    let storage: any KnobJournalStorage

    /// The entry journaled at `path`, if any.
    public func entry(at path: String) throws(KnobError) -> KnobJournalEntry? {
        do { return try storage.journalEntries(owner: nil).first { $0.path == path } } catch {
            throw KnobError(path: "(journal)", operation: "reading the entry of \(path) from", errno: nil, detail: "\(error)")
        }
    }

    /// Every journaled entry, optionally only `owner`'s.
    public func entries(owner: String? = nil) throws(KnobError) -> [KnobJournalEntry] {
        do { return try storage.journalEntries(owner: owner) } catch {
            throw KnobError(path: "(journal)", operation: "reading", errno: nil, detail: "\(error)")
        }
    }

    /// Journals `original` at `path` under `owner`, durably, before the
    /// caller changes anything. Throws when an entry is there already (the
    /// first original wins, and this one would be lost) or the journal
    /// cannot be written.
    public func record(_ original: String, at path: String, owner: String) throws(KnobError) {
        let recorded: Bool
        do { recorded = try storage.journalOriginal(path: path, original: original, owner: owner) } catch {
            throw KnobError(path: path, operation: "journaling the original of", errno: nil, detail: "\(error)")
        }
        guard recorded else {
            throw KnobError(path: path, operation: "journaling the original of", errno: nil, detail: "it is journaled already")
        }
    }

    /// Forgets the entry at `path` (the change is undone, or never happened).
    public func forget(_ path: String) throws(KnobError) {
        do { try storage.forgetJournal(path: path) } catch {
            throw KnobError(path: path, operation: "forgetting the journal entry of", errno: nil, detail: "\(error)")
        }
    }

    /// Makes `owner` the owner of the entry at `path` (a policy's change
    /// another policy now relies on: it is undone when that one goes).
    public func reassign(_ path: String, to owner: String) throws(KnobError) {
        do { try storage.reassignJournal(path: path, owner: owner) } catch {
            throw KnobError(path: path, operation: "giving the journal entry of", errno: nil, detail: "to \(owner): \(error)")
        }
    }
}
