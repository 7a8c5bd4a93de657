#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import CMMPolicyABI
import MMPolicyCore

/// A decision whose record waits for something: the OOM to clear after a
/// kill (v1), or the kernel's own victim in observe mode.
struct PendingDecision {
    var policy: String
    /// Memory cgroup the OOM happened in; nil = system.
    var origin: String?
    var record: DecisionRecord
    var t0: UInt64
    var deadlineNs: UInt64
}

/// A cgroup v2 scope's decision point.
final class MemcgV2Watch {
    let path: String
    let events: FileModificationWatch?
    let psi: PSITrigger?
    var previous: MemcgV2.MemoryEvents?
    var settleUntilNs: UInt64 = 0
    var nextCheckNs: UInt64 = 0
    var steeredPID: Int32?

    init(path: String, events: FileModificationWatch?, psi: PSITrigger?) {
        self.path = path
        self.events = events
        self.psi = psi
        self.previous = try? MemcgV2(path: path).events()
    }
}

/// The OOM engine's thread: owns every decision point, runs the poll loop
/// and makes the decisions. Nothing here is shared; the engine talks to it
/// through its command queue.
final class OOMEngineLoop {
    let engine: OOMEngine
    var environment: OOMEngine.Environment { engine.environment }

    var policies: [String: OOMPolicyInstance] = [:]
    var running = true

    // cgroup v1
    var v1Notifiers: [String: OOMNotifier] = [:]
    /// Memcgs whose kernel killer this engine disabled.
    var v1Disabled: Set<String> = []
    var nextRescanNs: UInt64 = 0
    /// Memcgs handed to the kernel killer until their OOM clears.
    var fallbackPending: [String: Handover] = [:]

    /// A v1 OOM handed to the kernel: the group's kill count then, and since
    /// when its OOM looked clear.
    struct Handover {
        var killCount: UInt64
        var clearSinceNs: UInt64?
    }

    /// Room below the limit that means an OOM notification is stale: the
    /// charge that failed (up to a 2 MiB huge page) fits now, and the
    /// uncharge that made the room has already woken the waiting tasks.
    static let staleRoomBytes: UInt64 = 8 << 20
    /// How long a handed-over OOM must look clear, with no kernel kill seen,
    /// before the kernel killer is disabled again.
    static let handoverQuietNs: UInt64 = 500_000_000
    var awaitingClear: [PendingDecision] = []
    var pendingObserved: [PendingDecision] = []
    /// Kernel victims seen recently (sensor), to match observe-mode decisions made after them.
    var recentKernelVictims: [(timeNs: UInt64, pid: Int32, path: String?)] = []

    // cgroup v2
    var v2Watches: [String: MemcgV2Watch] = [:]

    // system
    var sensors: OOMSensors?
    var systemPSI: PSITrigger?
    var nextSystemCheckNs: UInt64 = 0
    var systemSettleUntilNs: UInt64 = 0

    static let rescanIntervalNs: UInt64 = 1_000_000_000
    static let clearTimeoutNs: UInt64 = 2_000_000_000
    static let observeMatchWindowNs: UInt64 = 2_000_000_000

    init(engine: OOMEngine) {
        self.engine = engine
        if let path = engine.environment.sensorObjectPath {
            do {
                sensors = try OOMSensors(objectPath: path)
            } catch {
                engine.environment.log("the in-kernel OOM sensors (\(path)) could not be loaded, so system scope falls back to polling: \(error)")
            }
        } else {
            engine.environment.log("no sensor object (sensors/oom_sensors.bpf.o) on the object search path, so system scope falls back to polling")
        }
    }

    // MARK: loop

