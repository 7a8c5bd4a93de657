import BPFKit
import MMPolicyCore
import MMPolicyTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The journal worker that keeps the OOM engine's thread off SQLite.
@Suite struct KnobJournalWorkerTests {
    /// Storage that logs what happens to it, and whose journal writes can be
    /// made to block (a lock held elsewhere) or fail.
    final class ScriptedStorage: KnobJournalStorage {
        let inner = InMemoryKnobJournalStorage()
        let lines = Mutex<[String]>([])
        let failing = Mutex(false)
        let gate = Mutex(false)  // true: journal writes wait until it is false again

        var log: [String] { lines.withLock { $0 } }
        struct Locked: Error {}

        func journalOriginal(path: String, original: String, owner: String) throws -> Bool {
            while gate.withLock({ $0 }) { usleep(1000) }
            if failing.withLock({ $0 }) {
                lines.withLock { $0.append("journal-failed \(path)") }
                throw Locked()
            }
            // The knob must still hold its original when its journal entry is written.
            let text = (try? readFile(path)) ?? "?"
            lines.withLock { $0.append("journal \(path) original=\(original) knob=\(text)") }
            return try inner.journalOriginal(path: path, original: original, owner: owner)
        }
        func journalEntries(owner: String?) throws -> [KnobJournalEntry] { try inner.journalEntries(owner: owner) }
        func forgetJournal(path: String) throws {
            lines.withLock { $0.append("forget \(path)") }
            try inner.forgetJournal(path: path)
        }
    }

    @Test func journalsBeforeWritingAndReportsTheEntry() async throws {
        let scratch = try ScratchDirectory()
        let knob = try scratch.write("knob", "5\n")
        let storage = ScriptedStorage()
        let worker = try KnobJournalWorker(journal: KnobJournal(storage: storage))
        try worker.start()
        defer { worker.stop() }
        let result = await withCheckedContinuation { continuation in
            worker.write("7", to: knob, owner: "p") { continuation.resume(returning: $0) }
        }
        let entry = try result.get()
        #expect(entry.original == "5" && entry.owner == "p" && entry.path == knob)
        #expect(storage.log == ["journal \(knob) original=5 knob=5\n"], "journaled while the knob still held its original")
        #expect(try readFile(knob) == "7")
        // A second write keeps the first original and reports it.
        let again = await withCheckedContinuation { continuation in
            worker.write("9", to: knob, owner: "q") { continuation.resume(returning: $0) }
        }
        #expect(try again.get().original == "5" && again.get().owner == "p")
    }

    @Test func aFailedJournalWriteMeansNoKnobWriteAndTheSenderIsTold() async throws {
        let scratch = try ScratchDirectory()
        let knob = try scratch.write("knob", "0")
        let storage = ScriptedStorage()
        storage.failing.withLock { $0 = true }
        let worker = try KnobJournalWorker(journal: KnobJournal(storage: storage))
        try worker.start()
        defer { worker.stop() }
        let result = await withCheckedContinuation { continuation in
            worker.write("1", to: knob, owner: "p") { continuation.resume(returning: $0) }
        }
        guard case .failure(let error) = result else { Issue.record("the write was reported done"); return }
        #expect(error.description.contains("journaling the original of"), "\(error)")
        #expect(try readFile(knob) == "0", "no journal entry, no write")
        let entries = try storage.inner.journalEntries(owner: nil)
        #expect(entries.isEmpty)
    }

    @Test func jobsRunInOrderOffTheSendersThreadAndForgetFollowsEarlierWrites() async throws {
        let scratch = try ScratchDirectory()
        let a = try scratch.write("a", "0"), b = try scratch.write("b", "0")
        let storage = ScriptedStorage()
        let worker = try KnobJournalWorker(journal: KnobJournal(storage: storage))
        try worker.start()
        // The database is "locked": sending must not wait for it.
        storage.gate.withLock { $0 = true }
        let done = Mutex<[String]>([])
        let start = monotonicNanoseconds()
        worker.write("1", to: a, owner: "p") { result in done.withLock { $0.append("a \((try? result.get()) != nil)") } }
        worker.write("1", to: b, owner: "p") { result in done.withLock { $0.append("b \((try? result.get()) != nil)") } }
        worker.forget(paths: [a]) { errors in done.withLock { $0.append("forget a \(errors.count)") } }
        #expect(monotonicNanoseconds() - start < 50_000_000, "send returns at once")
        usleep(100_000)
        #expect(try done.withLock { $0 }.isEmpty && readFile(a) == "0", "nothing written while the journal waits")
        storage.gate.withLock { $0 = false }
        await withCheckedContinuation { continuation in worker.barrier { continuation.resume() } }
        #expect(done.withLock { $0 } == ["a true", "b true", "forget a 0"])
        #expect(storage.log.map { $0.split(separator: " ").prefix(2).joined(separator: " ") }
                == ["journal \(a)", "journal \(b)", "forget \(a)"])
        let left = try storage.inner.journalEntries(owner: nil).map(\.path)
        #expect(left == [b])
        // Stopped: a write is refused and reported, and nothing is written.
        worker.stop()
        let refused = Mutex<Bool?>(nil)
        let c = try scratch.write("c", "0")
        worker.write("1", to: c, owner: "p") { result in refused.withLock { $0 = (try? result.get()) == nil } }
        #expect(try refused.withLock { $0 } == true && readFile(c) == "0")
    }
}
