import BPFKit

/// What the daemon hands every kind's engine: the knob journal (write a
/// kernel knob only through it), the memory cgroup mount, where BPF objects
/// are (for the kind's own sensors), the daemon's pid (never a target), and
/// where to send records and diagnostics.
public struct KindEnvironment: Sendable {
    public var journal: KnobJournal
    public var mount: MemoryCgroupMount?
    public var objectSearchPath: ObjectSearchPath
    public var daemonPID: Int32
    /// Receives every decision and event the engine records. Never blocks:
    /// it queues for a writer thread, so it may be called on a decision path.
    public var record: @Sendable (EventRecord) -> Void
    /// Receives diagnostics for the daemon's log.
    public var log: @Sendable (String) -> Void
    /// The kind's one-line rendering of its decisions (its definition's
    /// `summarize`), the line `mmpolicy events` and `status` print.
    public var summarize: @Sendable (DecisionRecord) -> String
    /// Whether to record events of no loaded policy, such as a kernel OOM
    /// kill in a memory cgroup no policy governs (`mmpolicy daemon
    /// --record-ungoverned-kills`). Off by default: the audit trail holds
    /// what the daemon is responsible for.
    public var recordsUngovernedEvents: Bool
    /// The board of memcgs whose kernel OOM killer an engine holds off
    /// (cgroup v1): the guardian watches them from outside the daemon and
    /// hands an OOM that outlives its bound to the kernel. nil: nobody
    /// watches (an engine run outside the daemon, in tests).
    public var oomHolds: OOMHoldBoard?

    public init(journal: KnobJournal, mount: MemoryCgroupMount?, objectSearchPath: ObjectSearchPath, daemonPID: Int32,
                record: @escaping @Sendable (EventRecord) -> Void, log: @escaping @Sendable (String) -> Void,
                summarize: @escaping @Sendable (DecisionRecord) -> String = { $0.envelopeSummary },
                recordsUngovernedEvents: Bool = false, oomHolds: OOMHoldBoard? = nil) {
        self.journal = journal
        self.mount = mount
        self.objectSearchPath = objectSearchPath
        self.daemonPID = daemonPID
        self.record = record
        self.log = log
        self.summarize = summarize
        self.recordsUngovernedEvents = recordsUngovernedEvents
        self.oomHolds = oomHolds
    }

    /// Whether an event observed in the system (a kernel kill, say) that
    /// policy `governing` is responsible for (nil: none) should be recorded.
    public func shouldRecord(governedBy governing: String?) -> Bool {
        Self.shouldRecord(governedBy: governing, recordsUngovernedEvents: recordsUngovernedEvents)
    }

    /// ``shouldRecord(governedBy:)`` as a pure decision.
    public static func shouldRecord(governedBy governing: String?, recordsUngovernedEvents: Bool) -> Bool {
        governing != nil || recordsUngovernedEvents
    }

    /// Records `decision` of policy `policy` as a decision event, summarized
    /// by the kind. Never blocks.
    public func recordDecision(_ decision: DecisionRecord, policy: String) {
        record(EventRecord(timeNs: wallClockNanoseconds(), type: .decision, policy: policy, summary: summarize(decision),
                           decision: decision))
    }
}

extension DecisionRecord {
    /// A line from the envelope alone, for a kind that renders nothing of
    /// its own: "period in system: fell-back: the policy made no decision".
    public var envelopeSummary: String {
        "\(trigger) in \(origin): \(outcome.rawValue)\(mode == .observe ? " (observe)" : "")\(detail.isEmpty ? "" : ": \(detail)")"
    }
}

/// A loaded, verified policy handed to its kind's engine: the object (its
/// callbacks ready for BPF_PROG_RUN, its sensors not yet attached), the name
/// it is loaded under, where it applies and how it runs.
///
/// `@unchecked Sendable`: after loading, the BPF object is only read, and
/// program and map descriptors may be used from any thread; the engine runs
/// callbacks from its own thread.
public final class PolicyAttachment: @unchecked Sendable {
    public let policy: Policy
    public let name: String
    public let scope: ResolvedScope
    public let mode: PolicyMode

    public init(policy: Policy, name: String, scope: ResolvedScope, mode: PolicyMode) {
        self.policy = policy
        self.name = name
        self.scope = scope
        self.mode = mode
    }

    /// The manifest's settings (guards, protect list, the kind's own sections), if it came with one.
    public var manifest: Manifest? { policy.manifest }
}

/// A kind's runtime: one per daemon, made by the kind's definition, it owns
/// the kind's decision points (threads, sensors, timers), runs the attached
/// policies' callbacks there, validates and carries out their decisions,
/// records them, and counts their ``DecisionHealth``.
///
/// The daemon calls `start()` once before any attach and `stop()` once after
/// every policy is detached. Attach and detach may be called from any task;
/// an engine carries them out on its own thread between decisions. Nothing
/// on a decision path may wait on the database, the control socket or a
/// lock another thread holds for longer than a copy.
public protocol KindEngine: AnyObject, Sendable {
    /// Starts the engine's thread(s) and sensors.
    func start() throws
    /// Sets up `attachment`'s decision points on its scope (journaling every
    /// knob before changing it). Throws a one-paragraph error naming the
    /// policy, what is wrong and the fix; then nothing is left attached.
    func attach(_ attachment: PolicyAttachment) async throws
    /// Tears down policy `name`'s decision points and restores every knob it
    /// changed; records still pending for it are written. Unknown names are ignored.
    func detach(name: String) async
    /// How `name`'s decisions have gone since it was attached; nil if it is
    /// not attached. Called on the watchdog's thread: cheap, never blocks.
    func health(of name: String) -> DecisionHealth?
    /// Detaches whatever is still attached and stops the engine's threads.
    func stop()
    /// Why attached policy `name` is not wholly in force as its mode says,
    /// one sentence each (e.g. a memcg where the kernel's mechanism was left
    /// on because the knob journal could not be written); empty when it is,
    /// or when `name` is not attached. Called for `status`: cheap, never blocks.
    func problems(of name: String) -> [String]
    /// Maps the engine owns (its sensors') that a policy of its kind uses by
    /// name: map name -> descriptor. Before a policy object is loaded, each
    /// of its maps with such a name is made that map (``BPFMap/reuse(fd:)``),
    /// so policies read what the engine's sensors count. Empty by default.
    var sharedMaps: [String: Int32] { get }
    /// What attached policy `name` has done, in the kind's own figures, for
    /// `status` (e.g. bytes moved); empty by default. Cheap, never blocks.
    func figures(of name: String) -> [KindFigure]
}

extension KindEngine {
    /// A kind that cannot fall short of its mode reports nothing.
    public func problems(of name: String) -> [String] { [] }
    /// A kind without maps of its own to share shares none.
    public var sharedMaps: [String: Int32] { [:] }
    /// A kind without figures of its own reports none.
    public func figures(of name: String) -> [KindFigure] { [] }
}
