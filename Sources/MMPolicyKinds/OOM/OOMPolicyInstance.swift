import BPFKit
import MMPolicyCore

/// The oom kind's trigger settings with the kind's defaults filled in.
public struct OOMTriggerSettings: Sendable, Equatable {
    /// System scope: act when MemAvailable <= this percent of MemTotal ...
    public var memAvailablePercent: Double
    /// ... and SwapFree <= this percent of SwapTotal (no swap counts as 0 %).
    public var swapFreePercent: Double
    /// A PSI trigger that wakes the daemon (system: /proc/pressure/memory;
    /// cgroup v2: the group's memory.pressure). It acts only if memory is also
    /// short: within twice the thresholds (system) or the headroom (v2).
    public var psi: PSITriggerSpec?
    /// cgroup v2: act when memory.current >= memory.max minus this percent.
    public var memcgHeadroomPercent: Double
    /// cgroup v2: keep the policy's next victim's oom_score_adj at 1000.
    public var steerOOMScoreAdj: Bool

    /// earlyoom's defaults are 10 % / 10 %; PSI "some 150 ms per 2 s" is the
    /// finest trigger an unprivileged-resource process may arm.
    public static let defaults = OOMTriggerSettings(
        memAvailablePercent: 10, swapFreePercent: 10,
        psi: PSITriggerSpec(full: false, stallMicroseconds: 150_000, windowMicroseconds: 2_000_000),
        memcgHeadroomPercent: 5, steerOOMScoreAdj: true)

    public init(memAvailablePercent: Double, swapFreePercent: Double, psi: PSITriggerSpec?,
                memcgHeadroomPercent: Double, steerOOMScoreAdj: Bool) {
        self.memAvailablePercent = memAvailablePercent
        self.swapFreePercent = swapFreePercent
        self.psi = psi
        self.memcgHeadroomPercent = memcgHeadroomPercent
        self.steerOOMScoreAdj = steerOOMScoreAdj
    }

    /// The manifest's `[trigger]` over the defaults.
    public init(_ manifest: TriggerSettings) {
        let d = Self.defaults
        self.init(memAvailablePercent: manifest.memAvailablePercent ?? d.memAvailablePercent,
                  swapFreePercent: manifest.swapFreePercent ?? d.swapFreePercent,
                  psi: manifest.psi ?? d.psi,
                  memcgHeadroomPercent: manifest.memcgHeadroomPercent ?? d.memcgHeadroomPercent,
                  steerOOMScoreAdj: manifest.steerOOMScoreAdj ?? d.steerOOMScoreAdj)
    }
}

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
        self.deadlineNs = UInt64(manifest?.guards.deadlineMs ?? 100) * 1_000_000
        self.trigger = OOMTriggerSettings(manifest?.trigger ?? TriggerSettings())
    }

    /// Every program of the policy (callbacks and sensors), for run statistics.
    public var programs: [BPFProgram] { policy.object.programs }
}
