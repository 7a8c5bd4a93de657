import BPFKit
import MMPolicyCore

/// A loaded oom policy as the OOM engine runs it: the callback, where it
/// applies, how it runs (enforce or observe), what it may not touch and how
/// long it may think.
///
/// `@unchecked Sendable`: after loading, the BPF object is only read, and
/// the engine runs the callback from its one thread; program and map file
/// descriptors may be used from any thread.
public final class OOMPolicyInstance: @unchecked Sendable {
    public let name: String
    public let scope: ResolvedScope
    public let mode: PolicyMode
    public let validator: OOMVictimValidator
    public let deadlineNs: UInt64
    public let trigger: OOMTriggerSettings
    let selector: OOMSelector
    /// Keeps the loaded object (and so the callback's fd) alive.
    private let policy: Policy
    /// The policy's sensors (every program that is not a callback), attached
    /// for as long as the policy is loaded.
    private let sensorLinks: [BPFLink]

    /// `policy` must be loaded and of kind oom. Attaches its sensor programs.
    public init(policy: Policy, name: String, scope: ResolvedScope, mode: PolicyMode, daemonPID: Int32,
                mount: MemoryCgroupMount?) throws {
        self.policy = policy
        var links: [BPFLink] = []
        for program in policy.object.programs where program.type != .syscall {
            links.append(try program.attach())
        }
        self.sensorLinks = links
        self.name = name
        self.scope = scope
        self.mode = mode
        self.selector = try OOMSelector(policy: policy.object, ops: policy.ops)
        let manifest = policy.manifest
        self.validator = OOMVictimValidator(daemonPID: daemonPID, protect: manifest?.protect ?? ProtectList(), mount: mount)
        let deadlineMs = GuardTable.value("deadline_ms", settings: manifest?.guards ?? GuardSettings(), for: OOMKind()) ?? 100
        self.deadlineNs = UInt64(deadlineMs) * 1_000_000
        self.trigger = manifest?.kindSettings as? OOMTriggerSettings ?? .defaults
    }

    /// Every program of the policy (callbacks and sensors), for run statistics.
    public var programs: [BPFProgram] { policy.object.programs }
}
