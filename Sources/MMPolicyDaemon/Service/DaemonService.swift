#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import Logging
import MMPolicyCore
import ServiceLifecycle

/// `mmpolicy daemon`: owns the loaded policies, every kind's engine, the
/// watchdog, the control socket and the state store for the life of the
/// process.
///
/// Start-up is one ordered sequence (``prepare(configuration:version:logger:)``):
/// take the state directory's lock (one daemon per directory), restore knobs
/// a crashed predecessor left behind, start the guardian (which restores
/// every knob if this process dies without a clean shutdown), start the
/// engines and the watchdog, bind the socket, reload the desired set. What
/// runs after that is a list of ``DaemonStage`` services in a group of their
/// own, which shuts them down in reverse order: the control socket stops
/// answering, the watchdog stops judging, every policy is unloaded, each
/// engine stops, every journaled knob is restored and the guardian
/// dismissed, and the audit trail is closed last, so each step is recorded.
/// The daemon itself is the one service of the outer group, which takes
/// SIGTERM and SIGINT from the first instant: a signal during start-up is
/// a graceful shutdown as soon as start-up is done.
public struct DaemonService: Service {
    let configuration: DaemonConfiguration
    let version: String
    let logger: Logger

    /// How long start-up waits for the state directory's lock: a guardian
    /// restoring after a crash holds it for milliseconds.
    static let lockWaitSeconds = 3.0

    public init(configuration: DaemonConfiguration, version: String, logger: Logger) {
        self.configuration = configuration
        self.version = version
        self.logger = logger
    }

