#if canImport(Glibc)
import Glibc
#endif

/// A thread of its own that does a decision thread's knob journaling: it
/// takes "journal the original of X, then write X" and "forget X" jobs, runs
/// them in the order they were sent, and hands each result to a completion
/// (which runs on the worker's thread, typically sending it back to the
/// sender's ``CommandLoop``).
///
/// It exists so that the thread that decides (the OOM engine's) never waits
/// on SQLite: the journal's durable write can wait seconds behind a lock held
/// by someone else on the database (busy timeout), and an OOM must not wait
/// with it. The guarantee of ``KnobJournal`` is kept: a write job writes the
/// knob only after its original is journaled, and not at all when journaling
/// failed. Restoring is the sender's: it writes the original back itself
/// (``KnobJournal/writeBack(_:journaled:)``, a file write) and sends a forget
/// job, which the worker runs after every job sent before it.
///
/// Every job's completion runs exactly once: after the job, or at once on the
/// caller's thread when the worker has stopped (a write is then not done:
/// its completion gets a ``KnobError``). ``stop()`` runs the jobs already
/// queued before it returns.
public final class KnobJournalWorker: Sendable {
    public typealias WriteCompletion = @Sendable (Result<KnobJournalEntry, KnobError>) -> Void
    public typealias ForgetCompletion = @Sendable ([KnobError]) -> Void

    enum Job: Sendable {
        case write(value: String, path: String, owner: String, original: KnobJournal.OriginalReader, then: WriteCompletion)
        case forget(paths: [String], then: ForgetCompletion)
    }

    public let journal: KnobJournal
    private let loop: CommandLoop<Job>

    public init(journal: KnobJournal, threadName: String = "mmpolicy-journal",
                role: String = "the knob journal's worker thread") throws(SystemCallError) {
        self.journal = journal
        self.loop = try CommandLoop(threadName: threadName, role: role)
    }

    /// Starts the thread. Jobs sent before wait for it.
    public func start() throws(SystemCallError) {
        let journal = self.journal
        try loop.start { loop in
            while true {
                let batch = loop.takeCommands()
                for job in batch.commands { Self.run(job, journal) }
                if batch.stopping { break }
                loop.wait(timeoutMs: -1)
            }
        }
    }

    /// Runs the jobs already queued, then ends the thread. Jobs sent from now
    /// on are refused (their completion runs at once).
    public func stop() { loop.stop() }

    /// Queues: journal `path`'s current value (as `original` reads it) under
    /// `owner`, durably, and only then write `value` to it; `then` gets the
    /// journal entry the knob is to be restored from, or why nothing was
    /// written.
    public func write(_ value: String, to path: String, owner: String,
                      original: @escaping KnobJournal.OriginalReader = KnobJournal.trimmedText,
                      then: @escaping WriteCompletion) {
        if !loop.send(.write(value: value, path: path, owner: owner, original: original, then: then)) {
            then(.failure(KnobError(path: path, operation: "writing", errno: nil, detail: "the knob journal's worker has stopped")))
        }
    }

    /// Queues: forget the journal entries of `paths` (the caller has written
    /// their originals back). With no paths it is a barrier: `then` runs once
    /// every job sent before has run.
    public func forget(paths: [String], then: @escaping ForgetCompletion = { _ in }) {
        if !loop.send(.forget(paths: paths, then: then)) { then([]) }
    }

    /// Runs `then` (on the worker's thread) once every job sent before has run.
    public func barrier(_ then: @escaping @Sendable () -> Void) {
        forget(paths: []) { _ in then() }
    }

    static func run(_ job: Job, _ journal: KnobJournal) {
        switch job {
        case .write(let value, let path, let owner, let original, let then):
            then(Result { () throws(KnobError) in try journal.writeReporting(value, to: path, owner: owner, original: original) })
        case .forget(let paths, let then):
            then(paths.isEmpty ? [] : journal.forget(paths: paths))
        }
    }
}
