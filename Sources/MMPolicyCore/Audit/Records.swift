/// One entry of the audit trail: a lifecycle event (loaded, unloaded,
/// load failed, daemon start/stop) or a decision and what came of it.
///
/// The same value is stored in the state database, sent over the control
/// socket and printed by `mmpolicy events`, so the three cannot disagree.
public struct EventRecord: Codable, Sendable, Equatable {
    /// What happened.
    public enum EventType: String, Codable, Sendable, CaseIterable {
        case daemonStart = "daemon-start"
        case daemonStop = "daemon-stop"
        case loaded
        case unloaded
        case loadFailed = "load-failed"
        /// A policy's decision (carried out, observed, rejected, or fallen back).
        case decision
        /// The kernel's own OOM killer chose a victim (`oom:mark_victim`).
        case kernelKill = "kernel-kill"
        /// A knob restored, a fallback cleared, anything else worth keeping.
        case note
        /// The watchdog ejected a policy: a guard tripped (`exit` says which).
        case exit
    }

    /// Row id in the store; 0 before it is stored.
    public var id: Int64
    /// Wall-clock time, nanoseconds since the Unix epoch.
    public var timeNs: Int64
    public var type: EventType
    /// The policy concerned; nil for daemon-wide events.
    public var policy: String?
    /// One line a person can read.
    public var summary: String
    /// Set for `.decision` events.
    public var decision: DecisionRecord?
    /// Set for `.exit` events.
    public var exit: PolicyExit?

    public init(id: Int64 = 0, timeNs: Int64, type: EventType, policy: String?, summary: String,
                decision: DecisionRecord? = nil, exit: PolicyExit? = nil) {
        self.id = id
        self.timeNs = timeNs
        self.type = type
        self.policy = policy
        self.summary = summary
        self.decision = decision
        self.exit = exit
    }
}

/// Why the watchdog ejected a policy, like sched_ext's exit info: which
/// guard tripped, the values it saw over the windows that tripped it, the
/// threshold, what was restored, and until when the policy may not be
/// loaded again without --force.
public struct PolicyExit: Codable, Sendable, Equatable {
    /// The guard's manifest key (`[guards]`), e.g. "max_kills_per_minute".
    public var guardName: String
    /// The signal it reads, e.g. "kills_per_minute".
    public var metric: String
    /// "above" or "below": which side of the threshold is a breach.
    public var comparison: String
    public var threshold: Double
    /// The metric in each breached window, oldest first.
    public var values: [Double]
    /// Consecutive breached windows that tripped the guard.
    public var windows: Int
    /// Length of one window, seconds.
    public var windowSeconds: Double
    /// One line, e.g. "refault_ratio 0.83, 0.91, 0.88 above 0.50 for 3 consecutive 1 s windows".
    public var description: String
    /// Knobs the policy had changed, restored on ejection ("path=original").
    public var restoredKnobs: [String]
    /// Wall-clock ns until which `mmpolicy load` refuses the policy without --force.
    public var cooldownUntilNs: Int64

    public init(guardName: String, metric: String, comparison: String, threshold: Double, values: [Double],
                windows: Int, windowSeconds: Double, description: String, restoredKnobs: [String],
                cooldownUntilNs: Int64) {
        self.guardName = guardName
        self.metric = metric
        self.comparison = comparison
        self.threshold = threshold
        self.values = values
        self.windows = windows
        self.windowSeconds = windowSeconds
        self.description = description
        self.restoredKnobs = restoredKnobs
        self.cooldownUntilNs = cooldownUntilNs
    }
}

/// What one decision point asked, what the policy answered, what mmpolicy
/// did about it and how long each step took.
public struct DecisionRecord: Codable, Sendable, Equatable {
    /// How the decision ended.
    public enum Outcome: String, Codable, Sendable, CaseIterable {
        /// Validated and carried out (the victim was killed).
        case enforced
        /// Observe mode: recorded, not carried out.
        case observed
        /// Failed validation: a strike; the OOM went to the kernel.
        case rejected
        /// The policy declined, erred or missed its deadline; the OOM went to the kernel.
        case fallback
    }

