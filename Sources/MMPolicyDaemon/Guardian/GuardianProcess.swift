import BPFKit
import MMPolicyCore
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One guardian process, seen from the daemon that started it: its pid and
/// the daemon's end of the link (see ``Guardian``), which this object owns
/// and closes. The daemon's end is close-on-exec, so no other child of the
/// daemon holds it open and hides the daemon's death from the guardian.
final class GuardianProcess: Sendable {
    let pid: pid_t
    /// The daemon's end of the socket pair.
    let link: FileDescriptor
    private let reaped = Mutex<Int32?>(nil)

    /// What ``waitUntilArmed(timeoutMs:)`` saw.
    enum Readiness: Equatable {
        case armed
        /// The guardian exited (or closed its end) before saying it was armed.
        case exited
        case timedOut
    }

    private init(pid: pid_t, link: FileDescriptor) {
        self.pid = pid
        self.link = link
    }

    deinit { try? link.close() }

    /// Starts `executable guardian --state-dir DIR --daemon-pid PID` in a
    /// session of its own (so signals to the daemon's process group or
    /// terminal do not reach it), with default signal handling, an empty
    /// signal mask, /dev/null as stdin, the daemon's stdout and stderr (its
    /// log), and its end of a new socket pair as descriptor 3.
    static func spawn(stateDirectory: String, daemonPID: Int32,
                      executable: String = "/proc/self/exe") throws(GuardianSpawnError) -> GuardianProcess {
        var ends: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &ends) == 0 else {
            throw GuardianSpawnError(operation: "socketpair", errno: Errno(rawValue: errno))
        }
        // Just below the daemon's lock: closed (and seen by the guardian) right after it when the daemon dies.
        let daemonEnd = FileDescriptor(rawValue: ReleasedFirst.move(ends[0], rank: 1))
        defer { close(ends[1]) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 clears close-on-exec on the copy; the original stays close-on-exec.
        posix_spawn_file_actions_adddup2(&actions, ends[1], Guardian.linkDescriptor)
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var everySignal = sigset_t(), noSignal = sigset_t()
        sigfillset(&everySignal)
        sigemptyset(&noSignal)
        // The daemon ignores SIGTERM/SIGINT (its signal handlers are dispatch
        // sources): the guardian must not inherit that, nor the daemon's mask.
        posix_spawnattr_setsigdefault(&attributes, &everySignal)
        posix_spawnattr_setsigmask(&attributes, &noSignal)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | Self.spawnSetSID))

        let arguments = [executable, "guardian", "--state-dir", stateDirectory, "--daemon-pid", String(daemonPID)]
        let argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else {
            try? daemonEnd.close()
            throw GuardianSpawnError(operation: "posix_spawn of \(executable)", errno: Errno(rawValue: rc))
        }
        return GuardianProcess(pid: pid, link: daemonEnd)
    }

    /// glibc's POSIX_SPAWN_SETSID (<spawn.h>, _GNU_SOURCE only, so not
    /// imported into Swift): the child calls setsid() before exec.
    static let spawnSetSID: Int32 = 0x80

    /// Waits up to `timeoutMs` for the guardian to say it is armed.
    func waitUntilArmed(timeoutMs: Int32) -> Readiness {
        let deadline = monotonicNanoseconds() + UInt64(timeoutMs) * 1_000_000
        while true {
            let left = Int64(deadline) - Int64(monotonicNanoseconds())
            guard left > 0 else { return .timedOut }
            var pfd = pollfd(fd: link.rawValue, events: Int16(POLLIN), revents: 0)
            let n = poll(&pfd, 1, Int32(left / 1_000_000) + 1)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { continue }
            switch read() {
            case .message(.armed): return .armed
            case .message, .nothing: continue
            case .closed: return .exited
            }
        }
    }

    /// Receives one message from the guardian without blocking.
    func read() -> GuardianLink.Received { GuardianLink.receive(on: link.rawValue, blocking: false) }

    /// Sends `message` to the guardian without blocking; false if it could not be sent now.
    func send(_ message: GuardianMessage) -> Bool { GuardianLink.send(message, on: link.rawValue) }

    /// Tells the guardian the daemon shut down cleanly (so it restores
    /// nothing) and waits up to `timeoutMs` for it to exit; a guardian that
    /// does not is killed. Returns how it ended (see ``reap(timeoutMs:)``).
    @discardableResult
    func dismiss(timeoutMs: Int32) -> String {
        _ = send(.cleanExit)
        if let status = reap(timeoutMs: timeoutMs) { return Self.describe(status) }
        kill(pid, SIGKILL)
        return reap(timeoutMs: 1000).map { "killed after ignoring the clean exit (\(Self.describe($0)))" } ?? "did not exit"
    }

    /// Waits up to `timeoutMs` for the guardian to exit and reaps it; the
    /// wait status, or nil if it is still running.
    func reap(timeoutMs: Int32) -> Int32? {
        if let status = reaped.withLock({ $0 }) { return status }
        let deadline = monotonicNanoseconds() + UInt64(max(timeoutMs, 0)) * 1_000_000
        while true {
            var status: Int32 = 0
            let rc = waitpid(pid, &status, WNOHANG)
            if rc == pid || (rc < 0 && errno == ECHILD) {
                let result = rc == pid ? status : -1
                reaped.withLock { $0 = result }
                return result
            }
            if monotonicNanoseconds() >= deadline { return nil }
            usleep(2_000)
        }
    }

    /// "exit status 0", "killed by signal 9".
    static func describe(_ status: Int32) -> String {
        if status < 0 { return "reaped elsewhere" }
        return status & 0x7f == 0 ? "exit status \((status >> 8) & 0xff)" : "killed by signal \(status & 0x7f)"
    }
}

/// The daemon could not start its guardian.
public struct GuardianSpawnError: Error, Sendable, CustomStringConvertible {
    public var operation: String
    public var errno: Errno

    public var description: String {
        "starting the guardian failed: \(operation): \(errno.description) (errno \(errno.rawValue)). The daemon runs on without it, so if the daemon is killed its knobs stay changed (memcgs keep the kernel OOM killer off) until it is started again; free file descriptors or processes (ulimit -n, -u) and restart the daemon."
    }
}
