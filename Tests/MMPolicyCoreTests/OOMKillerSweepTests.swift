import MMPolicyCore
import MMPolicyTestSupport
import Testing

/// The fallback for a knob journal that cannot be read: the kernel OOM
/// killer back on in every memcg under the given roots where it is off, and
/// nothing else touched.
@Suite struct OOMKillerSweepTests {
    /// memory.oom_control files as cgroup v1 lays them out (directory -> killer off).
    func tree(_ scratch: ScratchDirectory, _ disabled: [String: Bool]) throws {
        for (directory, off) in disabled.sorted(by: { $0.key < $1.key }) {
            _ = try scratch.makeDirectory(directory)
            _ = try scratch.write(directory + "/memory.oom_control", "oom_kill_disable \(off ? 1 : 0)\nunder_oom 0\noom_kill 0\n")
        }
    }

    @Test func killersOffUnderTheRootsAreTurnedBackOnAndNothingElse() throws {
        let scratch = try ScratchDirectory()
        try tree(scratch, ["a": true, "a/x": true, "a/y": false, "a/x/deep": true, "b": true, "c": true])
        let root = scratch.path
        let result = OOMKillerSweep.run(roots: [root + "/a", root + "/a/x", root + "/c/", root + "/missing"])
        #expect(result.reset == [root + "/a", root + "/a/x", root + "/a/x/deep", root + "/c"], "parents first, each once")
        #expect(result.examined == 5)
        #expect(result.failures.isEmpty)
        #expect(try readFile(root + "/a/memory.oom_control") == "0")
        #expect(try readFile(root + "/a/y/memory.oom_control").hasPrefix("oom_kill_disable 0"), "on already: not written")
        #expect(try readFile(root + "/b/memory.oom_control").hasPrefix("oom_kill_disable 1"), "outside the roots: untouched")
    }

    struct Unreadable: Error, CustomStringConvertible { var description: String { "disk I/O error" } }

    /// Storage whose every read and write fails.
    final class BrokenStorage: KnobJournalStorage {
        func journalOriginal(path: String, original: String, owner: String) throws -> Bool { throw Unreadable() }
        func journalEntries(owner: String?) throws -> [KnobJournalEntry] { throw Unreadable() }
        func forgetJournal(path: String) throws { throw Unreadable() }
    }

    @Test func aJournalThatCannotBeReadSaysSoAndAWriteIsNotDone() throws {
        let scratch = try ScratchDirectory()
        let knob = try scratch.write("memory.oom_control", "oom_kill_disable 0\n")
        let journal = KnobJournal(storage: BrokenStorage())
        let restoration = journal.restoreReporting()
        #expect(restoration.journalError == "disk I/O error")
        #expect(restoration.restored.isEmpty)
        #expect(throws: KnobError.self) { try journal.storedOriginal(of: knob) }
        #expect(journal.original(of: knob) == nil)
        #expect(throws: KnobError.self) { try journal.write("1", to: knob, owner: "p") }
        #expect(try readFile(knob) == "oom_kill_disable 0\n", "the knob is not changed when its original cannot be journaled")
    }

    @Test func salvagedEntriesRestoreInTheOrderTheyWereRecorded() throws {
        let scratch = try ScratchDirectory()
        let a = try scratch.write("a", "9"), b = try scratch.write("b", "9")
        let storage = InMemoryKnobJournalStorage(entries: [
            KnobJournalEntry(path: b, original: "2", owner: "p", recordedNs: 1),
            KnobJournalEntry(path: a, original: "1", owner: "p", recordedNs: 2),
            KnobJournalEntry(path: a, original: "x", owner: "q", recordedNs: 3),
        ])
        let restoration = KnobJournal(storage: storage).restoreReporting()
        #expect(restoration.restored.map(\.path) == [b, a])
        #expect(try readFile(a) == "1" && readFile(b) == "2")
    }
}