    func run() {
        while running {
            runCommands()
            guard running else { break }
            var fds: [pollfd] = [pollfd(fd: engine.wake.rawValue, events: Int16(POLLIN), revents: 0)]
            var notifierPaths: [String] = []
            for (path, notifier) in v1Notifiers {
                fds.append(pollfd(fd: notifier.rawValue, events: Int16(POLLIN), revents: 0))
                notifierPaths.append(path)
            }
            let sensorIndex = sensors.map { fds.append(pollfd(fd: $0.pollFD, events: Int16(POLLIN), revents: 0)); return fds.count - 1 }
            let psiIndex = systemPSI.map { fds.append(pollfd(fd: $0.rawValue, events: Int16(POLLPRI), revents: 0)); return fds.count - 1 }
            var v2Indices: [(name: String, events: Int?, psi: Int?)] = []
            for (name, watch) in v2Watches {
                let e = watch.events.map { fds.append(pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0)); return fds.count - 1 }
                let p = watch.psi.map { fds.append(pollfd(fd: $0.rawValue, events: Int16(POLLPRI), revents: 0)); return fds.count - 1 }
                v2Indices.append((name, e, p))
            }

            let n = poll(&fds, nfds_t(fds.count), timeoutMs())
            let t0 = monotonicNanoseconds()
            if n < 0 && errno != EINTR { environment.log("poll failed: errno \(errno)") }
            if fds[0].revents != 0 { _ = engine.wake.read() }

            // Kernel signals first: they time-stamp what the kernel did.
            var systemWake = false, systemPressure = false
            var systemWokenBy = "poll", systemEventNs: UInt64? = nil
            if let sensorIndex, fds[sensorIndex].revents != 0 || n == 0, let sensors {
                do {
                    for event in try sensors.drain() {
                        switch event.kind {
                        case .markVictim: handleKernelKill(event, now: t0)
                        case .directReclaim, .kswapdWake, .rssBudget:
                            if !systemWake {
                                systemWokenBy = event.kind == .rssBudget ? "rss-budget" : event.kind == .kswapdWake ? "kswapd-wake" : "direct-reclaim"
                                systemEventNs = event.timeNs
                            }
                            systemWake = true
                        case .memcgReclaim: break
                        }
                    }
                } catch { environment.log("reading the OOM sensors failed: \(error)") }
            }
            if let psiIndex, fds[psiIndex].revents != 0 {
                if !systemWake { systemWokenBy = "psi" }
                systemWake = true
                systemPressure = true
            }

            var fired: [String] = []
            for (offset, path) in notifierPaths.enumerated() where fds[offset + 1].revents != 0 {
                if let notifier = v1Notifiers[path], notifier.consume() > 0 { fired.append(path) }
            }
            if !fired.isEmpty { handleV1(fired: fired, t0: t0) }

            for (name, eventsIndex, psiIndex) in v2Indices {
                guard let watch = v2Watches[name], let policy = policies[name] else { continue }
                var wokenBy = "poll", pressure = false
                if let eventsIndex, fds[eventsIndex].revents != 0 { _ = watch.events?.drain(); wokenBy = "memory-events" }
                if let psiIndex, fds[psiIndex].revents != 0 {
                    if wokenBy == "poll" { wokenBy = "psi" }
                    pressure = true
                }
                if wokenBy != "poll" || t0 >= watch.nextCheckNs { checkV2(watch, policy, t0: t0, pressure: pressure, wokenBy: wokenBy) }
            }

            if systemWake || t0 >= nextSystemCheckNs {
                checkSystem(t0: t0, pressure: systemPressure, wokenBy: systemWokenBy, eventNs: systemEventNs)
            }
            if t0 >= nextRescanNs { reconcileV1(); nextRescanNs = t0 + Self.rescanIntervalNs }
            serviceFallbacks(now: t0)
            serviceAwaitingClear(now: t0)
            servicePendingObserved(now: t0)
        }
        shutDown()
    }

    func timeoutMs() -> Int32 {
        let now = monotonicNanoseconds()
        if !fallbackPending.isEmpty || !awaitingClear.isEmpty { return 2 }
        var next = nextRescanNs
        if systemPolicy != nil { next = min(next, nextSystemCheckNs) }
        for watch in v2Watches.values { next = min(next, watch.nextCheckNs) }
        for pending in pendingObserved { next = min(next, pending.deadlineNs) }
        guard next > now else { return 0 }
        return Int32(min((next - now) / 1_000_000 + 1, 1000))
    }

    // MARK: commands

    func runCommands() {
        let pending = engine.commands.withLock { commands -> [OOMEngine.Command] in
            defer { commands.removeAll() }
            return commands
        }
        for command in pending {
            switch command {
            case .attach(let instance, let continuation):
                do {
                    try attach(instance)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            case .detach(let name, let continuation):
                detach(name)
                continuation.resume()
            case .stop:
                running = false
            }
        }
    }

    func attach(_ instance: OOMPolicyInstance) throws(OOMAttachError) {
        guard policies[instance.name] == nil else {
            throw OOMAttachError(policy: instance.name, reason: "a policy of that name is already attached",
                                 fix: "Unload it first, or load this one under another name")
        }
        if let other = policies.values.first(where: { $0.scope.cgroupPath == instance.scope.cgroupPath }) {
            throw OOMAttachError(policy: instance.name, reason: "scope \(instance.scope) is already governed by oom policy '\(other.name)'",
                                 fix: "Unload '\(other.name)' first, or attach this policy to a different (disjoint or nested) scope")
        }
        engine.counters.withLock { $0[instance.name] = OOMDecisionCounters() }
        switch domain(of: instance) {
        case .system:
            if let trigger = instance.trigger.psi {
                do {
                    systemPSI = try PSITrigger(spec: trigger, path: "/proc/pressure/memory")
                } catch {
                    engine.counters.withLock { _ = $0.removeValue(forKey: instance.name) }
                    throw OOMAttachError(policy: instance.name, reason: "its PSI trigger '\(trigger)' cannot be armed: \(error)",
                                         fix: "Fix [trigger] psi in the manifest (windows must be multiples of 2 s here)")
                }
            }
            policies[instance.name] = instance
            nextSystemCheckNs = 0
        case .v2(let path):
            let events = try? FileModificationWatch(path: path + "/memory.events")
            var psi: PSITrigger?
            if let trigger = instance.trigger.psi { psi = try? PSITrigger(spec: trigger, path: path + "/memory.pressure") }
            policies[instance.name] = instance
            v2Watches[instance.name] = MemcgV2Watch(path: path, events: events, psi: psi)
        case .v1:
            policies[instance.name] = instance
            reconcileV1()
        }
    }

    func detach(_ name: String) {
        guard let instance = policies.removeValue(forKey: name) else { return }
        switch domain(of: instance) {
        case .system:
            systemPSI = nil
            try? sensors?.disarm()
        case .v2:
            if let watch = v2Watches.removeValue(forKey: name), let pid = watch.steeredPID {
                environment.journal.restore(paths: ["/proc/\(pid)/oom_score_adj"])
            }
        case .v1:
            reconcileV1()
        }
        // Records still waiting on this policy are written now.
        for pending in awaitingClear where pending.policy == name { emit(pending.record, policy: name) }
        awaitingClear.removeAll { $0.policy == name }
        for pending in pendingObserved where pending.policy == name { emit(pending.record, policy: name) }
        pendingObserved.removeAll { $0.policy == name }
        // A memcg an enclosing policy governs now keeps its killer off, so it
        // keeps its journal entry too (restored when it leaves `v1Disabled`).
        let stillDisabled = Set(v1Disabled.map { $0 + "/memory.oom_control" })
        environment.journal.restore(paths: environment.journal.entries(owner: name).map(\.path).filter { !stillDisabled.contains($0) })
        engine.counters.withLock { _ = $0.removeValue(forKey: name) }
    }

    func shutDown() {
        for name in policies.keys.sorted() { detach(name) }
        sensors = nil
    }

    enum Domain { case system, v1(String), v2(String) }

    func domain(of instance: OOMPolicyInstance) -> Domain {
        guard let path = instance.scope.cgroupPath, let mount = instance.scope.mount else { return .system }
        return mount.version == .v1 ? .v1(path) : .v2(path)
    }

    var systemPolicy: OOMPolicyInstance? {
        policies.values.first { if case .system = domain(of: $0) { return true } else { return false } }
    }

    /// The cgroup-scoped policy governing memcg `path`: the one with the deepest scope containing it.
    func governor(of path: String, version: MemoryCgroupMount.Version) -> OOMPolicyInstance? {
        var best: OOMPolicyInstance?
        for policy in policies.values {
            guard let scope = policy.scope.cgroupPath, policy.scope.mount?.version == version,
                  OOMVictimValidator.isWithin(path, scope) else { continue }
            if best == nil || scope.count > best!.scope.cgroupPath!.count { best = policy }
        }
        return best
    }

    // MARK: cgroup v1

    /// Registers an OOM eventfd on every memcg of every v1 scope (new
    /// children included) and keeps the kernel killer disabled exactly on
    /// those governed by a policy, restoring the rest from the journal.
    func reconcileV1() {
        var wanted: [String: OOMPolicyInstance] = [:]
        for policy in policies.values {
            guard case .v1(let root) = domain(of: policy) else { continue }
            for path in CgroupTree.descendants(of: root) {
                if let current = wanted[path], current.scope.cgroupPath!.count >= root.count { continue }
                wanted[path] = policy
            }
        }
        for path in Array(v1Notifiers.keys) where wanted[path] == nil { v1Notifiers.removeValue(forKey: path) }
        for path in wanted.keys.sorted() where v1Notifiers[path] == nil {
            do { v1Notifiers[path] = try OOMNotifier(memcg: path) } catch {
                environment.log("cannot watch \(path) for OOM: \(error)")
            }
        }
        let shouldDisable = Set(wanted.keys.filter { v1Notifiers[$0] != nil })
        let release = v1Disabled.subtracting(shouldDisable)
        if !release.isEmpty {
            for failure in environment.journal.restore(paths: release.map { $0 + "/memory.oom_control" }) {
                environment.log("restoring the kernel OOM killer failed: \(failure)")
            }
            v1Disabled.subtract(release)
            for path in release { fallbackPending.removeValue(forKey: path) }
        }
        // Parents first, so a child's inherited value is journaled as its parent's original.
        for path in shouldDisable.subtracting(v1Disabled).sorted(by: { $0.count < $1.count }) {
            let parent = parentDirectory(of: path)
            let inherited = environment.journal.original(of: parent + "/memory.oom_control")
            do {
                try environment.journal.write("1", to: path + "/memory.oom_control", owner: wanted[path]!.name) { text in
                    if let inherited, text.contains("oom_kill_disable 1") { return inherited }
                    return text.contains("oom_kill_disable 1") ? "1" : "0"
                }
                v1Disabled.insert(path)
            } catch {
                environment.log("cannot disable the kernel OOM killer on \(path): \(error)")
            }
        }
    }

    func handleV1(fired: [String], t0: UInt64) {
        let firedSet = Set(fired)
        // The OOM is in the topmost memcg that fired: v1 notifies the group
        // that hit its limit and every group below it.
        let origins = fired.filter { path in
            var parent = parentDirectory(of: path)
            while parent.count > 1 {
                if firedSet.contains(parent) { return false }
                parent = parentDirectory(of: parent)
            }
            return true
        }
        for origin in origins.sorted() {
            guard let policy = governor(of: origin, version: .v1), fallbackPending[origin] == nil else { continue }
            guard access(origin, F_OK) == 0 else { v1Notifiers.removeValue(forKey: origin); continue }
            guard (try? MemcgV1(path: origin).oomControl().underOOM) == true else { continue }
            let memcg = MemcgV1(path: origin)
            let limit = ((try? memcg.limitBytes()) ?? nil) ?? 0, usage = (try? memcg.usageBytes()) ?? 0
            // A notification from a task that retried while a kill was still
            // freeing memory: there is room now and the task has been woken.
            if limit > 0, usage + Self.staleRoomBytes < limit { continue }
            // Still under OOM after an earlier kill: that record is final now.
            if let index = awaitingClear.firstIndex(where: { $0.origin == origin }) {
                var pending = awaitingClear.remove(at: index)
                pending.record.detail = pending.record.detail.isEmpty ? "the OOM persisted after the kill" : pending.record.detail
                emit(pending.record, policy: pending.policy)
            }
            let scope = (try? ResolvedScope.cgroup(origin, mount: policy.scope.mount)) ?? policy.scope
            decide(policy, origin: origin, scope: scope, trigger: .memcgOOM, limit: limit, usage: usage, t0: t0,
                   wokenBy: "memcg-eventfd")
        }
    }

    /// Hands memcg `origin`'s OOM to the kernel killer until it clears.
    ///
    /// This and ``serviceFallbacks(now:)`` write oom_kill_disable without the
    /// journal, and need not go through it: a memcg is in `v1Disabled` only
    /// after `journal.write` journaled its original, and the entry stays until
    /// the memcg leaves `v1Disabled`. So a daemon killed mid-handover is
    /// restored like any other (and the OOM path takes no SQLite write).
    func handToKernel(_ origin: String, now: UInt64) {
        guard v1Disabled.contains(origin) else { return }
        do {
            let memcg = MemcgV1(path: origin)
            let kills = (try? memcg.oomControl().oomKillCount) ?? 0
            try memcg.setOOMKillDisable(false)
            fallbackPending[origin] = Handover(killCount: kills, clearSinceNs: nil)
        } catch {
            environment.log("handing \(origin)'s OOM to the kernel failed: \(error)")
        }
    }

    /// Re-disables the kernel killer on handed-over memcgs once their OOM is
    /// over: the kernel killed (its count went up) and under_oom is clear, or
    /// under_oom stayed clear for a while (the OOM resolved without a kill).
    /// under_oom alone is not enough: it drops for a moment while woken tasks
    /// retry their charge, before the kernel gets to kill.
    func serviceFallbacks(now: UInt64) {
        for (origin, handover) in fallbackPending {
            guard let control = try? MemcgV1(path: origin).oomControl() else { fallbackPending.removeValue(forKey: origin); continue }
            guard !control.underOOM else {
                fallbackPending[origin]?.clearSinceNs = nil
                continue
            }
            let clearSince = handover.clearSinceNs ?? now
            fallbackPending[origin]?.clearSinceNs = clearSince
            guard control.oomKillCount > handover.killCount || now - clearSince >= Self.handoverQuietNs else { continue }
            fallbackPending.removeValue(forKey: origin)
            if v1Disabled.contains(origin) {
                do { try MemcgV1(path: origin).setOOMKillDisable(true) } catch {
                    environment.log("re-disabling the kernel OOM killer on \(origin) failed: \(error)")
                }
            }
        }
    }

    func serviceAwaitingClear(now: UInt64) {
        var keep: [PendingDecision] = []
        for var pending in awaitingClear {
            let cleared = pending.origin.flatMap { try? MemcgV1(path: $0).oomControl() }.map { !$0.underOOM } ?? true
            if cleared {
                pending.record.latency.clearedUs = Double(monotonicNanoseconds() - pending.t0) / 1000
                emit(pending.record, policy: pending.policy)
            } else if now >= pending.deadlineNs {
                pending.record.detail = "the OOM had not cleared \(Self.clearTimeoutNs / 1_000_000) ms after the kill"
                emit(pending.record, policy: pending.policy)
            } else {
                keep.append(pending)
            }
        }
        awaitingClear = keep
    }

    // MARK: cgroup v2

    func checkV2(_ watch: MemcgV2Watch, _ policy: OOMPolicyInstance, t0: UInt64, pressure: Bool, wokenBy: String = "poll") {
        watch.nextCheckNs = t0 + 1_000_000_000
        let memcg = MemcgV2(path: watch.path)
        guard let events = try? memcg.events() else { return }
        defer { watch.previous = events }
        let max = try? memcg.max()
        let unreclaimable = Self.unreclaimableBytes(of: watch.path)
        let act = MemcgV2EarlyTrigger.shouldAct(unreclaimable: unreclaimable, max: max ?? nil, events: events, previous: watch.previous,
                                               headroomPercent: policy.trigger.memcgHeadroomPercent, pressure: pressure)
        if act && t0 >= watch.settleUntilNs {
            let kernelWasFirst = watch.previous.map { events.oom > $0.oom || events.oomKill > $0.oomKill } ?? false
            decide(policy, origin: watch.path, scope: policy.scope, trigger: kernelWasFirst ? .memcgOOM : .pressure,
                   limit: (max ?? nil) ?? 0, usage: (try? memcg.current()) ?? 0, t0: t0, wokenBy: wokenBy)
            watch.settleUntilNs = monotonicNanoseconds() + (policy.mode == .enforce ? 100_000_000 : 1_000_000_000)
        } else if policy.trigger.steerOOMScoreAdj && policy.mode == .enforce {
            steer(watch, policy)
        }
    }

    /// anon + shmem from memory.stat: what reclaim cannot drop without swap.
    static func unreclaimableBytes(of path: String) -> UInt64 {
        guard let text = try? String(contentsOfProcFile: path + "/memory.stat") else { return 0 }
        var total: UInt64 = 0
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, parts[0] == "anon" || parts[0] == "shmem", let value = UInt64(parts[1]) else { continue }
            total += value
        }
        return total
    }

    /// Keeps oom_score_adj 1000 on the policy's current choice, so that if
    /// the kernel's killer gets there first it kills the same process.
    func steer(_ watch: MemcgV2Watch, _ policy: OOMPolicyInstance) {
        let request = OOMRequest(trigger: .test, scope: policy.scope, limitBytes: 0, daemonPID: environment.daemonPID)
        guard let decision = try? policy.selector.selectVictim(request), decision.decided, decision.victimCgroupID == nil,
              decision.victimPID != watch.steeredPID,
              case .success = policy.validator.validate(pid: decision.victimPID, within: watch.path) else { return }
        if let previous = watch.steeredPID { environment.journal.restore(paths: ["/proc/\(previous)/oom_score_adj"]) }
        do {
            try environment.journal.write("1000", to: "/proc/\(decision.victimPID)/oom_score_adj", owner: policy.name)
            watch.steeredPID = decision.victimPID
        } catch {
            watch.steeredPID = nil
            environment.log("steering oom_score_adj of pid \(decision.victimPID) failed: \(error)")
        }
    }

    // MARK: system

    func checkSystem(t0: UInt64, pressure: Bool, wokenBy: String = "poll", eventNs: UInt64? = nil) {
        guard let policy = systemPolicy else { return }
        guard let memory = try? MemInfo.read() else { return }
        // Poll adaptively as earlyoom does: sooner when the headroom would
        // fill in under a second at 6 GiB/s (10 ms at most 60 MiB above the
        // line). The sensors' RSS budget wakes the daemon within ~0.1 ms of
        // the growth that spends it, but memory that is no process's RSS
        // (tmpfs and memfd pages, the kernel's own) also eats the headroom,
        // and only a fresh MemAvailable re-arms the budget to match: the poll
        // bounds the reaction, the sensors make it immediate.
        let threshold = UInt64(Double(memory.memTotal) * policy.trigger.memAvailablePercent / 100)
        let headroom = memory.memAvailable > threshold ? memory.memAvailable - threshold : 0
        let pollNs = Swift.max(10_000_000, Swift.min(1_000_000_000, headroom / 6))
        nextSystemCheckNs = t0 + pollNs
        if let sensors { try? sensors.arm(budgetBytes: SystemShortage.wakeBudget(memory, policy.trigger)) }
        guard t0 >= systemSettleUntilNs, SystemShortage.isShort(memory, policy.trigger, pressure: pressure) else { return }
        decide(policy, origin: nil, scope: .system, trigger: pressure ? .pressure : .lowMemory,
               limit: memory.memTotal + memory.swapTotal,
               usage: (memory.memTotal - memory.memAvailable) + (memory.swapTotal - memory.swapFree), t0: t0,
               wokenBy: wokenBy, eventNs: eventNs)
        systemSettleUntilNs = monotonicNanoseconds() + (policy.mode == .enforce ? 50_000_000 : 1_000_000_000)
        nextSystemCheckNs = Swift.min(nextSystemCheckNs, systemSettleUntilNs)
    }

    // MARK: deciding

    /// Asks `policy` for a victim for an OOM in `origin` (nil = system),
    /// validates, and kills or falls back; records the outcome.
    func decide(_ policy: OOMPolicyInstance, origin: String?, scope: ResolvedScope, trigger: OOMTrigger,
                limit: UInt64, usage: UInt64, t0: UInt64, wokenBy: String? = nil, eventNs: UInt64? = nil) {
        var record = DecisionRecord(trigger: trigger.name, scope: policy.scope.description, origin: origin ?? "system",
                                    outcome: .fallback)
        record.wokenBy = wokenBy
        record.latency.wakeUs = eventNs.map { t0 > $0 ? Double(t0 - $0) / 1000 : 0 }
        let request = OOMRequest(trigger: trigger, scope: scope, limitBytes: limit, usageBytes: usage,
                                 shortfallBytes: usage > limit ? usage - limit : 0, daemonPID: environment.daemonPID)
        let callStart = monotonicNanoseconds()
        let decision: OOMDecision
        do {
            decision = try policy.selector.selectVictim(request)
        } catch {
            record.detail = "select_victim failed: \(error)"
            count(policy, .error)
            return fallBack(policy, origin: origin, record: record, t0: t0)
        }
        let decided = monotonicNanoseconds()
        record.latency.decisionUs = Double(decided - t0) / 1000
        record.latency.callbackUs = Double(decided - callStart) / 1000
        record.candidates = decision.candidates
        guard decided - t0 <= policy.deadlineNs else {
            record.detail = "select_victim missed its deadline: \(Self.ms(decided - t0)) > \(Self.ms(policy.deadlineNs))"
            count(policy, .deadlineMiss)
            return fallBack(policy, origin: origin, record: record, t0: t0)
        }
        guard decision.decided || decision.status == UInt32(MMPOLICY_NO_DECISION.rawValue) else {
            record.detail = "select_victim failed: it returned \(Int32(bitPattern: decision.status)) (neither MMPOLICY_DECIDED nor MMPOLICY_NO_DECISION)"
            count(policy, .error)
            return fallBack(policy, origin: origin, record: record, t0: t0)
        }
        guard decision.decided else {
            record.detail = "the policy made no decision (status \(decision.status), \(decision.candidates) candidates)"
            count(policy, .noDecision)
            return fallBack(policy, origin: origin, record: record, t0: t0)
        }
        record.score = decision.score
        record.reason = decision.reason.name
        record.victimPID = decision.victimCgroupID == nil ? decision.victimPID : nil

        let victims: [ValidatedVictim]
        let within = origin ?? environment.mount?.path
        if let groupID = decision.victimCgroupID {
            switch policy.validator.validateGroup(id: groupID, within: within ?? "/") {
            case .success(let group):
                victims = group.victims
                record.victimCgroup = group.path
            case .failure(let rejection):
                record.outcome = .rejected
                record.detail = rejection.reason
                count(policy, .rejection)
                return fallBack(policy, origin: origin, record: record, t0: t0)
            }
        } else {
            switch policy.validator.validate(pid: decision.victimPID, within: origin) {
            case .success(let victim): victims = [victim]
            case .failure(let rejection):
                record.outcome = .rejected
                record.detail = rejection.reason
                count(policy, .rejection)
                return fallBack(policy, origin: origin, record: record, t0: t0)
            }
        }
        record.victimComm = victims.count == 1 ? victims[0].process.comm : "\(victims.count) processes"
        record.victimRSSBytes = victims.reduce(0) { $0 + $1.process.rssBytes }

        if policy.mode == .observe {
            record.outcome = .observed
            count(policy, .observed)
            let now = monotonicNanoseconds()
            var pending = PendingDecision(policy: policy.name, origin: origin, record: record, t0: t0,
                                          deadlineNs: now + (origin == nil ? 10 : 2) * 1_000_000_000)
            if let origin { handToKernel(origin, now: now) }
            if let seen = recentKernelVictims.first(where: { $0.timeNs + Self.observeMatchWindowNs >= t0 && Self.contains(origin, $0.path) }) {
                pending.record.kernelVictimPID = seen.pid
                emit(pending.record, policy: policy.name)
            } else {
                pendingObserved.append(pending)
            }
            return
        }

        let result = OOMKiller.kill(victims)
        record.latency.killUs = Double(result.killedNs - t0) / 1000
        record.latency.releasedUs = result.releasedNs.map { Double($0 - t0) / 1000 }
        record.outcome = .enforced
        record.detail = result.problems.joined(separator: "; ")
        if !result.killed.isEmpty { count(policy, .enforced(kills: result.killed.count)) }
        if result.killed.isEmpty {
            record.outcome = .fallback
            count(policy, .killFailed)
            return fallBack(policy, origin: origin, record: record, t0: t0)
        }
        if let origin, case .v1 = domain(of: policy) {
            awaitingClear.append(PendingDecision(policy: policy.name, origin: origin, record: record, t0: t0,
                                                 deadlineNs: t0 + Self.clearTimeoutNs))
        } else {
            emit(record, policy: policy.name)
        }
    }

    func count(_ policy: OOMPolicyInstance, _ outcome: OOMDecisionOutcome) {
        engine.counters.withLock { counters in
            guard var entry = counters[policy.name] else { return }
            outcome.apply(to: &entry)
            counters[policy.name] = entry
        }
    }

    func fallBack(_ policy: OOMPolicyInstance, origin: String?, record: DecisionRecord, t0: UInt64) {
        // v1 scopes run with the kernel killer disabled in both modes: the
        // OOM goes back to the kernel until it clears.
        if let origin, case .v1 = domain(of: policy) { handToKernel(origin, now: monotonicNanoseconds()) }
        emit(record, policy: policy.name)
    }

    // MARK: kernel kills and observe mode

    func handleKernelKill(_ event: SensorEvent, now: UInt64) {
        let path = environment.mount.flatMap { CgroupTree.directory(withID: event.cgroupID, under: $0.path) }
        // A kill in a governed memcg belongs to its policy; anything else to
        // no policy (the system-scope policy decides system-wide shortages,
        // not other memcgs' OOMs).
        let governing = path.flatMap { governor(of: $0, version: environment.mount?.version ?? .v1) }
        let comm = event.comm
        environment.record(EventRecord(
            timeNs: wallClockNanoseconds(), type: .kernelKill, policy: governing?.name,
            summary: "the kernel OOM killer chose pid \(event.pid) (\(comm)) in \(path ?? "cgroup id \(event.cgroupID)"), \(event.value >> 20) MiB resident"))
        if let governing, governing.mode == .enforce {
            engine.counters.withLock { $0[governing.name]?.kills += 1 }
        }
        recentKernelVictims.append((now, event.pid, path))
        recentKernelVictims.removeAll { $0.timeNs + Self.observeMatchWindowNs < now }
        if let index = pendingObserved.firstIndex(where: { Self.contains($0.origin, path) }) {
            var pending = pendingObserved.remove(at: index)
            pending.record.kernelVictimPID = event.pid
            emit(pending.record, policy: pending.policy)
        }
    }

    func servicePendingObserved(now: UInt64) {
        let expired = pendingObserved.filter { $0.deadlineNs <= now }
        pendingObserved.removeAll { $0.deadlineNs <= now }
        for pending in expired { emit(pending.record, policy: pending.policy) }
    }

    /// Whether an OOM in `origin` (nil = system) covers memcg `path`.
    static func contains(_ origin: String?, _ path: String?) -> Bool {
        guard let origin else { return true }
        guard let path else { return false }
        return OOMVictimValidator.isWithin(path, origin)
    }

    // MARK: records

    func emit(_ record: DecisionRecord, policy: String) {
        environment.record(EventRecord(timeNs: wallClockNanoseconds(), type: .decision, policy: policy,
                                       summary: Self.summary(record, policy: policy), decision: record))
    }

    static func summary(_ r: DecisionRecord, policy: String) -> String {
        let victim = r.victimCgroup.map { "cgroup \($0)" } ?? r.victimPID.map { "pid \($0) (\(r.victimComm ?? "?"))" } ?? "no victim"
        let steps = [("decided", r.latency.decisionUs), ("SIGKILL", r.latency.killUs), ("released", r.latency.releasedUs), ("cleared", r.latency.clearedUs)]
            .compactMap { name, us in us.map { "\(name) \(decimalString($0 / 1000, places: 2)) ms" } }.joined(separator: ", ")
        let detail = r.detail.isEmpty ? "" : ": \(r.detail)"
        switch r.outcome {
        case .enforced: return "\(r.trigger) in \(r.origin): killed \(victim), \(r.reason ?? "") score \(r.score ?? 0) of \(r.candidates) candidates; \(steps)\(detail)"
        case .observed:
            let kernel = r.kernelVictimPID.map { $0 == r.victimPID ? "; the kernel chose the same" : "; the kernel chose pid \($0)" } ?? ""
            return "\(r.trigger) in \(r.origin): would kill \(victim) (observe)\(kernel)"
        case .rejected: return "\(r.trigger) in \(r.origin): rejected \(victim)\(detail); handed to the kernel"
        case .fallback: return "\(r.trigger) in \(r.origin): fell back to the kernel\(detail)"
        }
    }

    static func ms(_ ns: UInt64) -> String { decimalString(Double(ns) / 1e6, places: 2) + " ms" }
}