    /// `OOMTrigger` name: memcg-oom, pressure, low-memory, test.
    public var trigger: String
    /// The scope the policy is attached to.
    public var scope: String
    /// Where the trigger fired (the memcg under OOM, or "system").
    public var origin: String
    public var outcome: Outcome
    /// Why it was rejected or fell back; empty when enforced or observed.
    public var detail: String
    public var candidates: Int
    public var victimPID: Int32?
    public var victimComm: String?
    /// The victim cgroup's path when the policy asked to kill a whole group.
    public var victimCgroup: String?
    public var score: Int64?
    public var reason: String?
    /// Resident memory of the victim(s) just before the kill, bytes.
    public var victimRSSBytes: UInt64?
    /// Observe mode: the pid the kernel's killer chose for this OOM, if seen.
    public var kernelVictimPID: Int32?
    /// What woke the daemon for it: "memcg-eventfd", "rss-budget",
    /// "direct-reclaim", "kswapd-wake", "psi", "memory-events" or "poll".
    public var wokenBy: String?
    public var latency: Latency

    /// Microseconds from the trigger (the moment the daemon saw it) to each step;
    /// nil for steps that did not happen.
    public struct Latency: Codable, Sendable, Equatable {
        /// The kernel event that woke the daemon (a sensor's time stamp) ->
        /// the daemon awake; nil when no sensor woke it.
        public var wakeUs: Double?
        /// Trigger seen -> select_victim returned.
        public var decisionUs: Double?
        /// Time inside the BPF callback alone, as BPF_PROG_RUN measured it.
        public var callbackUs: Double?
        /// Trigger seen -> SIGKILL sent.
        public var killUs: Double?
        /// Trigger seen -> process_mrelease returned (the victim's memory is free).
        public var releasedUs: Double?
        /// Trigger seen -> the OOM condition cleared (v1: under_oom back to 0).
        public var clearedUs: Double?

        public init(decisionUs: Double? = nil, callbackUs: Double? = nil, killUs: Double? = nil,
                    releasedUs: Double? = nil, clearedUs: Double? = nil, wakeUs: Double? = nil) {
            self.wakeUs = wakeUs
            self.decisionUs = decisionUs
            self.callbackUs = callbackUs
            self.killUs = killUs
            self.releasedUs = releasedUs
            self.clearedUs = clearedUs
        }
    }

    public init(trigger: String, scope: String, origin: String, outcome: Outcome, detail: String = "",
                candidates: Int = 0, victimPID: Int32? = nil, victimComm: String? = nil,
                victimCgroup: String? = nil, score: Int64? = nil, reason: String? = nil,
                victimRSSBytes: UInt64? = nil, kernelVictimPID: Int32? = nil, latency: Latency = .init()) {
        self.trigger = trigger
        self.scope = scope
        self.origin = origin
        self.outcome = outcome
        self.detail = detail
        self.candidates = candidates
        self.victimPID = victimPID
        self.victimComm = victimComm
        self.victimCgroup = victimCgroup
        self.score = score
        self.reason = reason
        self.victimRSSBytes = victimRSSBytes
        self.kernelVictimPID = kernelVictimPID
        self.latency = latency
    }
}

/// A policy the operator asked to run: kept in the store so a restarted
/// daemon loads the same set.
public struct DesiredPolicy: Codable, Sendable, Equatable {
    /// The loaded policy's name (unique among loaded policies).
    public var name: String
    /// What was asked for: a policy name from the policy directory, or a manifest path.
    public var source: String
    /// "system" or a cgroup path.
    public var scope: String
    /// "enforce" or "observe".
    public var mode: String
    /// `--set key=value` overrides, in order.
    public var overrides: [ParameterOverride]
    /// Wall-clock nanoseconds when it was first loaded.
    public var addedNs: Int64

    public init(name: String, source: String, scope: String, mode: String, overrides: [ParameterOverride], addedNs: Int64) {
        self.name = name
        self.source = source
        self.scope = scope
        self.mode = mode
        self.overrides = overrides
        self.addedNs = addedNs
    }
}

/// One `--set key=value`.
public struct ParameterOverride: Codable, Sendable, Equatable {
    public var key: String
    public var value: String
    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}
