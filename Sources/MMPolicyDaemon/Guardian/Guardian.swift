import BPFKit
import Logging
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// The dead-man's switch (`mmpolicy guardian`, started by the daemon): a
/// small process that outlives the daemon and, if the daemon ends without a
/// clean shutdown (SIGKILL, a crash, the OOM killer), restores every
/// journaled knob within milliseconds, above all `oom_kill_disable=0` on
/// every memcg whose kernel OOM killer the daemon had turned off, so that no
/// task waits in an OOM nobody will resolve. While the daemon runs, it also
/// watches those memcgs (``GuardianOOMWatch``): an OOM that a stopped or
/// stuck daemon leaves unresolved past its bound goes to the kernel killer.
///
/// The daemon and the guardian share one Unix SOCK_SEQPACKET pair and
/// nothing else: the guardian's end is descriptor ``linkDescriptor``, the
/// daemon's end is close-on-exec in the daemon alone. They speak in
/// ``GuardianMessage``s: the guardian says "armed" once it is ready; the
/// daemon sends the memcg roots it holds and, after a graceful shutdown has
/// restored everything, "clean" (the guardian then exits without touching
/// anything). End of file (or a reset) means the daemon is gone, whatever
/// killed it, with no pid to be reused: the guardian then runs
/// ``GuardianRestore``. Until then it opens no database and loads nothing.
public enum Guardian {
    /// The guardian's process name (`ps`, /proc/PID/comm).
    public static let processName = "mmpolicy-guard"
    /// The guardian's descriptor for its end of the link to the daemon.
    public static let linkDescriptor: Int32 = 3

    /// How the daemon's end of the link ended.
    enum DaemonEnd: Equatable {
        case clean
        case gone
    }

    /// Runs the guardian of daemon `daemonPID` on `stateDirectory` to its
    /// end; returns the process's exit status (0: nothing left changed).
    public static func run(stateDirectory: String, daemonPID: Int32, logger: Logger) -> Int32 {
        prepareProcess(logger: logger)
        var info = stat()
        guard fstat(linkDescriptor, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else {
            logger.error("mmpolicy guardian: descriptor \(linkDescriptor) is not the link to a daemon; `mmpolicy guardian` is started by `mmpolicy daemon`, not by hand.")
            return 2
        }
        _ = GuardianLink.send(.armed, on: linkDescriptor)  // if the daemon is already gone, the watch below says so
        logger.debug("mmpolicy guardian pid \(getpid()) armed for daemon pid \(daemonPID), state \(stateDirectory)")

        let end = watchDaemon(logger: logger)
        let endedNs = monotonicNanoseconds()
        close(linkDescriptor)
        if end == .clean {
            logger.debug("mmpolicy guardian pid \(getpid()): daemon pid \(daemonPID) shut down cleanly")
            return 0
        }
        return GuardianRestore(stateDirectory: stateDirectory, daemonPID: daemonPID, logger: logger).run(daemonEndedNs: endedNs)
    }

    /// Hardens the process against what may have killed the daemon: a
    /// name, the OOM killer's last choice (if allowed), pages locked as they
    /// are touched, no death by SIGPIPE on a log pipe. (Stray descriptors are
    /// closed by the daemon's spawn, before exec: by now the runtime has
    /// descriptors of its own.)
    static func prepareProcess(logger: Logger) {
        signal(SIGPIPE, SIG_IGN)
        do { try CurrentProcess.setName(processName) } catch { logger.warning("mmpolicy guardian: \(error)") }
        do { try CurrentProcess.setOOMScoreAdj(-1000) } catch {
            logger.notice("mmpolicy guardian: oom_score_adj stays \(CurrentProcess.oomScoreAdj.map(String.init) ?? "unknown"): \(error)")
        }
        do { try CurrentProcess.lockMemory() } catch { logger.warning("mmpolicy guardian: \(error)") }
    }

    /// Watches the daemon's held memcgs until the daemon says it exits
    /// cleanly or its end closes.
    static func watchDaemon(logger: Logger) -> DaemonEnd {
        var watch = GuardianOOMWatch()
        while true {
            let members = watch.pollSet
            var fds = [pollfd(fd: linkDescriptor, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: watch.creationFD ?? -1, events: Int16(POLLIN), revents: 0)]
            fds += members.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let n = poll(&fds, nfds_t(fds.count), watch.timeoutMs(now: monotonicNanoseconds()))
            if n < 0 && errno != EINTR { usleep(10_000) }
            let now = monotonicNanoseconds()
            if fds[0].revents != 0 {
                // Everything queued: a stopped daemon's holds and its goodbye arrive together.
                receiving: while true {
                    switch GuardianLink.receive(on: linkDescriptor, blocking: false) {
                    case .message(.cleanExit): return .clean
                    case .message(let message): watch.apply(message)
                    case .nothing: break receiving
                    case .closed: return .gone
                    }
                }
            }
            if fds[1].revents != 0 { watch.childrenChanged() }
            let fired = zip(fds.dropFirst(2), members).filter { $0.0.revents != 0 }.map(\.1.memcg)
            for onset in watch.fired(fired, now: now) { _ = GuardianLink.send(onset, on: linkDescriptor) }
            let (handed, failures) = watch.service(now: now)
            for failure in failures { logger.error("mmpolicy guardian: \(failure)") }
            for handover in handed {
                logger.warning("mmpolicy guardian: the OOM in \(handover.memcg) was not resolved \(Self.ms(handover.handedNs - handover.onsetNs)) after it began (the daemon is stopped or stuck); handed it to the kernel OOM killer (oom_kill_disable=0)")
                _ = GuardianLink.send(.handed(handover), on: linkDescriptor)
            }
        }
    }

    static func ms(_ ns: UInt64) -> String { decimalString(Double(ns) / 1e6, places: 1) + " ms" }
}
