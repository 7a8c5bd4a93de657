#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore

/// A decision whose record waits for something: the OOM to clear after a
/// kill (v1), or the kernel's own victim in observe mode.
struct PendingDecision {
    var policy: String
    /// Memory cgroup the OOM happened in; nil = system.
    var origin: String?
    var record: OOMRecord
    var t0: UInt64
    var deadlineNs: UInt64
    /// A kill's victims, held by their pidfds until the record is final.
    var victims: [PidFD] = []
    /// The memcg's usage when the policy decided, and the victims' resident
    /// memory then: how much the kill should give back.
    var usageAtKill: UInt64 = 0
    var victimBytes: UInt64 = 0
    /// The memcg notified an OOM again while the kill was settling.
    var notifiedAgain = false

    /// Whether a victim of the kill is still on its way out (its memory
    /// may not be free yet, even when process_mrelease found nothing to reap).
    var victimsExiting: Bool { victims.contains { !$0.hasExited } }

    /// Whether the kill has not given its memory back yet, judged by the
    /// memcg's `usage` now: a dead victim's pages can still be on their way
    /// back (the last holder of its mm frees them, which may be a /proc
    /// reader rather than the victim). Bounded by `settleNs` after the kill.
    func stillReleasing(usage: UInt64, now: UInt64, settleNs: UInt64) -> Bool {
        guard !victims.isEmpty, now < t0 + settleNs else { return false }
        if victimsExiting { return true }
        return usage + victimBytes / 2 > usageAtKill
    }
}

/// The OOM engine's thread: owns every decision point, runs the poll loop
/// and makes the decisions. Nothing here is shared; the engine talks to it
/// through its command loop.
///
/// The loop and its commands are here; each concern is an extension of its
/// own: cgroup v1 (`+V1`), cgroup v2 (`+V2`), system scope (`+System`),
/// deciding (`+Decide`, with the pure `OOMVerdict`), and kernel kills and
/// observe mode (`+Observe`). Stored state lives here, grouped the same way.
final class OOMEngineLoop {
    let engine: OOMEngine
    let loop: CommandLoop<OOMEngine.Command>
    var environment: KindEnvironment { engine.environment }

    var policies: [String: OOMPolicyInstance] = [:]

    // knob journal (+Journal)
    /// The journal entries of the knobs this engine changed, by knob path:
    /// what a restore writes back, without reading the database.
    var journaled: [String: KnobJournalEntry] = [:]
    /// Knobs with a journal-then-write job at the worker, and its owner.
    var journalInFlight: [String: String] = [:]
    /// Memcgs whose journal job failed, until one succeeds or the memcg is
    /// no longer wanted: the kernel killer stays on there (``problems(of:)``).
    var journalFailures: [String: JournalFailure] = [:]

    // cgroup v1 (+V1)
    var v1Notifiers: [String: OOMNotifier] = [:]
    /// Memcgs whose kernel killer this engine disabled (journaled first):
    /// the governed ones.
    var v1Disabled: Set<String> = []
    var nextRescanNs: UInt64 = 0
    /// Memcgs handed to the kernel killer until their OOM clears.
    var fallbackPending: [String: Handover] = [:]
    var awaitingClear: [PendingDecision] = []
    /// v1 scopes told to the guardian's watch, with their bounds (+Holds).
    var heldRoots: [String: UInt64] = [:]

    // observe mode (+Observe)
    var pendingObserved: [PendingDecision] = []
    /// Kernel victims seen recently (sensor), to match observe-mode decisions made after them.
    var recentKernelVictims: [(timeNs: UInt64, pid: Int32, path: String?)] = []

    // cgroup v2 (+V2)
    var v2Watches: [String: MemcgV2Watch] = [:]

    // system (+System)
    var sensors: OOMSensors?
    var systemPSI: PSITrigger?
    var nextSystemCheckNs: UInt64 = 0
    var systemSettleUntilNs: UInt64 = 0
    /// Sensor events lost to a full ring buffer that were already logged.
    var reportedSensorDrops: UInt64 = 0

