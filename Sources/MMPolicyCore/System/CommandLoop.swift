import BPFKit
import SystemPackage
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A dedicated POSIX thread with a command queue: the one loop primitive the
/// daemon's own threads (the OOM engine, the watchdog) are built on.
///
/// It exists because those loops must not run on Swift concurrency's small
/// cooperative pool (they block in poll(2), and a decision path must never
/// wait behind the control plane), yet other threads have to hand them work
/// and stop them. Commands go into a queue under a lock that is held only to
/// append or take the queue, never while a command runs, and an eventfd wakes
/// the loop's poll.
///
/// The body runs on the thread and drives the loop itself:
///
/// ```swift
/// try loop.start { loop in
///     while true {
///         let batch = loop.takeCommands()
///         for command in batch.commands { handle(command) }
///         if batch.stopping { break }
///         var fds = [pollfd(...)]          // the body's own descriptors
///         let wakeup = loop.wait(for: &fds, timeoutMs: 100)
///         ...
///     }
/// }
/// ```
///
/// Every command is either taken by the body (in the order sent) or refused:
/// ``send(_:)`` refuses once ``stop()`` has begun, and commands still queued
/// when the thread is gone (or was never started) are refused at stop, so an
/// awaited ``request(_:)`` always returns.
public final class CommandLoop<Command: Sendable>: Sendable {
    /// What ``takeCommands()`` hands the body.
    public struct Batch: Sendable {
        /// The commands sent since the last call, oldest first.
        public var commands: [Command]
        /// ``stop()`` has begun: these are the last commands; the body should
        /// run them and return.
        public var stopping: Bool
    }

    /// Why ``wait(for:timeoutMs:)`` returned.
    public struct Wakeup: Sendable, Equatable {
        /// Descriptors of the body's own set with events (the wake descriptor
        /// is not counted).
        public var ready: Int
        /// The loop was woken to take commands or to stop.
        public var commands: Bool
        /// poll(2) returned 0: nothing at all happened before the timeout.
        public var timedOut: Bool
        /// poll(2) failed with something other than EINTR.
        public var failure: Errno?

        public init(ready: Int, commands: Bool, timedOut: Bool, failure: Errno? = nil) {
            self.ready = ready
            self.commands = commands
            self.timedOut = timedOut
            self.failure = failure
        }
    }

    private struct Entry: Sendable {
        var command: Command
        /// Called instead of running the command when it is refused.
        var onRefused: (@Sendable () -> Void)?
    }

    private struct State: Sendable {
        var queue: [Entry] = []
        var started = false
        var stopping = false
        var thread: pthread_t?
    }

    /// The thread's name as `ps -L` shows it (at most 15 bytes).
    public let threadName: String
    /// What the thread is, for error messages ("the OOM engine thread").
    public let role: String
    private let state = Mutex(State())
    private let wake: EventFD

    public init(threadName: String, role: String) throws(SystemCallError) {
        self.threadName = threadName
        self.role = role
        self.wake = try EventFD()
    }

    // MARK: control (any thread)

    /// Starts the thread running `body`, which receives this loop. Does
    /// nothing if the loop was started before (or stopped: a loop runs once).
    public func start(_ body: @escaping @Sendable (CommandLoop<Command>) -> Void) throws(SystemCallError) {
        try state.withLock { state throws(SystemCallError) in
            guard !state.started, !state.stopping else { return }
            switch PosixThread.start(name: threadName, { [self] in body(self) }) {
            case .success(let thread):
                state.thread = thread
                state.started = true
            case .failure(let code):
                throw SystemCallError(operation: "pthread_create", target: role, errno: code,
                                      fix: "The system is out of threads or memory; free some and restart the daemon")
            }
        }
    }

    /// Queues `command` for the loop and wakes it. Commands sent before
    /// ``start(_:)`` wait for it. Returns false, and queues nothing, once
    /// ``stop()`` has begun.
    @discardableResult
    public func send(_ command: Command) -> Bool {
        enqueue(Entry(command: command, onRefused: nil))
    }

    /// ``send(_:)``, running `onRefused` (once, on the caller's or the
    /// stopping thread) if the loop does not take the command: it was
    /// stopping already, or stopped before getting to it. For a command that
    /// carries a reply someone waits for.
    public func send(_ command: Command, onRefused: @escaping @Sendable () -> Void) {
        if !enqueue(Entry(command: command, onRefused: onRefused)) { onRefused() }
    }

