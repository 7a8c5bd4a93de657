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
    /// Swap for the policies, and the zram set up for one (TieringSlowTier.swift).
    let slowTier = TieringSlowTier()

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
        // Swap, or the zram its manifest asks for, or a refusal naming the fixes.
        try slowTier.provide(for: instance, environment: environment)
        do { try await attach(instance) } catch {
            slowTier.release(instance.name, environment: environment)
            throw error
        }
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
        slowTier.release(name, environment: environment)
    }

    public func health(of name: String) -> DecisionHealth? { health.health(of: name) }

    /// What policy `name` has moved since it was attached.
    public func totals(of name: String) -> TieringTotals? { totals.withLock { $0[name] } }

    /// Bytes moved each way, bytes its reclaim targets' memcgs gave up,
    /// refaults, what its processes have in the slow tier now and what that
    /// saves, the slow tier's size and use (and zram's disk size and
    /// compression), and what was left resident as incompressible.
    public func figures(of name: String) -> [KindFigure] {
        guard let t = totals(of: name) else { return [] }
        let tier = t.tier
        let swapUsed = tier.swapTotalBytes - min(tier.swapTotalBytes, tier.swapFreeBytes)
        var figures = [
            KindFigure("demoted", Double(t.demotedBytes), unit: "bytes"),
            KindFigure("promoted", Double(t.promotedBytes), unit: "bytes"),
            KindFigure("reclaimed", Double(t.reclaimedBytes), unit: "bytes"),
            KindFigure("refaulted pages", Double(t.refaultedPages), unit: "count"),
            KindFigure("out now", Double(t.swappedBytes), unit: "bytes"),
            KindFigure("saved", Double(t.savedBytes), unit: "bytes"),
            KindFigure("slow tier size", Double(tier.swapTotalBytes), unit: "bytes"),
            KindFigure("slow tier used", Double(swapUsed), unit: "bytes"),
        ]
        if t.zramDiskSizeBytes > 0 { figures.append(KindFigure("zram disksize", Double(t.zramDiskSizeBytes), unit: "bytes")) }
        if tier.compressedBytes > 0 {
            figures.append(KindFigure("slow tier compression", Double(tier.storedBytes) / Double(tier.compressedBytes), unit: "ratio"))
        }
        if t.incompressibleSkippedBytes > 0 {
            figures.append(KindFigure("left resident as incompressible", Double(t.incompressibleSkippedBytes), unit: "bytes"))
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
    /// The zram devices' disk sizes at the last plan (0: the tier is not zram).
    public var zramDiskSizeBytes: UInt64 = 0
    /// Bytes the compressibility check left out of demotions (enforce mode).
    public var incompressibleSkippedBytes: UInt64 = 0

    public init() {}

    /// RAM that the memory out now frees: the bytes moved out (VmSwap of the
    /// policy's processes) less what the slow tier spends in RAM to hold
    /// them. That cost is zram's memory (mem_used_total, allocator overhead
    /// included) per byte in swap, over every swap area, so a disk swap area
    /// beside zram costs nothing; the tier's average, not this policy's own
    /// pages' (zram cannot say whose pages it holds).
    public var savedBytes: Int64 {
        let swapUsed = tier.swapTotalBytes - min(tier.swapTotalBytes, tier.swapFreeBytes)
        let costPerByte = swapUsed > 0 ? min(1, Double(tier.usedBytes) / Double(swapUsed)) : 0
        return Int64((Double(swappedBytes) * (1 - costPerByte)).rounded())
    }
}