    init(engine: OOMEngine, loop: CommandLoop<OOMEngine.Command>) {
        self.engine = engine
        self.loop = loop
        if let path = engine.sensorObjectPath {
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
        while true {
            let batch = loop.takeCommands()
            for command in batch.commands { run(command) }
            if batch.stopping { break }
            var fds: [pollfd] = []
            var notifierPaths: [String] = []
            for (path, notifier) in v1Notifiers {
                fds.append(pollfd(fd: notifier.rawValue, events: Int16(POLLIN), revents: 0))
                notifierPaths.append(path)
            }
            let sensorIndex = sensors.map { fds.append(pollfd(fd: $0.pollFD, events: Int16(POLLIN), revents: 0)); return fds.count - 1 }
            let psiIndex = systemPSI.map { fds.append(pollfd(fd: $0.rawValue, events: Int16(POLLPRI), revents: 0)); return fds.count - 1 }
            let handoverIndex = environment.oomHolds.map {
                fds.append(pollfd(fd: $0.handoverArrived.rawValue, events: Int16(POLLIN), revents: 0)); return fds.count - 1
            }
            var v2Indices: [(name: String, events: Int?, psi: Int?)] = []
            for (name, watch) in v2Watches {
                let e = watch.events.map { fds.append(pollfd(fd: $0.rawValue, events: Int16(POLLIN), revents: 0)); return fds.count - 1 }
                let p = watch.psi.map { fds.append(pollfd(fd: $0.rawValue, events: Int16(POLLPRI), revents: 0)); return fds.count - 1 }
                v2Indices.append((name, e, p))
            }

            let wakeup = loop.wait(for: &fds, timeoutMs: timeoutMs())
            let t0 = monotonicNanoseconds()
            if let failure = wakeup.failure { environment.log("poll failed: errno \(failure.rawValue)") }

            // Kernel signals first: they time-stamp what the kernel did.
            var system = SystemWake()
            if let sensorIndex, fds[sensorIndex].revents != 0 || wakeup.timedOut { system = readSensors(now: t0) }
            if let psiIndex, fds[psiIndex].revents != 0 {
                if !system.woken { system.wokenBy = "psi" }
                system.woken = true
                system.pressure = true
            }

            // OOMs the guardian gave the kernel are the kernel's: before any notification of them.
            if let handoverIndex, fds[handoverIndex].revents != 0 { serviceHandovers() }

            var fired: [String] = []
            for (index, path) in notifierPaths.enumerated() where fds[index].revents != 0 {
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

            if system.woken || t0 >= nextSystemCheckNs {
                checkSystem(t0: t0, pressure: system.pressure, wokenBy: system.wokenBy, eventNs: system.eventNs)
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

    func run(_ command: OOMEngine.Command) {
        switch command {
        case .attach(let instance, let reply):
            do {
                try attach(instance)
                // Once its memcgs' journal entries are written and they are
                // governed, or refused if they could not be written.
                let loop = self.loop, name = instance.name
                afterJournalSettles {
                    loop.send(.attachSettled(name, reply)) {
                        reply.resume(.failure(OOMAttachError(policy: name, reason: "the OOM engine has stopped",
                                                             fix: "The daemon is shutting down; load the policy again once it has restarted")))
                    }
                }
            } catch {
                reply.resume(.failure(error))
            }
        case .attachSettled(let name, let reply):
            attachSettled(name, reply)
        case .detach(let name, let reply):
            detach(name)
            // Once the knobs' journal entries are forgotten.
            afterJournalSettles { reply.resume() }
        case .journaled(let tag, let path, let result):
            journaled(tag, path: path, result)
        case .settled(let body):
            body()
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
        engine.health.open(instance.name)
        switch domain(of: instance) {
        case .system:
            if let trigger = instance.trigger.psi {
                do {
                    systemPSI = try PSITrigger(spec: trigger, path: "/proc/pressure/memory")
                } catch {
                    engine.health.close(instance.name)
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
                restoreKnobs(["/proc/\(pid)/oom_score_adj"])
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
        // A knob whose journal job is still on its way is restored when the
        // answer comes (its policy is gone then).
        let stillDisabled = Set(v1Disabled.map { $0 + Self.oomControl })
        for failure in restoreKnobs(journaled.values.filter { $0.owner == name }.map(\.path).filter { !stillDisabled.contains($0) }) {
            environment.log("restoring a knob of policy '\(name)' failed: \(failure)")
        }
        engine.health.close(name)
    }

    func shutDown() {
        for name in policies.keys.sorted() { detach(name) }
        sensors = nil
    }

    // MARK: scopes

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
                  CgroupTree.isWithin(path, scope) else { continue }
            if best == nil || scope.count > best!.scope.cgroupPath!.count { best = policy }
        }
        return best
    }
}
