import SystemPackage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Where the knob journal keeps original values. The daemon's state store is
/// the durable one; tests may keep them in memory.
public protocol KnobJournalStorage: Sendable {
    /// Records `original` for `path` unless an original is already recorded
    /// (the first original wins); returns whether it was recorded.
    func journalOriginal(path: String, original: String, owner: String) throws -> Bool
    /// Every recorded original, optionally only `owner`'s.
    func journalEntries(owner: String?) throws -> [KnobJournalEntry]
    func forgetJournal(path: String) throws
    /// Makes `owner` the owner of the entry at `path`; unknown paths are ignored.
    func reassignJournal(path: String, owner: String) throws
}

extension KnobJournalStorage {
    /// Forgets the entry and journals it again under `owner` (storage that
    /// can do it in one step, the state store, does).
    public func reassignJournal(path: String, owner: String) throws {
        guard let entry = try journalEntries(owner: nil).first(where: { $0.path == path }) else { return }
        try forgetJournal(path: path)
        _ = try journalOriginal(path: path, original: entry.original, owner: owner)
    }
}

/// A kernel knob's value before mmpolicy first changed it.
public struct KnobJournalEntry: Codable, Sendable, Equatable {
    public var path: String
    public var original: String
    /// Who changed it: a policy name, or "daemon".
    public var owner: String
    public var recordedNs: Int64

    /// Whether it records an operator's request (``KnobJournal/operatorOwner``):
    /// undone only when asked for, never by a restore of everything.
    public var isOperatorRequest: Bool { owner == KnobJournal.operatorOwner }

    public init(path: String, original: String, owner: String, recordedNs: Int64) {
        self.path = path
        self.original = original
        self.owner = owner
        self.recordedNs = recordedNs
    }
}

/// A knob write or restore that failed: names the file and the fix.
public struct KnobError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var operation: String
    public var errno: Errno?
    public var detail: String

    public var description: String {
        var text = "\(operation) \(path) failed"
        if let errno { text += ": \(errno.description) (errno \(errno.rawValue))" }
        if !detail.isEmpty { text += ": \(detail)" }
        return text + "."
    }
}

/// What one restore did.
public struct KnobRestoration: Sendable {
    /// Written back to their original and forgotten.
    public var restored: [KnobJournalEntry] = []
    /// Gone (their cgroup or process no longer exists) and forgotten.
    public var vanished: [KnobJournalEntry] = []
    /// Not journaled, but set to a journaled ancestor's original because
    /// they had copied mmpolicy's value from it when they were created (see
    /// ``InheritedKnob``); `owner` and `recordedNs` are the ancestor's.
    public var inherited: [KnobJournalEntry] = []
    /// What could not be restored; those entries stay journaled.
    public var failures: [KnobError] = []
    /// Why the journal itself could not be read, if it could not: then
    /// nothing was restored from it (and `failures` says so too). The
    /// caller falls back to what it can identify without it
    /// (``OOMKillerSweep``).
    public var journalError: String?

    public init(restored: [KnobJournalEntry] = [], vanished: [KnobJournalEntry] = [], inherited: [KnobJournalEntry] = [],
                failures: [KnobError] = [], journalError: String? = nil) {
        self.restored = restored
        self.vanished = vanished
        self.inherited = inherited
        self.failures = failures
        self.journalError = journalError
    }
}

/// The one way mmpolicy changes a kernel knob (memcg files, oom_score_adj,
/// sysctls, /sys/kernel/mm/*, read_ahead_kb): the original value is recorded
/// durably before the first write, so unload, shutdown, the guardian (when
/// the daemon dies) and the next start after a crash can put it back.
/// Restoring a cgroup knob that new children copy from their parent also
/// resets the children made after the write (``InheritedKnob``).
///
/// Two kinds of entry are not a file's value. A zram swap device mmpolicy
/// set up (``ZramSwapRecord``, path `zram-swap:/dev/zramN`) is restored by
/// tearing it down (``ZramSwapSetup/tearDown(_:)``), after every other knob.
/// And an entry owned by ``operatorOwner`` records what an operator asked
/// for (`mmpolicy tier setup-zram`): it stays until the operator undoes it,
/// so a restore of everything (shutdown, the guardian, the next start)
/// leaves it alone; only a restore naming its owner or its path undoes it.
public final class KnobJournal: Sendable {
    /// The owner of what an operator asked for: not a valid policy name
    /// (policies are named with a-z, 0-9 and _), so no policy's knobs are
    /// ever mistaken for it.
    public static let operatorOwner = "operator-request"

