#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// The tiering engine's thread: the timers and PSI triggers of every
/// attached policy, and each plan from the callback to the record. Nothing
/// here is shared; the engine talks to it through its command loop.
final class TieringEngineLoop {
    let engine: TieringEngine
    let loop: CommandLoop<TieringEngine.Command>
    var environment: KindEnvironment { engine.environment }

    /// One attached policy and its running state.
    struct Attached {
        var instance: TieringPolicyInstance
        var validator: TieringValidator
        var psi: PSITrigger?
        var nextPlanNs: UInt64
        var lastPlanNs: UInt64
        var lastPressure: PressureStall?
        /// The processes the policy governs, as told to the sensors.
        var tracked: Set<Int32> = []
        /// When every tracked process's regions were last seeded (new mappings appear).
        var seededNs: UInt64 = 0
        /// Processes in the scope that `[protect]` keeps out (looked at again with the reseed).
        var excluded: Set<Int32> = []
        /// When residency (RssAnon, VmSwap) was last read.
        var residencyNs: UInt64 = 0
        /// Regions sampled before demotion (made on the first plan that demotes).
        var compressibility: CompressibilityGate?
    }

    /// How often every tracked process's anonymous regions are seeded again
    /// (a new process's are seeded when it is first tracked).
    static let reseedIntervalNs: UInt64 = 30_000_000_000
    /// How often every tracked process's resident and swapped bytes are read.
    static let residencyIntervalNs: UInt64 = 5_000_000_000

    var policies: [String: Attached] = [:]
    var sensors: TieringSensors?
    /// Processes tracked for some policy: pid -> the policies tracking it.
    var trackers: [Int32: Set<String>] = [:]

    init(engine: TieringEngine, loop: CommandLoop<TieringEngine.Command>) {
        self.engine = engine
        self.loop = loop
    }

    func run() {
        while true {
            let batch = loop.takeCommands()
            for command in batch.commands { run(command) }
            if batch.stopping { break }
            let names = policies.keys.sorted()
            var fds: [pollfd] = [], owners: [String] = []
            for name in names {
                guard let psi = policies[name]?.psi else { continue }
                fds.append(pollfd(fd: psi.rawValue, events: Int16(POLLPRI), revents: 0))
                owners.append(name)
            }
            _ = loop.wait(for: &fds, timeoutMs: timeoutMs())
            let now = monotonicNanoseconds()
            let pressured = Set(zip(fds, owners).filter { $0.0.revents != 0 }.map(\.1))
            for name in names {
                guard let attached = policies[name] else { continue }
                if pressured.contains(name) {
                    plan(name, trigger: .pressure, t0: now)
                } else if now >= attached.nextPlanNs {
                    plan(name, trigger: .periodic, t0: now)
                }
            }
        }
        for name in policies.keys.sorted() { detach(name) }
    }

    func timeoutMs() -> Int32 {
        guard let next = policies.values.map(\.nextPlanNs).min() else { return -1 }
        let now = monotonicNanoseconds()
        return next <= now ? 0 : Int32(min((next - now) / 1_000_000 + 1, 60_000))
    }

    // MARK: commands

    func run(_ command: TieringEngine.Command) {
        switch command {
        case .attach(let instance, let reply): reply.resume(Result { () throws(TieringAttachError) in try attach(instance) })
        case .detach(let name, let reply):
            detach(name)
            reply.resume()
        }
    }