    /// Sends the command `make` builds around a reply and waits until the
    /// loop answers through that reply. Nil when the command was refused
    /// (the loop is stopping or stopped). The body must answer every such
    /// command exactly once.
    public func request<Value: Sendable>(_ make: (CommandReply<Value>) -> Command) async -> Value? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Value?, Never>) in
            let entry = Entry(command: make(CommandReply(continuation)), onRefused: { continuation.resume(returning: nil) })
            if !enqueue(entry) { continuation.resume(returning: nil) }
        }
    }

    /// Stops the loop: refuses further commands, wakes the body (whose next
    /// ``takeCommands()`` says `stopping`), waits for the thread to end, then
    /// refuses whatever the body did not take. Idempotent; a second caller
    /// returns at once. Called from the loop's own thread it does not wait.
    public func stop() {
        let thread = state.withLock { state -> pthread_t?? in
            guard !state.stopping else { return nil }
            state.stopping = true
            defer { state.thread = nil }
            return .some(state.thread)
        }
        guard let thread else { return }
        wake.signal()
        if let thread, pthread_equal(thread, pthread_self()) == 0 { pthread_join(thread, nil) }
        let left = state.withLock { state -> [Entry] in
            defer { state.queue.removeAll() }
            return state.queue
        }
        for entry in left { entry.onRefused?() }
    }

    /// Whether ``stop()`` has begun.
    public var isStopping: Bool { state.withLock { $0.stopping } }

    /// Commands sent and not yet taken by the body.
    public var queuedCount: Int { state.withLock { $0.queue.count } }

    private func enqueue(_ entry: Entry) -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.queue.append(entry)
            return true
        }
        if accepted { wake.signal() }
        return accepted
    }

    // MARK: the body (the loop's thread)

    /// Takes every queued command, oldest first, and whether the loop is
    /// stopping. Once `stopping` is seen no command will follow.
    public func takeCommands() -> Batch {
        state.withLock { state in
            defer { state.queue.removeAll() }
            return Batch(commands: state.queue.map(\.command), stopping: state.stopping)
        }
    }

    /// Blocks until one of `fds` has an event (their `revents` are set), a
    /// command or stop arrives, or `timeoutMs` passes (negative = no limit).
    public func wait(for fds: inout [pollfd], timeoutMs: Int32) -> Wakeup {
        var all = [pollfd(fd: wake.rawValue, events: Int16(POLLIN), revents: 0)]
        all.append(contentsOf: fds)
        let n = poll(&all, nfds_t(all.count), timeoutMs)
        let code = errno
        var ready = 0
        for index in fds.indices {
            fds[index].revents = all[index + 1].revents
            if fds[index].revents != 0 { ready += 1 }
        }
        let woken = all[0].revents != 0
        if woken { _ = wake.read() }
        return Wakeup(ready: ready, commands: woken, timedOut: n == 0,
                      failure: n < 0 && code != EINTR ? Errno(rawValue: code) : nil)
    }

    /// ``wait(for:timeoutMs:)`` with no descriptors of the body's own.
    @discardableResult
    public func wait(timeoutMs: Int32) -> Wakeup {
        var none: [pollfd] = []
        return wait(for: &none, timeoutMs: timeoutMs)
    }

    /// Waits until CLOCK_MONOTONIC reaches `deadlineNs` (rounded up to the
    /// next millisecond), or a command or stop arrives.
    @discardableResult
    public func wait(untilNs deadlineNs: UInt64) -> Wakeup {
        let now = monotonicNanoseconds()
        let ms = deadlineNs > now ? Swift.min((deadlineNs - now + 999_999) / 1_000_000, UInt64(Int32.max)) : 0
        return wait(timeoutMs: Int32(ms))
    }
}

/// The answer half of a command whose sender awaits it
/// (``CommandLoop/request(_:)``): the loop's body resumes it exactly once.
public struct CommandReply<Value: Sendable>: Sendable {
    private let continuation: CheckedContinuation<Value?, Never>

    init(_ continuation: CheckedContinuation<Value?, Never>) { self.continuation = continuation }

    /// Hands `value` to the waiting sender.
    public func resume(_ value: Value) { continuation.resume(returning: value) }
}

extension CommandReply where Value == Void {
    /// Tells the waiting sender the command is done.
    public func resume() { continuation.resume(returning: ()) }
}