    /// How a knob's current value is read back for journaling, when the file's
    /// text is not itself the value to restore (memory.oom_control's
    /// "oom_kill_disable 0\nunder_oom 0..." restores as "0").
    public typealias OriginalReader = @Sendable (String) -> String

    private let storage: any KnobJournalStorage
    /// Serialises read-original-then-write so two writers cannot journal each other's value.
    private let lock = Mutex(())

    public init(storage: any KnobJournalStorage) { self.storage = storage }

    /// Writes `value` to `path`, first journaling the current value as read
    /// by `original` (default: the file's text, trimmed) under `owner`.
    public func write(_ value: String, to path: String, owner: String,
                      original: OriginalReader = KnobJournal.trimmedText) throws(KnobError) {
        _ = try writeReporting(value, to: path, owner: owner, original: original)
    }

    /// ``write(_:to:owner:original:)``, returning the journal entry the knob
    /// is restored from: the one just recorded, or the one recorded before
    /// (the first original wins). For callers that restore knobs themselves
    /// without reading the journal back (the OOM engine's thread).
    public func writeReporting(_ value: String, to path: String, owner: String,
                               original: OriginalReader = KnobJournal.trimmedText) throws(KnobError) -> KnobJournalEntry {
        try lock.withLock { _ throws(KnobError) -> KnobJournalEntry in
            let entry = try journalLocked(path, owner: owner, original: original)
            try Self.writeFile(path, value)
            return entry
        }
    }

    /// Journals `path`'s current value (as read by `original`) under `owner`
    /// without writing anything: for an actuator that then changes the knob
    /// itself, several times over one descriptor (the stepped memcg limit of
    /// ``MemcgV1LimitReclaim``), and puts it back itself. Returns the entry
    /// the knob is to be restored from: the one just recorded, or the one
    /// recorded before (the first original wins). Once this returns, unload,
    /// the guardian and the next start restore the knob whatever happens.
    public func record(_ path: String, owner: String,
                       original: OriginalReader = KnobJournal.trimmedText) throws(KnobError) -> KnobJournalEntry {
        try lock.withLock { _ throws(KnobError) -> KnobJournalEntry in try journalLocked(path, owner: owner, original: original) }
    }

    /// Reads `path`'s original and journals it (the first original wins);
    /// the entry to restore from. Called with `lock` held.
    private func journalLocked(_ path: String, owner: String, original: OriginalReader) throws(KnobError) -> KnobJournalEntry {
        let current: String
        do { current = try String(contentsOfProcFile: path) } catch {
            throw KnobError(path: path, operation: "reading the original of", errno: (error as? Errno), detail: "")
        }
        var entry = KnobJournalEntry(path: path, original: original(current), owner: owner, recordedNs: 0)
        do {
            if try !storage.journalOriginal(path: path, original: entry.original, owner: owner),
               let earlier = try storage.journalEntries(owner: nil).first(where: { $0.path == path }) {
                entry = earlier
            }
        } catch {
            throw KnobError(path: path, operation: "journaling the original of", errno: nil, detail: "\(error)")
        }
        return entry
    }

    /// Writes every journaled original of `owner` (all owners but
    /// ``operatorOwner`` if nil) back and forgets it. A knob whose file is
    /// gone (the cgroup or process no longer exists) counts as restored.
    /// Returns the failures; the rest are restored.
    @discardableResult
    public func restore(owner: String? = nil) -> [KnobError] {
        restoreReporting(owner: owner).failures
    }

    /// ``restore(owner:)``, saying what it did: for audit records such as the
    /// guardian's after the daemon died.
    @discardableResult
    public func restoreReporting(owner: String? = nil) -> KnobRestoration {
        lock.withLock { _ in
            let all: [KnobJournalEntry]
            do { all = try storage.journalEntries(owner: nil) } catch {
                return KnobRestoration(failures: [KnobError(path: "(journal)", operation: "reading", errno: nil, detail: "\(error)")],
                                       journalError: "\(error)")
            }
            return restoreLocked(all.filter { owner == nil ? !$0.isOperatorRequest : $0.owner == owner }, journaled: all)
        }
    }