    func attach(_ instance: TieringPolicyInstance) throws(TieringAttachError) {
        guard policies[instance.name] == nil else {
            throw TieringAttachError(policy: instance.name, reason: "a policy of that name is already attached",
                                     fix: "Unload it first, or load this one under another name")
        }
        if let other = policies.values.first(where: { $0.instance.scope.cgroupPath == instance.scope.cgroupPath }) {
            throw TieringAttachError(policy: instance.name, reason: "scope \(instance.scope) is already governed by tiering policy '\(other.instance.name)'",
                                     fix: "Unload '\(other.instance.name)' first, or attach this policy to another scope")
        }
        let sensors: TieringSensors
        switch engine.sensors() {
        case .success(let loaded): sensors = loaded
        case .failure(var error):
            error.policy = instance.name
            throw error
        }
        if policies.isEmpty {
            do { try sensors.attachPrograms() } catch {
                throw TieringAttachError(policy: instance.name, reason: "the tiering sensors could not be attached: \(error)",
                                         fix: "Check the kernel has the exceptions:page_fault_user and block:block_bio_queue tracepoints and BTF (tp_btf programs)")
            }
        }
        self.sensors = sensors
        var psi: PSITrigger?
        if let spec = instance.settings.psi {
            do { psi = try PSITrigger(spec: spec, path: pressurePath(of: instance)) } catch {
                if policies.isEmpty { sensors.detachPrograms() }
                throw TieringAttachError(policy: instance.name, reason: "its PSI trigger '\(spec)' cannot be armed: \(error)",
                                         fix: "Fix [tiering] psi in the manifest (windows must be multiples of 2 s without CAP_SYS_RESOURCE)")
            }
        }
        let validator = TieringValidator(daemonPID: environment.daemonPID, protect: instance.protect, settings: instance.settings,
                                         mount: environment.mount, scope: instance.scope)
        let now = monotonicNanoseconds()
        policies[instance.name] = Attached(instance: instance, validator: validator, psi: psi,
                                           nextPlanNs: now + instance.intervalNs, lastPlanNs: now,
                                           lastPressure: try? PressureStall.read(pressurePath(of: instance)))
        engine.health.open(instance.name)
        engine.totals.withLock { $0[instance.name] = TieringTotals() }
        refreshProcesses(instance.name)
    }

    func detach(_ name: String) {
        guard let attached = policies.removeValue(forKey: name) else { return }
        for pid in attached.tracked { untrack(pid, for: name) }
        if policies.isEmpty { sensors?.detachPrograms() }
        // A reclaim puts its memcg's limit back before it returns; one it
        // could not put back stays journaled under the policy's name. Its
        // zram, if the daemon set one up for it, is the slow tier's to tear
        // down or hand over (TieringSlowTier.release), not this restore's.
        let limits = environment.journal.entries(owner: name).filter { ZramSwapRecord($0) == nil }.map(\.path)
        for failure in environment.journal.restore(paths: limits) {
            environment.log("tiering: restoring a knob of '\(name)' failed: \(failure)")
        }
        engine.health.close(name)
        engine.totals.withLock { _ = $0.removeValue(forKey: name) }
    }

    /// The pressure file a policy's PSI trigger and its plans read: the
    /// scope's on cgroup v2, else the system's.
    func pressurePath(of instance: TieringPolicyInstance) -> String {
        if let path = instance.scope.cgroupPath, instance.scope.mount?.version == .v2 { return path + "/memory.pressure" }
        return "/proc/pressure/memory"
    }

    // MARK: processes

