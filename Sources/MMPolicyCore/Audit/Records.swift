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
    /// The guard's manifest key (`[guards]`), e.g. "max_decision_errors".
    public var guardName: String
    /// The signal it reads, e.g. "decision_errors_per_minute".
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
    /// The policy's own last word on why it failed (`mmpolicy_error()`), if it gave one.
    public var policyError: PolicyErrorInfo?

    public init(guardName: String, metric: String, comparison: String, threshold: Double, values: [Double],
                windows: Int, windowSeconds: Double, description: String, restoredKnobs: [String],
                cooldownUntilNs: Int64, policyError: PolicyErrorInfo? = nil) {
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
        self.policyError = policyError
    }
}

/// One decision as every kind records it: an envelope that means the same
/// for every kind (kind, policy, scope, trigger, mode, outcome and why, the
/// timing of each step, the kernel's own choice where there is one) around
/// a typed, versioned payload that only the kind reads (OOM: candidates,
/// victim, score, reason).
///
/// It exists so that the store, the control protocol, `mmpolicy events`,
/// `status` and the watchdog handle every kind's decisions the same way
/// without knowing any kind: a kind adds a payload type, not a column.
/// The envelope's fields are stable and documented in
/// docs/control-protocol.md; a payload changes by bumping its version.
public struct DecisionRecord: Codable, Sendable, Equatable {
    /// How the decision ended.
    public enum Outcome: String, Codable, Sendable, CaseIterable {
        /// Validated and carried out (OOM: the victim was killed).
        case carriedOut = "carried-out"
        /// Observe mode: validated and recorded, not carried out.
        case observed
        /// Failed validation (a protected or out-of-scope target, a size or
        /// rate beyond the manifest's bounds): a strike; the kernel's default applies.
        case rejected
        /// The policy declined, missed its deadline, or its action reached
        /// nothing: the kernel's default applies.
        case fellBack = "fell-back"
        /// The callback failed (BPF_PROG_RUN error, an error status, malformed
        /// output): the kernel's default applies and the policy is charged an error.
        case error
    }

    /// The kernel's own choice for the same event, where the kind has one
    /// (OOM: the victim `oom:mark_victim` reported), and whether the policy agreed.
    public struct Agreement: Codable, Sendable, Equatable {
        /// The kernel's choice, as the kind spells it (OOM: "pid 4242").
        public var kernelChoice: String
        public var agrees: Bool

        public init(kernelChoice: String, agrees: Bool) {
            self.kernelChoice = kernelChoice
            self.agrees = agrees
        }
    }

    /// Microseconds from the moment the daemon saw the trigger to each step.
    public struct Timing: Codable, Sendable, Equatable {
        /// One step of carrying a decision out, e.g. ("SIGKILL", 412.5).
        public struct Step: Codable, Sendable, Equatable {
            public var step: String
            public var us: Double

            public init(_ step: String, _ us: Double) {
                self.step = step
                self.us = us
            }
        }

        /// When it began -> the daemon awake: from a sensor's time stamp of
        /// the kernel event, or (a cgroup v1 OOM) from the OOM's onset as the
        /// guardian saw it, so a stopped or late daemon shows. nil when
        /// neither is known. Steps count from the daemon awake; add this to
        /// count them from the onset.
        public var wakeUs: Double?
        /// Trigger seen -> the callback returned.
        public var decidedUs: Double?
        /// Time inside the BPF callback alone.
        public var callbackUs: Double?
        /// Trigger seen -> each later step, in the order they happened.
        public var steps: [Step]

        public init(wakeUs: Double? = nil, decidedUs: Double? = nil, callbackUs: Double? = nil, steps: [Step] = []) {
            self.wakeUs = wakeUs
            self.decidedUs = decidedUs
            self.callbackUs = callbackUs
            self.steps = steps
        }

        /// The time of step `name`, if it happened.
        public func us(_ name: String) -> Double? { steps.first { $0.step == name }?.us }

