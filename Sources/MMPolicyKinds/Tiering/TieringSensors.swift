#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import CMMPolicyABI
import MMPolicyCore
import Synchronization

/// The daemon's tiering sensors: BPF programs on the page-fault and memcg
/// event tracepoints that count, per tracked process and per 2 MiB region of
/// it, page faults, swap-ins, and swap-ins of regions the daemon demoted
/// (refaults), into the maps every tiering policy reads
/// (`tier_procs`, `tier_regions`; see tiering_common.h).
///
/// They exist because a tiering policy must tell hot memory from cold and
/// this kernel gives no access bits to read (no idle page tracking, no
/// MGLRU, no DAMON vaddr): faults are the signal that is left, and only the
/// kernel sees them. Owns the loaded object (bpf-programs/sensors/
/// tiering_sensors.bpf.c) and, while attached, its links; the maps outlive
/// attachment, so counts survive a detach. The daemon's writes (tracking,
/// residency, demotions, seeds, compressibility) go through the object's
/// `tier_write` program, which changes fields in place: a map update from
/// user space would replace the whole value and lose counts added meanwhile.
///
/// `@unchecked Sendable`: after `init` the object is only read (its maps and
/// programs are kernel descriptors, safe from any thread, and every map
/// operation is one system call); the links, the only mutable state, are
/// behind a mutex.
public final class TieringSensors: @unchecked Sendable {
    /// Where the object lives relative to a directory of the object search path.
    public static let objectName = "sensors/tiering_sensors.bpf.o"
    /// How many processes can be tracked at once (MMPOLICY_TIER_MAX_PROCS).
    public static let maxProcesses = UInt32(MMPOLICY_TIER_MAX_PROCS)
    /// How many regions the region map holds before it evicts (MMPOLICY_TIER_MAX_REGIONS).
    public static let maxRegions = UInt32(MMPOLICY_TIER_MAX_REGIONS)
    /// Past this compressed_permille a region is flagged incompressible
    /// (MMPOLICY_TIER_INCOMPRESSIBLE_PERMILLE: zram's huge-page line).
    public static let incompressiblePermille = UInt32(MMPOLICY_TIER_INCOMPRESSIBLE_PERMILLE)
    /// The programs attached by ``attachPrograms()``.
    public static let sensorPrograms = ["tier_fault", "tier_swapin"]

