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
/// task waits in an OOM nobody will resolve.
///
/// The daemon and the guardian share one Unix stream socket pair and
/// nothing else: the guardian's end is descriptor ``linkDescriptor``, the
/// daemon's end is close-on-exec in the daemon alone. The guardian says
/// ``armedByte`` once it is ready, then blocks reading. The daemon sends
/// ``cleanExitByte`` after a graceful shutdown has restored everything; the
/// guardian then exits without touching anything. End of file (or a reset)
/// means the daemon is gone, whatever killed it, with no pid to be reused:
/// the guardian then runs ``GuardianRestore``. Until then it opens no
/// database and loads nothing.
public enum Guardian {
    /// The guardian's process name (`ps`, /proc/PID/comm).
    public static let processName = "mmpolicy-guard"
    /// The guardian's descriptor for its end of the link to the daemon.
    public static let linkDescriptor: Int32 = 3
    /// Guardian to daemon: armed (named, locked in memory, waiting).
    static let armedByte = UInt8(ascii: "R")
    /// Daemon to guardian: shut down cleanly, everything is restored.
    static let cleanExitByte = UInt8(ascii: "C")

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
        var armed = armedByte
        _ = send(linkDescriptor, &armed, 1, Int32(MSG_NOSIGNAL))  // if the daemon is already gone, the read below says so
        logger.debug("mmpolicy guardian pid \(getpid()) armed for daemon pid \(daemonPID), state \(stateDirectory)")

        let end = waitForDaemon()
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

    /// Blocks until the daemon says it exits cleanly or its end closes.
    static func waitForDaemon() -> DaemonEnd {
        var byte: UInt8 = 0
        while true {
            let n = recv(linkDescriptor, &byte, 1, 0)
            if n == 1 {
                if byte == cleanExitByte { return .clean }
                continue
            }
            if n < 0 && errno == EINTR { continue }
            // 0: end of file. ECONNRESET: the daemon died with our "armed" byte unread. Either way it is gone.
            return .gone
        }
    }
}
