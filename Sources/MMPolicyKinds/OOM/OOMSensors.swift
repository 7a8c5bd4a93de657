#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import CMMPolicyABI
import MMPolicyCore

/// One event of the daemon's OOM sensors (`struct mmpolicy_sensor_event`).
public struct SensorEvent: Sendable, Equatable {
    /// What happened (`enum mmpolicy_sensor_event_type`).
    public enum Kind: UInt32, Sendable, Equatable, CaseIterable {
        /// A task entered direct (global) reclaim; value = allocation order.
        case directReclaim = 1
        /// An allocation woke kswapd; value = allocation order.
        case kswapdWake = 2
        /// A task entered memcg reclaim; cgroupID = its memory cgroup, value = order.
        case memcgReclaim = 3
        /// RSS grew by the armed budget; value = bytes accumulated since arming.
        case rssBudget = 4
        /// The kernel OOM killer chose a victim; value = its anon + file + shmem RSS in bytes.
        case markVictim = 5
    }

    public var kind: Kind
    /// The process (tgid): the task that allocated or reclaimed, or the OOM victim.
    public var pid: Int32
    /// CLOCK_MONOTONIC, comparable with ``monotonicNanoseconds()``.
    public var timeNs: UInt64
    public var value: UInt64
    /// Memory cgroup (directory inode) of that task; 0 where the kind has none.
    public var cgroupID: UInt64
    public var comm: String

    public init(kind: Kind, pid: Int32, timeNs: UInt64, value: UInt64, cgroupID: UInt64, comm: String) {
        self.kind = kind
        self.pid = pid
        self.timeNs = timeNs
        self.value = value
        self.cgroupID = cgroupID
        self.comm = comm
    }
}

/// The daemon's OOM sensors: BPF programs on the reclaim, RSS and OOM-kill
/// tracepoints that push events into a ring buffer.
///
/// They exist so that the daemon can sleep on one file descriptor and still
/// act the moment the kernel starts to struggle for memory (reclaim begins,
/// RSS has eaten into the headroom, the kernel's OOM killer fires), instead of
/// polling /proc/meminfo fast. Owns the loaded object, its links (every
/// program stays attached while this lives) and the ring buffer reader.
public final class OOMSensors {
    /// Where the object lives relative to a directory of the object search path.
    public static let objectName = "sensors/oom_sensors.bpf.o"
    /// The default shortest gap between two reclaim events of one kind.
    public static let defaultMinIntervalNs: UInt64 = 10_000_000

    public let object: BPFObject
    private let ring: BPFRingBuffer
    private let config: BPFMap
    private var links: [BPFLink] = []

    /// The first directory of `searchPath` holding ``objectName``, as a full path.
    public static func locate(searchPath: ObjectSearchPath) -> String? {
        searchPath.directories.map { $0 + "/" + objectName }.first { access($0, R_OK) == 0 }
    }

    /// Opens the sensors object at `objectPath`, rate-limits reclaim events to
    /// one per `minIntervalNs` per kind, loads it and attaches every program.
    /// The RSS budget starts disarmed.
    public init(objectPath: String, minIntervalNs: UInt64 = OOMSensors.defaultMinIntervalNs) throws(BPFError) {
        let object = try BPFObject(path: objectPath)
        guard minIntervalNs <= UInt64(Int64.max) else {
            throw BPFError(.setParameter, object: object.name, reason: "a minimum interval of \(minIntervalNs) ns is out of range")
        }
        try object.setParameter("min_interval_ns", to: .integer(Int64(minIntervalNs)))
        try object.load()
        guard let events = object.map(named: "events"), let config = object.map(named: "sensor_config") else {
            throw BPFError(.open, object: object.name, reason: "it has no `events` ring buffer or no `sensor_config` map",
                           fix: "Rebuild it from bpf-programs/sensors/oom_sensors.bpf.c (`make bpf`)")
        }
        self.object = object
        self.config = config
        ring = try BPFRingBuffer(map: events)
        for program in object.programs { links.append(try program.attach()) }
    }

    /// Readable when events wait; then call ``drain()``. Owned by the sensors.
    public var pollFD: Int32 { ring.epollFD }

    /// Arms the RSS budget: one `rssBudget` event once processes' RSS has
    /// grown by `budgetBytes` from now (shrinking does not count). Re-arming
    /// starts the count again from zero.
    public func arm(budgetBytes: UInt64) throws(BPFError) {
        var state = mmpolicy_sensor_config()
        state.budget_bytes = budgetBytes
        state.accumulated_bytes = 0
        state.armed = 1
        try config.update(UInt32(0), state)
    }

    /// Disarms the RSS budget; no `rssBudget` event comes until the next ``arm(budgetBytes:)``.
    public func disarm() throws(BPFError) {
        try config.update(UInt32(0), mmpolicy_sensor_config())
    }

    /// The RSS budget's state: whether it is armed, its size, and the growth
    /// counted since it was last armed.
    public func budget() throws(BPFError) -> (armed: Bool, budgetBytes: UInt64, accumulatedBytes: UInt64) {
        let state = try config.lookup(UInt32(0), as: mmpolicy_sensor_config.self) ?? mmpolicy_sensor_config()
        return (state.armed != 0, state.budget_bytes, state.accumulated_bytes)
    }

    /// Every event waiting now, oldest first, without blocking.
    public func drain() throws(BPFError) -> [SensorEvent] {
        var result: [SensorEvent] = []
        for raw in try ring.drain(as: mmpolicy_sensor_event.self) {
            guard let kind = SensorEvent.Kind(rawValue: raw.type) else {
                throw BPFError(.readRingBuffer, object: object.name, map: "events",
                               reason: "an event of unknown type \(raw.type) was read",
                               fix: "Rebuild the sensors object and mmpolicy from the same source (sensor_common.h)")
            }
            let comm = withUnsafeBytes(of: raw.comm) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            result.append(SensorEvent(kind: kind, pid: Int32(bitPattern: raw.pid), timeNs: raw.time_ns,
                                      value: raw.value, cgroupID: raw.cgroup_id, comm: comm))
        }
        return result
    }

    /// Events lost so far because the ring buffer was full: of `kind`, or
    /// of every kind (0 if the object predates the count).
    public func droppedEvents(of kind: SensorEvent.Kind? = nil) -> UInt64 {
        guard let drops = object.map(named: MMPOLICY_SENSOR_DROPS_MAP) else { return 0 }
        let types = kind.map { [$0.rawValue] } ?? Array(0..<UInt32(MMPOLICY_SENSOR_EVENT_TYPES))
        return types.reduce(0) { $0 + (((try? drops.lookup($1, as: UInt64.self)) ?? nil) ?? 0) }
    }

    /// Runs and run time of each program, for the watchdog's BPF cost guard.
    /// Counted only while /proc/sys/kernel/bpf_stats_enabled is 1.
    public var programStats: [(name: String, runCount: UInt64, runTimeNs: UInt64)] {
        // The object is loaded for this instance's whole life, so info() has its fd.
        object.programs.compactMap { program in
            (try? program.info()).map { (program.name, $0.runCount, $0.runTimeNanoseconds) }
        }
    }
}
