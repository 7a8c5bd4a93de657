import MMPolicyCore

/// Where the daemon listens, keeps its state and finds policies, and which kinds it runs.
public struct DaemonConfiguration: Sendable {
    public var socketPath: String
    public var stateDirectory: String
    /// The policy manifests' directory (names in `mmpolicy load NAME` resolve here).
    public var policyDirectory: String
    public var objectSearchPath: ObjectSearchPath
    /// The set loaded on first start (default: `<policyDirectory>/default.toml`, if present).
    public var defaultSetPath: String?
    /// Where BPF objects are pinned while loaded.
    public var pinDirectory: String
    /// The watchdog's sampling window, milliseconds.
    public var watchdogWindowMs: Int
    /// The policy kinds this daemon runs: one engine each.
    public var kinds: KindRegistry
    /// The mmpolicy executable the guardian is started from (`guardian` subcommand).
    public var guardianExecutable: String
    /// Whether the daemon owns its process: it then locks its memory
    /// (mlockall) and tunes malloc. A daemon run inside another program (the
    /// fixture-kind test) leaves the host process's memory alone.
    public var ownsProcess: Bool
    /// How long the audit trail keeps events (default: 30 days, 100,000 events).
    public var eventRetention: EventRetention
    /// Whether events the daemon is not responsible for are recorded too:
    /// kernel OOM kills in memory cgroups no loaded policy governs (default: no).
    public var recordsUngovernedEvents: Bool

    public init(socketPath: String = DaemonDefaults.socketPath, stateDirectory: String = DaemonDefaults.stateDirectory,
                policyDirectory: String, objectSearchPath: ObjectSearchPath? = nil, defaultSetPath: String? = nil,
                pinDirectory: String = DaemonDefaults.pinDirectory, watchdogWindowMs: Int = 1000,
                kinds: KindRegistry, guardianExecutable: String = "/proc/self/exe", ownsProcess: Bool = true,
                eventRetention: EventRetention = .standard, recordsUngovernedEvents: Bool = false) {
        self.socketPath = socketPath
        self.stateDirectory = stateDirectory
        self.policyDirectory = policyDirectory
        self.objectSearchPath = objectSearchPath ?? .standard(policyDirectory: policyDirectory)
        self.defaultSetPath = defaultSetPath
        self.pinDirectory = pinDirectory
        self.watchdogWindowMs = watchdogWindowMs
        self.kinds = kinds
        self.guardianExecutable = guardianExecutable
        self.ownsProcess = ownsProcess
        self.eventRetention = eventRetention
        self.recordsUngovernedEvents = recordsUngovernedEvents
    }
}