    public func run() async throws {
        let stages = try await Self.prepare(configuration: configuration, version: version, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: stages.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup,
                                         failureTerminationBehavior: .gracefullyShutdownGroup) },
            logger: logger))
        // A request made before the group runs is remembered by it.
        try await withGracefulShutdownHandler {
            try await group.run()
        } onGracefulShutdown: {
            Task { await group.triggerGracefulShutdown() }
        }
    }

    /// Runs the daemon until SIGTERM or SIGINT.
    public static func runUntilSignalled(configuration: DaemonConfiguration, version: String, logger: Logger) async throws {
        try await serviceGroup(configuration: configuration, version: version, logger: logger, stopsOnSignals: true).run()
    }

    /// The daemon as a service group: `run()` it, and
    /// `triggerGracefulShutdown()` (or, with `stopsOnSignals`, SIGTERM or
    /// SIGINT) stops it.
    public static func serviceGroup(configuration: DaemonConfiguration, version: String, logger: Logger,
                                    stopsOnSignals: Bool = false) -> ServiceGroup {
        ServiceGroup(configuration: .init(
            services: [.init(service: DaemonService(configuration: configuration, version: version, logger: logger),
                             successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: stopsOnSignals ? [.sigterm, .sigint] : [], logger: logger))
    }

    /// Does the start-up sequence and returns the stages in start order
    /// (they are shut down in reverse). On a failure what was started is
    /// stopped again, knobs included.
    static func prepare(configuration: DaemonConfiguration, version: String, logger: Logger) async throws -> [DaemonStage] {
        if configuration.ownsProcess { AllocatorTuning.configure() }
        // Before anything touches the state directory: one process at a time acts on it.
        let stateLock = try StateDirectoryLock(directory: configuration.stateDirectory, releasedFirst: true)
        for notice in stateLock.notices { logger.notice("\(notice)") }
        if let holder = stateLock.holder {
            logger.notice("waiting up to \(Int(Self.lockWaitSeconds)) s for \(stateLock.path), held by pid \(holder)")
        }
        guard try await stateLock.lock(waitingAtMost: Self.lockWaitSeconds) else {
            throw StateDirectoryLockError.held(directory: configuration.stateDirectory, holder: stateLock.holder,
                                               recordedPID: stateLock.recordedPID, waitedSeconds: Self.lockWaitSeconds)
        }
        stateLock.recordOwner(pid: getpid())

        // Keep the daemon's own pages resident: it must not stall in reclaim
        // while it handles an OOM. Pages are locked as they are touched.
        if configuration.ownsProcess, mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 {
            logger.warning("mlockall failed (errno \(errno)); the daemon may be slowed by reclaim under pressure")
        }
        // The state's failures are logged, recorded and shown by `status` from here on.
        let health = StateHealth(logger: logger)
        let state = try StartupRecovery.open(directory: configuration.stateDirectory, health: health, logger: logger)
        let store = state.store
        let recorder = EventRecorder(store: store, retention: configuration.eventRetention, logger: logger)
        health.connect { recorder.record($0) }
        let journal = KnobJournal(storage: store)
        let started = wallClockNanoseconds()
        let firstStart = state.isFirstStart
        let mount = MemoryCgroupMount.detect()
        state.restoreLeftovers(mount: mount, recorder: recorder, logger: logger)

        // The dead-man's switch, armed before any knob is changed. It also
        // watches the memcgs whose OOMs the engines hold (`holds`).
        let holds = try OOMHoldBoard()
        let guardian = try GuardianSupervisor(stateDirectory: configuration.stateDirectory, logger: logger,
                                              executable: configuration.guardianExecutable, holds: holds) { recorder.record($0) }
        guardian.start()
        // Per-program run counts and times for `status`, without touching the
        // bpf_stats_enabled sysctl: the kernel keeps them on while this fd lives.
        let statistics: BPFStatsSession?
        do { statistics = try BPFStatsSession() } catch {
            statistics = nil
            logger.warning("BPF run statistics are unavailable: \(error)")
        }
        let safety = DaemonStage(name: "knob journal and guardian") {
            // What is still journaled is restored before the guardian is dismissed
            // (the kernel defaults it can identify, if the journal cannot be read).
            let outcome = KnobRecovery.run(.journal(journal), desiredSet: { Result { () throws(StateStoreError) in try store.desiredPolicies() } },
                                           mount: mount)
            for failure in outcome.failures { logger.error("could not restore \(failure)") }
            if let sweep = outcome.sweep { health.report(.journal, "at shutdown, " + KnobRecovery.describe(sweep)) }
            guardian.stop()
            withExtendedLifetime((stateLock, statistics)) {}
        }
        let audit = DaemonStage(name: "audit trail") {
            recorder.record(EventRecord(timeNs: wallClockNanoseconds(), type: .daemonStop, policy: nil, summary: "mmpolicy stopped"))
            recorder.close()
        }

        var stages = [audit, safety]
        do {
            let environment = KindEnvironment(
                journal: journal, mount: mount, objectSearchPath: configuration.objectSearchPath, daemonPID: getpid(),
                record: { recorder.record($0) }, log: { logger.warning("\($0)") },
                recordsUngovernedEvents: configuration.recordsUngovernedEvents, oomHolds: holds)
            let engines = try KindEngines(registry: configuration.kinds, environment: environment)
            try engines.start()
            for (kind, engine) in engines.all { stages.append(DaemonStage(name: "\(kind) engine") { engine.stop() }) }

            let watchdog = try Watchdog(windowMs: configuration.watchdogWindowMs)
            let manager = PolicyManager(configuration: configuration, store: store, recorder: recorder, engines: engines,
                                        watchdog: watchdog, mount: mount, logger: logger)
            stages.append(DaemonStage(name: "policies", stop: {
                logger.notice("shutting down: unloading every policy and restoring knobs")
                await manager.unloadAll(reason: "daemon shutting down")
            }))

            try watchdog.start { trip in
                Task { await manager.eject(trip) }
            }
            stages.append(DaemonStage(name: "watchdog") { watchdog.stop() })

            let info = DaemonInfo(pid: getpid(), version: version, startedNs: started, socketPath: configuration.socketPath,
                                  stateDirectory: configuration.stateDirectory)
            let handler = ControlHandler(manager: manager, store: store, recorder: recorder, watchdog: watchdog, daemon: info,
                                         journal: journal, logger: logger)
            let server = try ControlServer(socketPath: configuration.socketPath) { request, peer in
                await handler.handle(request, peer: peer)
            }
            stages.append(DaemonStage(name: "control socket", serving: {
                do { try await server.run() } catch { logger.error("the control socket failed: \(error)") }
            }, shutdown: { server.shutdown() }))
            recorder.record(EventRecord(timeNs: started, type: .daemonStart, policy: nil,
                                        summary: "mmpolicy \(version) started (pid \(getpid()), socket \(configuration.socketPath), state \(configuration.stateDirectory))"))
            // Requests wait in the socket's backlog until the desired set is
            // back: the first answer already shows what is in force.
            await manager.restoreDesiredSet(firstStart: firstStart)
            if configuration.ownsProcess { AllocatorTuning.releaseFreedMemory() }
            logger.notice("mmpolicy daemon ready: socket \(configuration.socketPath), state \(configuration.stateDirectory); try `mmpolicy status`")
            return stages
        } catch {
            for stage in stages.reversed() { await stage.stop() }
            throw error
        }
    }
}

/// One stage of the daemon's life as a `Service`: it does its start-up work,
/// serves (or waits) until the group shuts down, then stops what it owns.
/// The group shuts stages down in reverse order, one at a time, so the
/// order of the list is the shutdown order, declared once.
struct DaemonStage: Service, CustomStringConvertible {
    let description: String
    private let work: @Sendable () async -> Void
    private let serving: (@Sendable () async -> Void)?
    private let shutdown: (@Sendable () -> Void)?
    let stop: @Sendable () async -> Void

    /// A stage that does `work`, waits for the shutdown, then runs `stop`.
    init(name: String, work: @escaping @Sendable () async -> Void = {}, stop: @escaping @Sendable () async -> Void) {
        description = name
        self.work = work
        self.stop = stop
        serving = nil
        shutdown = nil
    }

    /// A stage that runs `serving` until `shutdown` (called on the group's
    /// graceful shutdown) makes it return.
    init(name: String, serving: @escaping @Sendable () async -> Void, shutdown: @escaping @Sendable () -> Void) {
        description = name
        work = {}
        stop = {}
        self.serving = serving
        self.shutdown = shutdown
    }

    func run() async throws {
        if let serving, let shutdown {
            await withGracefulShutdownHandler {
                await serving()
            } onGracefulShutdown: {
                shutdown()
            }
            return
        }
        await work()
        // Cancellation ends the wait too: either way, stop.
        try? await gracefulShutdown()
        await stop()
    }
}
