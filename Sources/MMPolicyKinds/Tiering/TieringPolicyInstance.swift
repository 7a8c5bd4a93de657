import BPFKit
import MMPolicyCore

/// A loaded tiering policy as the tiering engine runs it: its `plan`
/// callback, where it applies, how it runs (enforce or observe), what it may
/// not touch and how much one plan may move.
///
/// `@unchecked Sendable`: after loading, the BPF object is only read, and
/// the engine runs the callback from its one thread; program and map file
/// descriptors may be used from any thread.
public final class TieringPolicyInstance: @unchecked Sendable {
    public let name: String
    public let scope: ResolvedScope
    public let mode: PolicyMode
    public let settings: TieringSettings
    public let protect: ProtectList
    /// How long a plan may take before its answer is not used.
    public let deadlineNs: UInt64
    let planner: TieringPlanner
    /// Keeps the loaded object (and so the callback's fd) alive.
    private let policy: Policy

    /// `policy` must be loaded and of kind tiering.
    public init(policy: Policy, name: String, scope: ResolvedScope, mode: PolicyMode) throws(TieringAttachError) {
        self.policy = policy
        self.name = name
        self.scope = scope
        self.mode = mode
        do {
            self.planner = try TieringPlanner(policy: policy.object, ops: policy.ops)
        } catch {
            throw TieringAttachError(policy: name, reason: "its plan callback cannot be run: \(error)",
                                     fix: "Load it again; if it persists, rebuild the object")
        }
        let manifest = policy.manifest
        self.settings = manifest?.kindSettings as? TieringSettings ?? .defaults
        self.protect = manifest?.protect ?? ProtectList()
        let deadlineMs = GuardTable.value("deadline_ms", settings: manifest?.guards ?? GuardSettings(), for: TieringKind()) ?? 100
        self.deadlineNs = UInt64(deadlineMs) * 1_000_000
    }

    /// The instance for a policy the daemon loaded.
    public convenience init(attachment: PolicyAttachment) throws(TieringAttachError) {
        try self.init(policy: attachment.policy, name: attachment.name, scope: attachment.scope, mode: attachment.mode)
    }

    public var intervalNs: UInt64 { UInt64(settings.intervalMs) * 1_000_000 }

    /// What the policy reported with `mmpolicy_error()` since it was last
    /// asked, cleared; nil if nothing.
    func takeErrorReport() -> PolicyErrorInfo? {
        ((try? policy.errorReport(clear: true)) ?? nil).map { PolicyErrorInfo(code: $0.code, message: $0.message) }
    }
}

/// A policy that cannot be attached to the tiering engine.
public struct TieringAttachError: Error, Sendable, CustomStringConvertible {
    public var policy: String
    public var reason: String
    public var fix: String

    public init(policy: String, reason: String, fix: String) {
        self.policy = policy
        self.reason = reason
        self.fix = fix
    }

    public var description: String { "policy '\(policy)' cannot be attached: \(reason). \(fix)." }
}