    /// Writes the journaled originals of `paths` back and forgets them (paths
    /// never journaled are skipped). Returns the failures.
    @discardableResult
    public func restore(paths: [String]) -> [KnobError] {
        lock.withLock { _ in
            let wanted = Set(paths)
            let all = (try? storage.journalEntries(owner: nil)) ?? []
            return restoreLocked(all.filter { wanted.contains($0.path) }, journaled: all).failures
        }
    }

    /// Restores `entries` (of the journal's `journaled`): knobs that can
    /// leave a task waiting in an OOM (memory.oom_control) first, then the
    /// rest, each in the order they were journaled (parents before children),
    /// zram swap devices last (swapoff brings their pages back: it may take
    /// seconds, and needs the memory the other knobs may free).
    /// An entry is forgotten only once it and the descendants that inherited
    /// from it are back.
    private func restoreLocked(_ entries: [KnobJournalEntry], journaled: [KnobJournalEntry]) -> KnobRestoration {
        var result = KnobRestoration()
        let journaledPaths = Set(journaled.map(\.path))
        let zram = entries.filter { ZramSwapRecord.isJournalKey($0.path) }
        let files = entries.filter { !ZramSwapRecord.isJournalKey($0.path) }
        let ordered = files.filter { InheritedKnob.rule(for: $0.path) != nil } + files.filter { InheritedKnob.rule(for: $0.path) == nil } + zram
        for entry in ordered {
            let back = Self.writeBack(entry, journaled: journaledPaths)
            result.inherited.append(contentsOf: back.inherited)
            result.failures.append(contentsOf: back.failures)
            guard back.complete else { continue }  // keep the entry, so the next restore sweeps again
            let vanished = back.vanished
            do { try storage.forgetJournal(path: entry.path) } catch {
                result.failures.append(KnobError(path: entry.path, operation: "forgetting the journal entry of", errno: nil, detail: "\(error)"))
                continue
            }
            if vanished { result.vanished.append(entry) } else { result.restored.append(entry) }
        }
        return result
    }

    /// What ``writeBack(_:journaled:)`` did for one entry.
    public struct WriteBack: Sendable {
        /// The knob's file is gone (its cgroup or process no longer exists).
        public var vanished = false
        /// Descendants reset because they had inherited mmpolicy's value (see ``InheritedKnob``).
        public var inherited: [KnobJournalEntry] = []
        public var failures: [KnobError] = []
        /// The entry and every inheritor are back: it may be forgotten.
        public var complete: Bool { failures.isEmpty }
    }

    /// Writes `entry`'s original back to its knob, and (for a knob that new
    /// cgroups copy from their parent) to the descendants that are not in
    /// `journaled` and still hold mmpolicy's value. Touches only the knob
    /// files, never the journal's storage: the caller forgets the entry once
    /// this is complete. A vanished knob is complete.
    public static func writeBack(_ entry: KnobJournalEntry, journaled: Set<String>) -> WriteBack {
        var result = WriteBack()
        if ZramSwapRecord.isJournalKey(entry.path) { return undoZramSwap(entry) }
        do throws(KnobError) {
            try Self.writeFile(entry.path, entry.original)
        } catch where error.errno == Errno.noSuchFileOrDirectory || error.errno == Errno.noSuchProcess {
            // The knob went away with its cgroup or process: nothing left to restore.
            result.vanished = true
            return result
        } catch {
            result.failures.append(error)
            return result
        }
        // The parent is back first, so a child made from now on copies the original.
        if let (knob, directory) = InheritedKnob.rule(for: entry.path), entry.original != knob.mmpolicyValue {
            for file in knob.inheritors(below: directory, journaled: journaled) {
                guard let text = try? String(contentsOfProcFile: file), knob.normalize(text) == knob.mmpolicyValue else { continue }
                do throws(KnobError) {
                    try Self.writeFile(file, entry.original)
                    result.inherited.append(KnobJournalEntry(path: file, original: entry.original, owner: entry.owner,
                                                             recordedNs: entry.recordedNs))
                } catch where error.errno == Errno.noSuchFileOrDirectory {
                    // Removed meanwhile.
                } catch {
                    result.failures.append(error)
                }
            }
        }
        return result
    }

    /// Tears down the zram swap device `entry` records. A device that is gone,
    /// or no longer holds the swap area mmpolicy made (someone reset or
    /// reused it), counts as vanished and is left alone.
    static func undoZramSwap(_ entry: KnobJournalEntry) -> WriteBack {
        var result = WriteBack()
        guard let record = ZramSwapRecord(entry) else {
            result.failures.append(KnobError(path: entry.path, operation: "reading the zram swap record of", errno: nil,
                                             detail: "'\(entry.original)' is not one this mmpolicy wrote; the entry stays"))
            return result
        }
        do throws(ZramError) {
            if case .gone = try ZramSwapSetup.tearDown(record) { result.vanished = true }
        } catch {
            result.failures.append(KnobError(path: entry.path, operation: "tearing down", errno: error.errno, detail: error.description))
        }
        return result
    }

