#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore
import Synchronization

/// A policy that cannot be attached to the OOM engine.
public struct OOMAttachError: Error, Sendable, CustomStringConvertible {
    public var policy: String
    public var reason: String
    public var fix: String
    public var description: String { "policy '\(policy)' cannot be attached: \(reason). \(fix)." }
}

/// Runs every loaded oom policy's decision points: it waits for OOM events
/// (cgroup v1 eventfds, cgroup v2 memory.events and memory.pressure, system
/// memory shortage woken by the in-kernel sensors and PSI), asks the policy
/// that governs the scope, validates its answer and kills, or hands the OOM
/// to the kernel and records why.
///
/// All of it happens on one dedicated thread, never on the Swift
/// concurrency pool: the path from event to SIGKILL takes no locks the
/// control plane holds and never waits for SQLite. Attach and detach are
/// commands the thread carries out between events.
public final class OOMEngine: Sendable {
    /// What the engine needs from the daemon.
    public struct Environment: Sendable {
        public var journal: KnobJournal
        public var mount: MemoryCgroupMount?
        /// The daemon's sensor object (sensors/oom_sensors.bpf.o); nil = none.
        public var sensorObjectPath: String?
        public var daemonPID: Int32
        /// Receives every decision and kernel-kill event (must not block).
        public var record: @Sendable (EventRecord) -> Void
        /// Receives diagnostics.
        public var log: @Sendable (String) -> Void

        public init(journal: KnobJournal, mount: MemoryCgroupMount?, sensorObjectPath: String?, daemonPID: Int32,
                    record: @escaping @Sendable (EventRecord) -> Void, log: @escaping @Sendable (String) -> Void) {
            self.journal = journal
            self.mount = mount
            self.sensorObjectPath = sensorObjectPath
            self.daemonPID = daemonPID
            self.record = record
            self.log = log
        }
    }

    enum Command: Sendable {
        case attach(OOMPolicyInstance, CheckedContinuation<Void, any Error>)
        case detach(String, CheckedContinuation<Void, Never>)
        case stop
    }

    let environment: Environment
    let commands = Mutex<[Command]>([])
    let wake: EventFD
    let state = Mutex<EngineStatus>(EngineStatus())
    private let thread = Mutex<pthread_t?>(nil)

    /// What the engine reports about itself.
    public struct EngineStatus: Sendable {
        public var running = false
        /// Why the in-kernel sensors are not in use, if they are not.
        public var sensorProblem: String?
        public var sensorStats: [(name: String, runCount: UInt64, runTimeNs: UInt64)] = []
        public var attached: [String] = []
    }

    public init(environment: Environment) throws(SystemCallError) {
        self.environment = environment
        self.wake = try EventFD()
    }

    public var status: EngineStatus { state.withLock { $0 } }

    /// Starts the engine thread.
    public func start() {
        thread.withLock { thread in
            guard thread == nil else { return }
            let engine = self
            thread = startThread(name: "mmpolicy-oom") {
                let loop = OOMEngineLoop(engine: engine)
                loop.run()
            }
        }
        state.withLock { $0.running = true }
    }

    /// Attaches a loaded policy: sets up its decision points (on v1, in
    /// enforce mode, disables the kernel killer on its memcgs, journaled).
    public func attach(_ instance: OOMPolicyInstance) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            send(.attach(instance, continuation))
        }
    }

    /// Detaches policy `name`, restoring every knob it changed.
    public func detach(name: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            send(.detach(name, continuation))
        }
    }

    /// Detaches everything, restores every knob and stops the thread.
    public func stop() {
        let running = thread.withLock { thread -> pthread_t? in
            defer { thread = nil }
            return thread
        }
        guard let running else { return }
        send(.stop)
        pthread_join(running, nil)
        state.withLock { $0.running = false }
    }

    private func send(_ command: Command) {
        commands.withLock { $0.append(command) }
        wake.signal()
    }
}

/// Runs `body` on a new pthread named `name` (at most 15 bytes).
func startThread(name: String, _ body: @escaping @Sendable () -> Void) -> pthread_t {
    final class Box { let body: @Sendable () -> Void; init(_ body: @escaping @Sendable () -> Void) { self.body = body } }
    var thread = pthread_t()
    let named: @Sendable () -> Void = {
        // Name the thread (as ps -L and top show it); glibc's pthread_setname_np is not imported.
        let fd = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
        if fd >= 0 {
            let text = Array(name.utf8.prefix(15))
            _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            close(fd)
        }
        body()
    }
    let box = Unmanaged.passRetained(Box(named)).toOpaque()
    let result = pthread_create(&thread, nil, { argument in
        let box = Unmanaged<Box>.fromOpaque(argument!).takeRetainedValue()
        box.body()
        return nil
    }, box)
    precondition(result == 0, "pthread_create failed: \(result)")
    return thread
}

/// Wall-clock nanoseconds since the Unix epoch.
public func wallClockNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