    public let object: BPFObject
    private let procs: BPFMap
    private let regionMap: BPFMap
    private let writer: BPFProgram
    private let links = Mutex<[BPFLink]>([])
    private static let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))

    /// The first directory of `searchPath` holding ``objectName``, as a full path.
    public static func locate(searchPath: ObjectSearchPath) -> String? {
        searchPath.directories.map { $0 + "/" + objectName }.first { access($0, R_OK) == 0 }
    }

    /// Opens and loads the sensors object at `objectPath`: its maps exist
    /// (empty), nothing is attached.
    public init(objectPath: String) throws(BPFError) {
        let object = try BPFObject(path: objectPath)
        try object.load()
        guard let procs = object.map(named: String(cString: MMPOLICY_TIER_PROCS_MAP)),
              let regions = object.map(named: String(cString: MMPOLICY_TIER_REGIONS_MAP)),
              let writer = object.program(named: MMPOLICY_TIER_WRITE_PROG),
              Self.sensorPrograms.allSatisfy({ object.program(named: $0) != nil })
        else {
            throw BPFError(.open, object: object.name,
                           reason: "it lacks the tier_procs or tier_regions map or one of the programs \((Self.sensorPrograms + [MMPOLICY_TIER_WRITE_PROG]).joined(separator: ", "))",
                           fix: "Rebuild it from bpf-programs/sensors/tiering_sensors.bpf.c (`make bpf`)")
        }
        guard procs.keySize == MemoryLayout<UInt32>.size, procs.valueSize == MemoryLayout<mmpolicy_tier_proc>.size,
              regions.keySize == MemoryLayout<mmpolicy_tier_region_key>.size,
              regions.valueSize == MemoryLayout<mmpolicy_tier_region>.size
        else {
            throw BPFError(.open, object: object.name, reason: "its maps' key or value sizes differ from this mmpolicy's tiering_common.h",
                           fix: "Rebuild the sensors object and mmpolicy from the same source (`make build`)")
        }
        self.object = object
        self.procs = procs
        self.regionMap = regions
        self.writer = writer
    }

    deinit { detachPrograms() }

    // MARK: Attachment

    /// Attaches the fault and major-fault programs; from now on every fault
    /// on the system runs them (tracked processes' faults are counted).
    /// Idempotent. On failure nothing stays attached.
    public func attachPrograms() throws(BPFError) {
        try links.withLock { (links: inout [BPFLink]) throws(BPFError) in
            guard links.isEmpty else { return }
            var made: [BPFLink] = []
            for name in Self.sensorPrograms {
                guard let program = object.program(named: name) else { continue }
                do throws(BPFError) { made.append(try program.attach()) } catch {
                    for link in made { link.detach() }
                    throw error
                }
            }
            links = made
        }
    }

    /// Detaches the programs: faults cost nothing again. The maps keep what
    /// was counted. Idempotent.
    public func detachPrograms() {
        links.withLock { links in
            for link in links { link.detach() }
            links = []
        }
    }

    /// Whether the programs are attached.
    public var isAttached: Bool { links.withLock { !$0.isEmpty } }

    /// The two maps every tiering policy shares with the sensors, by name:
    /// hand each to the policy's map of that name (``BPFMap/reuse(fd:)``)
    /// before it loads.
    public var sharedMaps: [String: Int32] {
        var result: [String: Int32] = [:]
        for map in [procs, regionMap] { if let fd = map.fd { result[map.name] = fd } }
        return result
    }

    /// Runs and run time of each sensor program (not the writer); counted
    /// only while BPF run statistics are on (``BPFStatsSession``).
    public var programStats: [(name: String, runCount: UInt64, runTimeNs: UInt64)] {
        Self.sensorPrograms.compactMap { name in
            (try? object.program(named: name)?.info()).flatMap { $0 }.map { (name, $0.runCount, $0.runTimeNanoseconds) }
        }
    }

    // MARK: Processes

    /// Starts counting `pid` (a tgid), in memory cgroup `cgroupID`: a zeroed
    /// entry. Already tracked: only its cgroup is set, its counts stay.
    /// Throws when ``maxProcesses`` are tracked already.
    public func track(pid: Int32, cgroupID: UInt64) throws(BPFError) {
        let result = try write(MMPOLICY_TIER_WRITE_TRACK, pid: pid, value: cgroupID)
        if result == -Int32(E2BIG) {
            throw BPFError(.mapUpdate, object: object.name, map: procs.name, errno: .some(.init(rawValue: E2BIG)),
                           reason: "process \(pid) cannot be tracked: \(Self.maxProcesses) processes are tracked already",
                           fix: "Untrack processes that left the tiering scopes, or narrow the scopes")
        }
        try check(result, "track process \(pid)", map: procs)
    }

    /// Stops counting `pid` and deletes its entry and all its regions.
    /// Not tracked: nothing happens. A fault of `pid` that is being counted
    /// at this very moment can leave one region behind, which the region
    /// map's LRU evicts in time.
    public func untrack(pid: Int32) throws(BPFError) {
        try procs.delete(UInt32(bitPattern: pid))
        try regionMap.delete(batch: try regions(of: pid).map { Self.key(pid, $0.region) })
    }

    /// Sets `pid`'s resident anonymous memory and swapped-out memory (from
    /// /proc/PID/status RssAnon and VmSwap), stored in pages.
    public func setResidency(pid: Int32, anonBytes: UInt64, swapBytes: UInt64) throws(BPFError) {
        let result = try write(MMPOLICY_TIER_WRITE_RESIDENCY, pid: pid, value: anonBytes / Self.pageSize,
                               value2: swapBytes / Self.pageSize)
        try check(result, "set the residency of process \(pid)", map: procs)
    }

    /// Adds `bytes` the daemon paged out of `pid` to its demoted_bytes.
    public func addDemoted(pid: Int32, bytes: UInt64) throws(BPFError) {
        try check(try write(MMPOLICY_TIER_WRITE_ADD_DEMOTED, pid: pid, value: bytes), "add demoted bytes to process \(pid)", map: procs)
    }

    /// `pid`'s counts; nil if it is not tracked.
    public func process(pid: Int32) throws(BPFError) -> mmpolicy_tier_proc? {
        try procs.lookup(UInt32(bitPattern: pid), as: mmpolicy_tier_proc.self)
    }

    /// Every tracked process's tgid.
    public func trackedProcesses() throws(BPFError) -> [Int32] {
        try procs.keys(as: UInt32.self).map { Int32(bitPattern: $0) }
    }

    // MARK: Regions

    /// Every region of `pid` that has an entry (region = address >> 21),
    /// with its counts, in region order. Reads the whole region map (every
    /// process's entries, in batches: ~65,536 entries in tens of
    /// milliseconds); to read several processes, ``allRegions()`` reads it once.
    public func regions(of pid: Int32) throws(BPFError) -> [(region: UInt64, stats: mmpolicy_tier_region)] {
        try allRegions()[pid] ?? []
    }

    /// Every region entry of every process, by process, each in region order.
    public func allRegions() throws(BPFError) -> [Int32: [(region: UInt64, stats: mmpolicy_tier_region)]] {
        var result: [Int32: [(region: UInt64, stats: mmpolicy_tier_region)]] = [:]
        for (key, stats) in try regionMap.entries(as: (mmpolicy_tier_region_key, mmpolicy_tier_region).self) {
            result[Int32(bitPattern: key.tgid), default: []].append((key.region, stats))
        }
        for pid in result.keys { result[pid]!.sort { $0.region < $1.region } }
        return result
    }

    /// One region's counts; nil if it has no entry.
    public func region(of pid: Int32, _ region: UInt64) throws(BPFError) -> mmpolicy_tier_region? {
        try regionMap.lookup(Self.key(pid, region), as: mmpolicy_tier_region.self)
    }

    /// Records that the daemon paged `region` of `pid` out at `now`
    /// (CLOCK_MONOTONIC ns): demoted_ns = now, demotions + 1, refaults = 0;
    /// from now on its swap-ins count as refaults. Makes the entry if there
    /// is none.
    public func markDemoted(pid: Int32, region: UInt64, now: UInt64) throws(BPFError) {
        try check(try write(MMPOLICY_TIER_WRITE_DEMOTED, pid: pid, region: region, value: now),
                  "mark region \(hex(region)) of process \(pid) demoted", map: regionMap)
    }

    /// Makes an entry for each of `regions` of `pid` that has none
    /// (last_fault_ns = now, first_fault_ns 0, counts 0); leaves existing
    /// entries alone. Memory a process touched before it was tracked does
    /// not fault again until it is paged out, so without a seeded entry a
    /// policy would not see it at all. Returns how many entries it made.
    ///
    /// With the region map full, each entry made evicts another: the LRU map
    /// takes the entries least recently looked up, and the sensors look a
    /// region up on each of its faults, so those are the regions that have
    /// gone longest without a fault (possibly another process's) — exactly
    /// the entries a policy would read as cold, with their history. A seeded
    /// entry itself is never looked up by the sensors until its region
    /// faults, so it ages and goes before regions that fault; a region whose
    /// entry was evicted reads as cold (no entry), which is what a seed says
    /// too, minus its timestamp. Seed only what fits: past
    /// ``maxRegions`` entries, seeds evict each other.
    @discardableResult
    public func seedRegions(pid: Int32, regions: [UInt64], now: UInt64) throws(BPFError) -> Int {
        var made = 0
        for region in regions {
            let result = try write(MMPOLICY_TIER_WRITE_SEED, pid: pid, region: region, value: now)
            if result == 0 { made += 1 } else { try check(result, "seed region \(hex(region)) of process \(pid)", map: regionMap) }
        }
        return made
    }

    /// Records the sampled compressibility of `region` of `pid`: what zram
    /// would keep of it per 1000 bytes (0: not sampled); above
    /// ``incompressiblePermille`` the region is flagged
    /// MMPOLICY_TIER_REGION_INCOMPRESSIBLE, at or below it unflagged. Makes
    /// the entry if there is none.
    public func setCompressibility(pid: Int32, region: UInt64, permille: UInt32) throws(BPFError) {
        try check(try write(MMPOLICY_TIER_WRITE_COMPRESSIBILITY, pid: pid, region: region, value: UInt64(permille)),
                  "set the compressibility of region \(hex(region)) of process \(pid)", map: regionMap)
    }

    // MARK: Writing through tier_write

    private static func key(_ pid: Int32, _ region: UInt64) -> mmpolicy_tier_region_key {
        var key = mmpolicy_tier_region_key()
        key.tgid = UInt32(bitPattern: pid)
        key.region = region
        return key
    }

    /// Runs tier_write once; its result (0, 1, or -errno).
    private func write(_ op: mmpolicy_tier_write_op, pid: Int32, region: UInt64 = 0, value: UInt64 = 0,
                       value2: UInt64 = 0) throws(BPFError) -> Int32 {
        var context = mmpolicy_tier_write()
        context.op = op.rawValue
        context.tgid = UInt32(bitPattern: pid)
        context.region = region
        context.value = value
        context.value2 = value2
        context.result = -Int32(EINVAL)
        try writer.run(context: &context)
        return context.result
    }

    /// Throws for a negative tier_write result.
    private func check(_ result: Int32, _ what: String, map: BPFMap) throws(BPFError) {
        guard result < 0 else { return }
        // SystemPackage's Errno, named only through BPFError (MMPolicyKinds does not import it).
        if -result == ENOENT {
            throw BPFError(.mapUpdate, object: object.name, map: map.name, errno: .some(.init(rawValue: ENOENT)),
                           reason: "cannot \(what): the process is not tracked",
                           fix: "Call track(pid:cgroupID:) first; a process that exited was untracked")
        }
        throw BPFError(.mapUpdate, object: object.name, map: map.name, errno: .some(.init(rawValue: -result)), reason: "cannot \(what)",
                       fix: -result == EINVAL ? "Rebuild the sensors object and mmpolicy from the same source (`make build`)" : nil)
    }

    private func hex(_ region: UInt64) -> String { "0x" + String(region << UInt64(MMPOLICY_TIER_REGION_SHIFT), radix: 16) }
}