    /// Runs `body` with the journal's storage under the journal's lock, so
    /// that no write, restore or other transaction runs meanwhile: for a
    /// change made of several steps and journal operations (``ZramSwapSetup``).
    public func transaction<T: Sendable, E: Error>(_ body: (borrowing KnobJournalTransaction) throws(E) -> T) throws(E) -> T {
        let storage = self.storage
        return try lock.withLock { _ throws(E) -> T in
            try body(KnobJournalTransaction(storage: storage))
        }
    }

    /// Forgets the journal entries of `paths` (knobs already written back by
    /// the caller). Returns the failures; those entries stay journaled.
    @discardableResult
    public func forget(paths: [String]) -> [KnobError] {
        lock.withLock { _ in
            var failures: [KnobError] = []
            for path in paths {
                do { try storage.forgetJournal(path: path) } catch {
                    failures.append(KnobError(path: path, operation: "forgetting the journal entry of", errno: nil, detail: "\(error)"))
                }
            }
            return failures
        }
    }

    /// The journaled original of `path`, if any (nil also when the journal
    /// cannot be read: see ``storedOriginal(of:)``).
    public func original(of path: String) -> String? {
        try? storedOriginal(of: path)
    }

    /// The journaled original of `path`: nil if it is not journaled; throws
    /// when the journal cannot be read, which is not the same thing.
    public func storedOriginal(of path: String) throws(KnobError) -> String? {
        do {
            return try storage.journalEntries(owner: nil).first { $0.path == path }?.original
        } catch {
            throw KnobError(path: "(journal)", operation: "reading the original of \(path) from", errno: nil, detail: "\(error)")
        }
    }

    /// Journaled knobs, optionally only `owner`'s.
    public func entries(owner: String? = nil) -> [KnobJournalEntry] {
        (try? storage.journalEntries(owner: owner)) ?? []
    }

    public static let trimmedText: OriginalReader = { text in
        String(text.drop(while: { $0 == " " || $0 == "\n" }).reversed().drop(while: { $0 == " " || $0 == "\n" }).reversed())
    }

    static func writeFile(_ path: String, _ value: String) throws(KnobError) {
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(FilePath(path), .writeOnly, options: [.closeOnExec, .truncate]) } catch {
            throw KnobError(path: path, operation: "opening", errno: error as? Errno, detail: "")
        }
        defer { try? fd.close() }
        do { _ = try fd.writeAll(value.utf8) } catch {
            throw KnobError(path: path, operation: "writing '\(value)' to", errno: error as? Errno, detail: "")
        }
    }
}

/// Journal storage that lives only as long as the process: for tools and
/// tests that have no state directory.
public final class InMemoryKnobJournalStorage: KnobJournalStorage {
    private let entriesByPath = Mutex<[String: KnobJournalEntry]>([:])

    public init() {}

    /// Storage holding `entries` (the first of a path wins), e.g. entries
    /// salvaged from a damaged database, to restore them through a
    /// ``KnobJournal``.
    public init(entries: [KnobJournalEntry]) {
        var byPath: [String: KnobJournalEntry] = [:]
        for entry in entries where byPath[entry.path] == nil { byPath[entry.path] = entry }
        entriesByPath.withLock { $0 = byPath }
    }

    public func journalOriginal(path: String, original: String, owner: String) throws -> Bool {
        entriesByPath.withLock { entries in
            guard entries[path] == nil else { return false }
            entries[path] = KnobJournalEntry(path: path, original: original, owner: owner, recordedNs: 0)
            return true
        }
    }

    public func journalEntries(owner: String?) throws -> [KnobJournalEntry] {
        entriesByPath.withLock { entries in
            // In the order they were recorded, as the state store returns them (ties by path).
            entries.values.filter { owner == nil || $0.owner == owner }
                .sorted { ($0.recordedNs, $0.path) < ($1.recordedNs, $1.path) }
        }
    }

    public func forgetJournal(path: String) throws {
        entriesByPath.withLock { _ = $0.removeValue(forKey: path) }
    }
}
