import BPFKit
import Logging
import MMPolicyCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Keeps exactly one guardian running for the daemon's life.
///
/// It exists because a daemon without a guardian is one SIGKILL away from
/// leaving memcgs with the kernel OOM killer off. ``start()`` spawns the
/// first guardian and waits (briefly) until it is armed; a thread then
/// watches the link and, if the guardian exits while the daemon runs (a
/// stray `kill`, the OOM killer), reaps it, records why and starts another,
/// backing off if they keep dying. ``stop()`` ends the watch and dismisses
/// the guardian with the clean-exit message after a graceful shutdown. A
/// guardian that cannot be started is logged and recorded; the daemon runs
/// on without one.
///
/// The same thread carries the ``OOMHoldBoard`` across the link: the memcg
/// roots the engines hold go to the guardian (all of them again to a new
/// guardian), and what the guardian saw (OOM onsets, OOMs it handed to the
/// kernel) comes back to the board.
public final class GuardianSupervisor: Sendable {
    private struct State {
        var current: GuardianProcess?
        var thread: pthread_t?
    }

    private let stateDirectory: String
    private let daemonPID: Int32
    private let logger: Logger
    private let record: @Sendable (EventRecord) -> Void
    private let executable: String
    private let stopSignal: EventFD
    private let holds: OOMHoldBoard?
    private let state = Mutex(State())

    /// How long ``start()`` waits for the first guardian to say it is armed.
    static let armTimeoutMs: Int32 = 5000
    /// Delay before starting a new guardian after one died; doubled (up to
    /// ``maxRespawnDelayMs``) while they die within ``quickDeathNs``.
    static let respawnDelayMs: Int32 = 1000
    static let maxRespawnDelayMs: Int32 = 60_000
    static let quickDeathNs: UInt64 = 10_000_000_000

    /// `record` receives audit events (must not block); `holds` is the
    /// board of held memcgs the guardian watches (nil: none).
    public init(stateDirectory: String, daemonPID: Int32 = getpid(), logger: Logger,
                executable: String = "/proc/self/exe", holds: OOMHoldBoard? = nil,
                record: @escaping @Sendable (EventRecord) -> Void) throws(SystemCallError) {
        self.stateDirectory = stateDirectory
        self.holds = holds
        self.daemonPID = daemonPID
        self.logger = logger
        self.executable = executable
        self.record = record
        stopSignal = try EventFD()
    }

    /// The running guardian's pid, if one runs.
    public var guardianPID: Int32? { state.withLock { $0.current?.pid } }

    /// Starts the first guardian, waits until it is armed, and starts the watch.
    public func start() {
        let first = spawnAndArm()
        state.withLock { $0.current = first }
        let supervisor = self
        // A record being finished may take the guardian's pending messages
        // itself (non-blocking; an end of file stays for the watch to see).
        holds?.setPump { [weak supervisor] in
            guard let supervisor, let guardian = supervisor.state.withLock({ $0.current }) else { return }
            _ = supervisor.receiveAll(from: guardian)
        }
        switch PosixThread.start(name: "mmpolicy-guardw", { supervisor.watch() }) {
        case .success(let thread): state.withLock { $0.thread = thread }
        case .failure(let code):
            logger.error("cannot start the thread that watches the guardian (\(code)); a guardian that exits will not be replaced")
        }
    }

    /// Ends the watch and dismisses the guardian: call after a graceful
    /// shutdown has restored every knob. Idempotent.
    public func stop() {
        holds?.setPump(nil)
        let thread = state.withLock { state -> pthread_t? in
            defer { state.thread = nil }
            return state.thread
        }
        if let thread {
            stopSignal.signal()
            pthread_join(thread, nil)
        }
        guard let guardian = state.withLock({ state -> GuardianProcess? in
            defer { state.current = nil }
            return state.current
        }) else { return }
        let ending = guardian.dismiss(timeoutMs: 2000)
        logger.debug("guardian pid \(guardian.pid) dismissed: \(ending)")
    }

    /// Spawns a guardian and waits until it is armed; nil (logged and
    /// recorded) if it could not be started or died at once.
    private func spawnAndArm() -> GuardianProcess? {
        let guardian: GuardianProcess
        do {
            guardian = try GuardianProcess.spawn(stateDirectory: stateDirectory, daemonPID: daemonPID, executable: executable)
        } catch {
            complain("\(error)")
            return nil
        }
        switch guardian.waitUntilArmed(timeoutMs: Self.armTimeoutMs) {
        case .armed:
            logger.info("guardian pid \(guardian.pid) armed: if this daemon dies it restores every journaled knob (oom_kill_disable=0 first)")
            return guardian
        case .timedOut:
            logger.warning("guardian pid \(guardian.pid) has not said it is armed after \(Self.armTimeoutMs) ms; keeping it (it already holds its end of the link)")
            return guardian
        case .exited:
            let status = guardian.reap(timeoutMs: 1000).map(GuardianProcess.describe) ?? "still running"
            complain("the guardian (pid \(guardian.pid), \(executable) guardian) exited at start (\(status)); see its messages above. The daemon runs on without it, so if the daemon is killed its knobs stay changed until it is started again.")
            return nil
        }
    }

