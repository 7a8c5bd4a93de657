#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore
import Synchronization

/// A policy that cannot be attached to the OOM engine.
public struct OOMAttachError: Error, Sendable, CustomStringConvertible {
    public var policy: String
    public var reason: String
    public var fix: String
    public var description: String { "policy '\(policy)' cannot be attached: \(reason). \(fix)." }
}

/// Runs every loaded oom policy's decision points: it waits for OOM events
/// (cgroup v1 eventfds, cgroup v2 memory.events and memory.pressure, system
/// memory shortage woken by the in-kernel sensors and PSI), asks the policy
/// that governs the scope, validates its answer and kills, or hands the OOM
/// to the kernel and records why.
///
/// All of it happens on one dedicated thread, never on the Swift
/// concurrency pool: the path from event to SIGKILL takes no locks the
/// control plane holds and never waits for SQLite. Attach and detach are
/// commands the thread carries out between events. Knob writes that need a
/// journal entry first go through a journal worker thread, which answers
/// through the command queue (see `OOMEngineLoop+Journal`).
public final class OOMEngine: KindEngine {
    enum Command: Sendable {
        case attach(OOMPolicyInstance, CommandReply<Result<Void, OOMAttachError>>)
        case detach(String, CommandReply<Void>)
        /// The journal worker's answer to a journal-then-write job.
        case journaled(KnobWriteTag, path: String, Result<KnobJournalEntry, KnobError>)
        /// Runs on the engine's thread after every command sent before it
        /// (see ``OOMEngineLoop/afterJournalSettles(_:)``).
        case settled(@Sendable () -> Void)
        /// An attached policy's journal jobs are answered: it is answered
        /// now, refused if its knobs could not be journaled.
        case attachSettled(String, CommandReply<Result<Void, OOMAttachError>>)
    }

    /// What a journal-then-write job was for.
    enum KnobWriteTag: Sendable {
        /// memory.oom_control of a v1 memcg (the memcg's path): oom_kill_disable=1.
        case memcg(String)
        /// oom_score_adj 1000 on a v2 policy's current choice.
        case steer(policy: String, pid: Int32)
    }

    let environment: KindEnvironment
    /// The daemon's sensor object (sensors/oom_sensors.bpf.o on the object
    /// search path); nil = none, and system scope polls.
    let sensorObjectPath: String?
    /// The engine's thread and its command queue.
    let loop: CommandLoop<Command>
    /// Per attached policy, counted by the engine thread.
    let health = DecisionHealthBoard()
    /// Per attached policy, why it is not wholly in force (written by the
    /// engine thread, read for `status`).
    let problemBoard = Mutex<[String: [String]]>([:])
    /// Journals and writes the knobs the engine changes, so that the
    /// engine's thread never waits on SQLite.
    let journalWorker: KnobJournalWorker

    public init(environment: KindEnvironment) throws(SystemCallError) {
        self.environment = environment
        self.sensorObjectPath = OOMSensors.locate(searchPath: environment.objectSearchPath)
        self.loop = try CommandLoop(threadName: "mmpolicy-oom", role: "the OOM engine thread")
        self.journalWorker = try KnobJournalWorker(journal: environment.journal, threadName: "mmpolicy-oomjnl",
                                                   role: "the OOM engine's knob journal thread")
    }

    /// Starts the engine thread.
    public func start() throws {
        let engine = self
        try journalWorker.start()
        try loop.start { loop in OOMEngineLoop(engine: engine, loop: loop).run() }
    }

    /// Attaches a loaded policy: sets up its decision points (on v1, in
    /// enforce mode, disables the kernel killer on its memcgs, journaled).
    public func attach(_ attachment: PolicyAttachment) async throws {
        try await attach(OOMPolicyInstance(attachment: attachment, daemonPID: environment.daemonPID, mount: environment.mount))
    }

    /// Attaches an oom policy instance (tests and benchmarks build their own).
    public func attach(_ instance: OOMPolicyInstance) async throws(OOMAttachError) {
        guard let result = await loop.request({ .attach(instance, $0) }) else {
            throw OOMAttachError(policy: instance.name, reason: "the OOM engine has stopped",
                                 fix: "The daemon is shutting down; load the policy again once it has restarted")
        }
        try result.get()
    }

    /// Detaches policy `name`, restoring every knob it changed. (A stopped
    /// engine has detached everything already.)
    public func detach(name: String) async {
        _ = await loop.request { .detach(name, $0) }
    }

    /// How policy `name`'s decisions have gone since it was attached; nil if
    /// it is not attached. Kernel kills in a scope the policy enforces count
    /// as its actions.
    public func health(of name: String) -> DecisionHealth? { health.health(of: name) }

    /// The memcgs of policy `name` whose kernel OOM killer is left on
    /// because the knob journal could not be written, one sentence each.
    public func problems(of name: String) -> [String] { problemBoard.withLock { $0[name] ?? [] } }

    /// Detaches everything, restores every knob and stops the thread. The
    /// journal worker stops after the engine's thread: it forgets what the
    /// engine restored, and puts back what it journaled and wrote once the
    /// engine could no longer take it.
    public func stop() {
        loop.stop()
        journalWorker.stop()
    }
}