        /// Records step `name` (replacing an earlier one of the same name).
        public mutating func set(_ name: String, _ us: Double?) {
            steps.removeAll { $0.step == name }
            if let us { steps.append(Step(name, us)) }
        }
    }

    public var kind: PolicyKind
    /// What made the daemon ask, in the kind's words (OOM: memcg-oom, pressure, low-memory).
    public var trigger: String
    /// The scope the policy is attached to.
    public var scope: String
    /// Where the trigger fired inside the scope (OOM: the memcg under OOM, or "system").
    public var origin: String
    public var mode: PolicyMode
    public var outcome: Outcome
    /// Why it was rejected, fell back or failed; problems met while carrying
    /// it out; empty otherwise.
    public var detail: String
    /// What woke the daemon for it (OOM: "memcg-eventfd", "rss-budget",
    /// "direct-reclaim", "kswapd-wake", "psi", "memory-events" or "poll").
    public var wokenBy: String?
    public var timing: Timing
    /// Observe mode: the kernel's own choice, once seen.
    public var agreement: Agreement?
    /// What the policy itself reported with `mmpolicy_error()`, if anything.
    public var policyError: PolicyErrorInfo?
    /// The kind's own account of the decision.
    public var payload: DecisionPayload

    public init(kind: PolicyKind, trigger: String, scope: String, origin: String, mode: PolicyMode, outcome: Outcome,
                detail: String = "", wokenBy: String? = nil, timing: Timing = Timing(), agreement: Agreement? = nil,
                policyError: PolicyErrorInfo? = nil, payload: DecisionPayload = DecisionPayload()) {
        self.kind = kind
        self.trigger = trigger
        self.scope = scope
        self.origin = origin
        self.mode = mode
        self.outcome = outcome
        self.detail = detail
        self.wokenBy = wokenBy
        self.timing = timing
        self.agreement = agreement
        self.policyError = policyError
        self.payload = payload
    }
}

/// What a policy reported about its own failure (`mmpolicy_error()` in the
/// BPF program, like sched_ext's `scx_bpf_error()`): a code, by convention
/// a negative errno, and a short message.
public struct PolicyErrorInfo: Codable, Sendable, Equatable {
    public var code: Int32
    public var message: String

    public init(code: Int32, message: String) {
        self.code = code
        self.message = message
    }
}

/// A kind's payload inside a ``DecisionRecord``: its version and its JSON.
///
/// The store and the control protocol carry it as JSON without knowing the
/// kind; the kind reads it back as its own type with ``decode(_:)``.
public struct DecisionPayload: Codable, Sendable, Equatable {
    /// The payload type's ``DecisionPayloadBody/version`` when it was written.
    public var version: Int
    public var body: JSONValue

    public init(version: Int = 0, body: JSONValue = .object([:])) {
        self.version = version
        self.body = body
    }

    /// Wraps a kind's payload.
    public init<Body: DecisionPayloadBody>(_ body: Body) {
        self.version = Body.version
        self.body = (try? JSONValue(encoding: body)) ?? .object([:])
    }

    /// The payload as `Body`; nil if it is another kind's or a version
    /// `Body` does not read (see ``DecisionPayloadBody/oldestReadableVersion``).
    public func decode<Body: DecisionPayloadBody>(_ type: Body.Type) -> Body? {
        guard (Body.oldestReadableVersion...Body.version).contains(version) else { return nil }
        return try? body.decode(Body.self)
    }
}

/// A kind's typed decision payload. Bump `version` on any change that an
/// older reader would misread; a body that still decodes the records of
/// earlier versions (new fields optional on decoding) says so with
/// `oldestReadableVersion`.
public protocol DecisionPayloadBody: Codable, Sendable, Equatable {
    static var version: Int { get }
    /// The oldest payload version this body decodes; `version` by default.
    static var oldestReadableVersion: Int { get }
}

extension DecisionPayloadBody {
    public static var oldestReadableVersion: Int { version }
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