    private func complain(_ text: String) {
        logger.error("\(text)")
        record(EventRecord(timeNs: wallClockNanoseconds(), type: .note, policy: nil, summary: "no guardian: \(text)"))
    }

    /// The watch thread: waits on the guardian's link, the holds and the stop signal.
    private func watch() {
        var delayMs = Self.respawnDelayMs
        var startedNs = monotonicNanoseconds()
        // What the current guardian has been told.
        var told: [String: UInt64] = [:]
        while true {
            guard let guardian = state.withLock({ $0.current }) else {
                // None running: wait out the delay (or a stop), then try again.
                if waitReadable(stopSignal.rawValue, timeoutMs: delayMs) { return }
                let next = spawnAndArm()
                startedNs = monotonicNanoseconds()
                told = [:]
                state.withLock { $0.current = next }
                if next == nil { delayMs = min(delayMs * 2, Self.maxRespawnDelayMs) }
                continue
            }
            let complete = tell(guardian, &told)
            var fds = [pollfd(fd: stopSignal.rawValue, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: guardian.link.rawValue, events: Int16(POLLIN), revents: 0)]
            if let holds { fds.append(pollfd(fd: holds.holdsChanged.rawValue, events: Int16(POLLIN), revents: 0)) }
            // A hold that did not fit in the link is sent again shortly.
            let n = poll(&fds, nfds_t(fds.count), complete ? -1 : 10)
            if n < 0 { if errno == EINTR { continue }; return }
            if fds[0].revents != 0 { return }
            if fds.count > 2, fds[2].revents != 0 { _ = holds?.holdsChanged.read() }
            // Its messages first; then, if its end closed, it is gone.
            guard fds[1].revents != 0, receiveAll(from: guardian) else { continue }
            var status = guardian.reap(timeoutMs: 1000).map(GuardianProcess.describe)
            if status == nil {
                // Its link is closed, so it can no longer see this daemon die: replace it.
                kill(guardian.pid, SIGKILL)
                status = "its link closed but it kept running, so it was killed; " + (guardian.reap(timeoutMs: 1000).map(GuardianProcess.describe) ?? "not reaped")
            }
            delayMs = monotonicNanoseconds() - startedNs < Self.quickDeathNs ? min(delayMs * 2, Self.maxRespawnDelayMs) : Self.respawnDelayMs
            let text = "the guardian (pid \(guardian.pid)) ended while the daemon runs (\(status ?? "")); starting another in \(delayMs) ms"
            logger.error("\(text)")
            record(EventRecord(timeNs: wallClockNanoseconds(), type: .note, policy: nil, summary: text))
            state.withLock { $0.current = nil }
        }
    }

    /// Sends the guardian the holds it has not been told; false if some did not fit now.
    private func tell(_ guardian: GuardianProcess, _ told: inout [String: UInt64]) -> Bool {
        guard let holds else { return true }
        let now = Dictionary(uniqueKeysWithValues: holds.currentHolds().holds.map { ($0.root, $0.boundNs) })
        for root in told.keys where now[root] == nil {
            guard guardian.send(.release(root: root)) else { return false }
            told.removeValue(forKey: root)
        }
        for (root, bound) in now where told[root] != bound {
            guard guardian.send(.hold(root: root, boundNs: bound)) else { return false }
            told[root] = bound
        }
        return true
    }

    /// Takes every message the guardian has sent; true if its end closed.
    private func receiveAll(from guardian: GuardianProcess) -> Bool {
        while true {
            switch guardian.read() {
            case .closed: return true
            case .nothing: return false
            case .message(.onset(let memcg, let onsetNs)): holds?.noteOnset(memcg: memcg, onsetNs: onsetNs)
            case .message(.handed(let handover)):
                logger.warning("the guardian (pid \(guardian.pid)) handed the OOM in \(handover.memcg) to the kernel OOM killer \(decimalString(Double(handover.handedNs - handover.onsetNs) / 1e6, places: 1)) ms after it began: this daemon had not resolved it (it was stopped or stuck)")
                holds?.noteHandover(handover)
            case .message: continue  // e.g. a late "armed"
            }
        }
    }

    /// Waits up to `timeoutMs` for `fd` to be readable.
    private func waitReadable(_ fd: Int32, timeoutMs: Int32) -> Bool {
        var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&pfd, 1, timeoutMs) > 0
    }
}
