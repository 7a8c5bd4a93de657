#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import Logging
import MMPolicyCore
import MMPolicyKinds
import ServiceLifecycle

/// `mmpolicy daemon`: owns the loaded policies, the OOM engine, the control
/// socket and the state store for the life of the process. On start it
/// takes the state directory's lock (one daemon per directory), restores
/// knobs a crashed predecessor left behind, starts its guardian (which
/// restores every knob if this process dies without a clean shutdown), then
/// reloads the desired set. On SIGTERM or SIGINT it unloads every policy,
/// restores every knob it changed and dismisses the guardian.
public final class DaemonService: Service {
    public let configuration: DaemonConfiguration
    let logger: Logger
    let version: String

    public init(configuration: DaemonConfiguration, version: String, logger: Logger) {
        self.configuration = configuration
        self.version = version
        self.logger = logger
    }

    /// How long start-up waits for the state directory's lock: a guardian
    /// restoring after a crash holds it for milliseconds.
    static let lockWaitSeconds = 3.0

    public func run() async throws {
        AllocatorTuning.configure()
        // Before anything touches the state directory: one process at a time acts on it.
        let stateLock = try StateDirectoryLock(directory: configuration.stateDirectory, releasedFirst: true)
        if let holder = stateLock.holder {
            logger.notice("waiting up to \(Int(Self.lockWaitSeconds)) s for \(stateLock.path), held by pid \(holder)")
        }
        guard try await stateLock.lock(waitingAtMost: Self.lockWaitSeconds) else {
            throw StateDirectoryLockError.held(directory: configuration.stateDirectory, holder: stateLock.holder,
                                               recordedPID: stateLock.recordedPID, waitedSeconds: Self.lockWaitSeconds)
        }
        stateLock.recordOwner(pid: getpid())
        defer { withExtendedLifetime(stateLock) {} }

        // Keep the daemon's own pages resident: it must not stall in reclaim
        // while it handles an OOM. Pages are locked as they are touched.
        if mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0 {
            logger.warning("mlockall failed (errno \(errno)); the daemon may be slowed by reclaim under pressure")
        }
        let store = try StateStore(directory: configuration.stateDirectory)
        let recorder = EventRecorder(store: store, logger: logger)
        let journal = KnobJournal(storage: store)
        let started = wallClockNanoseconds()
        // A first start: nothing was ever recorded here. Only then does the default set apply.
        let firstStart = ((try? store.events(EventQuery(limit: 1))) ?? []).isEmpty

        let leftovers = journal.entries()
        if !leftovers.isEmpty {
            let failures = journal.restore()
            let summary = "restored \(leftovers.count - failures.count) knob(s) a previous daemon left changed: "
                + leftovers.map { "\($0.path)=\($0.original)" }.joined(separator: ", ")
            recorder.record(EventRecord(timeNs: started, type: .note, policy: nil, summary: summary))
            logger.notice("\(summary)")
            for failure in failures { logger.error("could not restore \(failure)") }
        }

        // The dead-man's switch, armed before any knob is changed. On every
        // way out of here the journal is restored first, then it is dismissed.
        let guardian = try GuardianSupervisor(stateDirectory: configuration.stateDirectory, logger: logger) { recorder.record($0) }
        guardian.start()
        defer {
            for failure in journal.restore() { logger.error("could not restore \(failure)") }
            guardian.stop()
        }

        // Per-program run counts and times for `status`, without touching the
        // bpf_stats_enabled sysctl: the kernel keeps them on while this fd lives.
        let statistics: BPFStatsSession?
        do { statistics = try BPFStatsSession() } catch {
            statistics = nil
            logger.warning("BPF run statistics are unavailable: \(error)")
        }
        defer { withExtendedLifetime(statistics) {} }

        let mount = MemoryCgroupMount.detect()
        let sensorPath = OOMSensors.locate(searchPath: configuration.objectSearchPath)
        let logger = self.logger
        let engine = try OOMEngine(environment: .init(
            journal: journal, mount: mount, sensorObjectPath: sensorPath, daemonPID: getpid(),
            record: { recorder.record($0) }, log: { logger.warning("\($0)") }))
        try engine.start()

        let watchdog = try Watchdog(windowMs: configuration.watchdogWindowMs)
        let manager = PolicyManager(configuration: configuration, store: store, recorder: recorder, engine: engine,
                                    watchdog: watchdog, mount: mount, logger: logger)
        try watchdog.start { trip in
            Task { await manager.eject(trip) }
        }
        let info = DaemonInfo(pid: getpid(), version: version, startedNs: started, socketPath: configuration.socketPath,
                              stateDirectory: configuration.stateDirectory)
        let handler = ControlHandler(manager: manager, store: store, recorder: recorder, watchdog: watchdog, daemon: info)
        let server: ControlServer
        do {
            server = try ControlServer(socketPath: configuration.socketPath) { request, peer in
                await handler.handle(request, peer: peer)
            }
        } catch {
            watchdog.stop()
            engine.stop()
            recorder.close()
            throw error
        }
        recorder.record(EventRecord(timeNs: started, type: .daemonStart, policy: nil,
                                    summary: "mmpolicy \(version) started (pid \(getpid()), socket \(configuration.socketPath), state \(configuration.stateDirectory))"))
        await manager.restoreDesiredSet(firstStart: firstStart)
        AllocatorTuning.releaseFreedMemory()
        logger.notice("mmpolicy daemon ready: socket \(configuration.socketPath), state \(configuration.stateDirectory); try `mmpolicy status`")

        var serverError: (any Error)?
        await withGracefulShutdownHandler {
            do { try await server.run() } catch { serverError = error }
        } onGracefulShutdown: {
            server.shutdown()
        }
        if let serverError { logger.error("the control socket failed: \(serverError)") }

        logger.notice("shutting down: unloading every policy and restoring knobs")
        watchdog.stop()
        await manager.unloadAll(reason: "daemon shutting down")
        engine.stop()
        // What is still journaled is restored by the deferred restore above, before the guardian is dismissed.
        recorder.record(EventRecord(timeNs: wallClockNanoseconds(), type: .daemonStop, policy: nil, summary: "mmpolicy stopped"))
        recorder.close()
    }

    /// Runs the daemon until SIGTERM or SIGINT.
    public static func runUntilSignalled(configuration: DaemonConfiguration, version: String, logger: Logger) async throws {
        let service = DaemonService(configuration: configuration, version: version, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service, successTerminationBehavior: .gracefullyShutdownGroup)],
            gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}
