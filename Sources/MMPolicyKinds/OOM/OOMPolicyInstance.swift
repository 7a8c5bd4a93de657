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

    /// `policy` must be loaded and of kind oom. (Its sensor programs are the
    /// daemon's to attach, as for every kind.)
    public init(policy: Policy, name: String, scope: ResolvedScope, mode: PolicyMode, daemonPID: Int32,
                mount: MemoryCgroupMount?) throws(OOMAttachError) {
        self.policy = policy
        self.name = name
        self.scope = scope
        self.mode = mode
        do {
            self.selector = try OOMSelector(policy: policy.object, ops: policy.ops)
        } catch {
            throw OOMAttachError(policy: name, reason: "its select_victim callback cannot be run: \(error)",
                                 fix: "Load it again; if it persists, rebuild the object")
        }
        let manifest = policy.manifest
        self.validator = OOMVictimValidator(daemonPID: daemonPID, protect: manifest?.protect ?? ProtectList(), mount: mount)
        let deadlineMs = GuardTable.value("deadline_ms", settings: manifest?.guards ?? GuardSettings(), for: OOMKind()) ?? 100
        self.deadlineNs = UInt64(deadlineMs) * 1_000_000
        self.trigger = manifest?.kindSettings as? OOMTriggerSettings ?? .defaults
    }

    /// The instance for a policy the daemon loaded.
    public convenience init(attachment: PolicyAttachment, daemonPID: Int32, mount: MemoryCgroupMount?) throws(OOMAttachError) {
        try self.init(policy: attachment.policy, name: attachment.name, scope: attachment.scope, mode: attachment.mode,
                      daemonPID: daemonPID, mount: mount)
    }

    /// Every program of the policy (callbacks and sensors), for run statistics.
    public var programs: [BPFProgram] { policy.object.programs }

    /// What the policy reported with `mmpolicy_error()` since it was last
    /// asked, cleared; nil if nothing.
    func takeErrorReport() -> PolicyErrorInfo? {
        ((try? policy.errorReport(clear: true)) ?? nil).map { PolicyErrorInfo(code: $0.code, message: $0.message) }
    }
}