    /// Tells the sensors which processes policy `name` governs now: those
    /// in its scope (system: every user process), not the daemon, not
    /// protected. A process is looked at closely (its memory, its comm and
    /// cgroup for `[protect]`) when it is new, and every process again every
    /// ``reseedIntervalNs``; what is resident and swapped is read every
    /// ``residencyIntervalNs``: a plan on a host of a thousand processes
    /// stays cheap.
    func refreshProcesses(_ name: String) {
        guard var attached = policies[name], let sensors else { return }
        let clock = monotonicNanoseconds()
        let reseedAll = clock >= attached.seededNs + Self.reseedIntervalNs
        if reseedAll { attached.excluded = [] }
        let known = reseedAll ? Set<Int32>() : attached.tracked.union(attached.excluded)
        let present = processes(in: attached.instance.scope, known: known)
        // A protected process is not tracked at all: the policy never sees
        // it (the validator still refuses any action naming it).
        for pid in present where !known.contains(pid) && isProtected(pid, by: attached.validator) { attached.excluded.insert(pid) }
        attached.excluded.formIntersection(present)
        let now = present.subtracting(attached.excluded)
        for pid in attached.tracked.subtracting(now) { untrack(pid, for: name) }
        for pid in now.subtracting(attached.tracked) where trackers[pid, default: []].isEmpty {
            let cgroupID = memoryCgroupID(of: pid)
            do { try sensors.track(pid: pid, cgroupID: cgroupID) } catch {
                environment.log("tiering: cannot track pid \(pid) for '\(name)': \(error)")
                continue
            }
        }
        for pid in now { trackers[pid, default: []].insert(name) }
        // Memory a process touched before it was tracked never faults again:
        // without an entry per region a policy could not see it at all.
        for pid in reseedAll ? now : now.subtracting(attached.tracked) {
            guard let map = try? ProcessMemoryMap.read(pid: pid) else { continue }
            let regions = Set(map.anonymousRanges.flatMap { Self.regions(of: $0) })
            do { try sensors.seedRegions(pid: pid, regions: regions.sorted(), now: clock) } catch {
                environment.log("tiering: cannot seed the regions of pid \(pid) for '\(name)': \(error)")
            }
        }
        if reseedAll { attached.seededNs = clock }
        let readResidency = clock >= attached.residencyNs + Self.residencyIntervalNs || now != attached.tracked
        attached.tracked = now
        if readResidency { attached.residencyNs = clock }
        policies[name] = attached
        guard readResidency else { return }
        // What is resident and what is swapped, from the kernel's own
        // counters, and what of the demoted memory came back (the sensors').
        var swapped: UInt64 = 0, refaults: UInt64 = 0
        for pid in now {
            refaults += ((try? sensors.process(pid: pid)) ?? nil)?.refaults ?? 0
            guard let status = try? ProcessMemoryStatus.read(pid: pid) else { continue }
            try? sensors.setResidency(pid: pid, anonBytes: status.rssAnonBytes, swapBytes: status.swapBytes)
            swapped += status.swapBytes
        }
        engine.totals.withLock {
            $0[name]?.swappedBytes = swapped
            $0[name]?.refaultedPages = refaults
        }
    }

    func untrack(_ pid: Int32, for name: String) {
        trackers[pid]?.remove(name)
        if trackers[pid]?.isEmpty ?? true {
            trackers.removeValue(forKey: pid)
            try? sensors?.untrack(pid: pid)
        }
    }

    /// The processes a scope holds (system: every process with memory of
    /// its own; only pids not in `known` are looked at), without the daemon
    /// and its guardian, at most the sensors' capacity.
    func processes(in scope: ResolvedScope, known: Set<Int32>) -> Set<Int32> {
        let all: [Int32]
        if let path = scope.cgroupPath {
            all = CgroupTree.processes(under: path)
        } else {
            all = ProcessSnapshot.allPIDs().filter { pid in
                known.contains(pid) || (pid > 1 && ((try? ProcessMemoryStatus.read(pid: pid))?.rssAnonBytes ?? 0) > 0)
            }
        }
        // Not the daemon, nor its children (the guardian): a new pid is looked at once.
        let daemon = environment.daemonPID
        let ours = all.filter { pid in
            pid != daemon && (known.contains(pid) || (try? ProcessSnapshot.read(pid: pid))?.ppid != daemon)
        }
        return Set(ours.prefix(Int(TieringSensors.maxProcesses)))
    }

    /// Whether `[protect]` keeps `pid` out (the validator's rule).
    func isProtected(_ pid: Int32, by validator: TieringValidator) -> Bool {
        guard !validator.protect.comms.isEmpty || !validator.protect.cgroups.isEmpty,
              let comm = try? ProcessSnapshot.read(pid: pid).comm else { return false }
        let cgroup = environment.mount.flatMap { ProcessSnapshot.memoryCgroupPath(pid: pid, mount: $0) }
        return validator.protection(of: pid, comm: comm, cgroup: cgroup) != nil
    }

    func memoryCgroupID(of pid: Int32) -> UInt64 {
        guard let mount = environment.mount, let path = ProcessSnapshot.memoryCgroupPath(pid: pid, mount: mount) else { return 0 }
        var info = stat()
        return stat(path, &info) == 0 ? UInt64(info.st_ino) : 0
    }
}
