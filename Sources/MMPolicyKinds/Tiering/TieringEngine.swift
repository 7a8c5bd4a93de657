#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore
import Synchronization

/// Runs every loaded tiering policy: each interval (and when its PSI
/// trigger fires) it asks the policy for a plan, checks each action
/// (``TieringValidator``) and carries it out with process_madvise(2), or in
/// observe mode records what would have moved.
///
/// All of it happens on one dedicated thread. The tiering sensors
/// (`sensors/tiering_sensors.bpf.o`) are loaded the first time a tiering
/// policy is (their maps are shared with every tiering policy, see
/// ``sharedMaps``); their programs are attached only while a tiering policy
/// is attached, so a daemon without one pays nothing per page fault.
public final class TieringEngine: KindEngine {
    enum Command: Sendable {
        case attach(TieringPolicyInstance, CommandReply<Result<Void, TieringAttachError>>)
        case detach(String, CommandReply<Void>)
    }

    let environment: KindEnvironment
    let loop: CommandLoop<Command>
    let health = DecisionHealthBoard()
    /// Per attached policy, what it has moved, for `status`.
    let totals = Mutex<[String: TieringTotals]>([:])
    private let sensorState = Mutex<SensorState>(.notLoaded)

    private enum SensorState {
        case notLoaded
        case loaded(TieringSensors)
        case failed(String)
    }

    public init(environment: KindEnvironment) throws(SystemCallError) {
        self.environment = environment
        self.loop = try CommandLoop(threadName: "mmpolicy-tier", role: "the tiering engine thread")
    }

    public func start() throws {
        let engine = self
        try loop.start { loop in TieringEngineLoop(engine: engine, loop: loop).run() }
    }

    /// The sensors, loaded on first use; the reason when they cannot be.
    func sensors() -> Result<TieringSensors, TieringAttachError> {
        sensorState.withLock { state in
            switch state {
            case .loaded(let sensors): return .success(sensors)
            case .failed(let why):
                return .failure(TieringAttachError(policy: "", reason: why, fix: "Run `make build` (it builds sensors/tiering_sensors.bpf.o), or add its directory to MMPOLICY_OBJECT_PATH"))
            case .notLoaded:
                guard let path = TieringSensors.locate(searchPath: environment.objectSearchPath) else {
                    let why = "the tiering sensors (sensors/tiering_sensors.bpf.o) are on none of \(environment.objectSearchPath.directories.joined(separator: ", "))"
                    state = .failed(why)
                    return .failure(TieringAttachError(policy: "", reason: why, fix: "Run `make build`, or add the object's directory to MMPOLICY_OBJECT_PATH"))
                }
                do {
                    let sensors = try TieringSensors(objectPath: path)
                    state = .loaded(sensors)
                    return .success(sensors)
                } catch {
                    let why = "the tiering sensors (\(path)) could not be loaded: \(error)"
                    state = .failed(why)
                    return .failure(TieringAttachError(policy: "", reason: why, fix: "Check the kernel supports the tracepoints (see docs/kinds/tiering.md) and rebuild the object"))
                }
            }
        }
    }

    /// The sensors' maps, which every tiering policy reads by name.
    public var sharedMaps: [String: Int32] {
        (try? sensors().get())?.sharedMaps ?? [:]
    }

    public func attach(_ attachment: PolicyAttachment) async throws {
        let instance = try TieringPolicyInstance(attachment: attachment)
        if case .failure(var error) = sensors() {
            error.policy = instance.name
            throw error
        }
        let tier = SlowTier.current()
        guard tier.isConfigured else {
            throw TieringAttachError(
                policy: instance.name,
                reason: "no swap device is active, so there is no slow tier to move memory to (/proc/swaps lists none)",
                fix: "Set one up first, e.g. zram: `echo 4G > /sys/block/zram0/disksize; mkswap /dev/zram0; swapon /dev/zram0` (docs/kinds/tiering.md), then load the policy again")
        }
        try await attach(instance)
    }

    /// Attaches a tiering policy instance (tests build their own).
    public func attach(_ instance: TieringPolicyInstance) async throws(TieringAttachError) {
        guard let result = await loop.request({ .attach(instance, $0) }) else {
            throw TieringAttachError(policy: instance.name, reason: "the tiering engine has stopped",
                                     fix: "The daemon is shutting down; load the policy again once it has restarted")
        }
        try result.get()
    }

    public func detach(name: String) async {
        _ = await loop.request { .detach(name, $0) }
    }

    public func health(of name: String) -> DecisionHealth? { health.health(of: name) }

    /// What policy `name` has moved since it was attached.
    public func totals(of name: String) -> TieringTotals? { totals.withLock { $0[name] } }

    /// Bytes moved each way, bytes its reclaim targets' memcgs gave up,
    /// refaults, what its processes have in the slow tier now and what that
    /// saves (their swapped bytes less what the tier spends to hold them, at
    /// its current compression).
    public func figures(of name: String) -> [KindFigure] {
        guard let t = totals(of: name) else { return [] }
        let tier = t.tier
        let costPerByte = tier.storedBytes > 0 ? Double(tier.usedBytes) / Double(tier.storedBytes) : 0
        var figures = [
            KindFigure("demoted", Double(t.demotedBytes), unit: "bytes"),
            KindFigure("promoted", Double(t.promotedBytes), unit: "bytes"),
            KindFigure("reclaimed", Double(t.reclaimedBytes), unit: "bytes"),
            KindFigure("refaulted pages", Double(t.refaultedPages), unit: "count"),
            KindFigure("out now", Double(t.swappedBytes), unit: "bytes"),
            KindFigure("saved", Double(t.swappedBytes) * (1 - costPerByte), unit: "bytes"),
        ]
        if tier.compressedBytes > 0 {
            figures.append(KindFigure("slow tier compression", Double(tier.storedBytes) / Double(tier.compressedBytes), unit: "ratio"))
        }
        if t.refused > 0 { figures.append(KindFigure("refused actions", Double(t.refused), unit: "count")) }
        return figures
    }

    public func stop() { loop.stop() }
}

/// What a tiering policy has done since it was attached, for `status`.
public struct TieringTotals: Sendable, Equatable, Codable {
    public var plans: UInt64 = 0
    public var demotedBytes: UInt64 = 0
    public var coldBytes: UInt64 = 0
    public var promotedBytes: UInt64 = 0
    /// What its reclaim targets' memcgs gave up (usage before less after).
    public var reclaimedBytes: UInt64 = 0
    /// Swap-ins in regions the policy demoted (the sensors' count).
    public var refaultedPages: UInt64 = 0
    public var refused: UInt64 = 0
    /// What the policy's processes have in the slow tier now (VmSwap).
    public var swappedBytes: UInt64 = 0
    /// The slow tier at the last plan.
    public var tier = TierFigures()

    public init() {}
}
