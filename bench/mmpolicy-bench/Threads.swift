// Interrupt handling and the measuring threads of the OOM benchmark.
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// SIGINT, SIGTERM and SIGHUP, turned into a flag the benchmark checks.
///
/// The OOM benchmark changes global state (a memory cgroup, RAM filled with
/// ballast, a daemon that disables the kernel killer on that cgroup, an
/// earlyoom process). Dying on ^C would leave all of it behind, so the
/// signals are blocked in every thread and one thread waits for them with
/// sigwait: the first sets `requested`, every wait in the benchmark is
/// bounded and checks it, and the normal unwinding (deinit, defer) puts
/// everything back. A second signal exits at once; the ballast (a memfd)
/// is still freed by the kernel then, the cgroup and children may not be.
enum Interrupt {
    private static let count = Atomic<Int>(0)

    /// Blocks the signals in the calling thread (and every thread started
    /// after) and starts the waiting thread. Call before starting any thread.
    static func install() {
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)
        var thread = pthread_t()
        pthread_create(&thread, nil, { _ in
            var signals = sigset_t()
            sigemptyset(&signals)
            for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&signals, signal) }
            while true {
                var received: Int32 = 0
                guard sigwait(&signals, &received) == 0 else { continue }
                let seen = Interrupt.count.add(1, ordering: .sequentiallyConsistent).newValue
                let message = seen == 1
                    ? "\nmmpolicy-bench: signal \(received): stopping after this step and restoring everything (again to exit at once)\n"
                    : "\nmmpolicy-bench: second signal: exiting without cleanup\n"
                _ = message.withCString { Glibc.write(2, $0, strlen($0)) }
                if seen > 1 { _exit(130) }
            }
        }, nil)
        pthread_detach(thread)
    }

    static var requested: Bool { count.load(ordering: .sequentiallyConsistent) > 0 }

    /// Throws once a signal came in.
    static func check() throws {
        if requested { throw BenchError("interrupted") }
    }
}

/// One POSIX thread running `body`, joined by `join()` (or on release).
///
/// The measuring loops run on their own threads so that they are already
/// blocked in poll() when the event they time happens, whatever the main
/// thread is doing (spawning, reading pipes).
final class MeasuringThread {
    private final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    private var thread = pthread_t()
    private var joined = false

    /// Whether the measuring threads could get SCHED_FIFO (set by the first one).
    static let realtime = Atomic<Int>(0)  // 0 unknown, 1 yes, 2 no

    /// Starts `body` on a new thread at SCHED_FIFO priority 50 when allowed
    /// (CAP_SYS_NICE): a measuring thread must wake the moment its event
    /// happens, not when the scheduler next gets round to it on a machine
    /// busy with other work. It sleeps in poll() nearly all the time, so it
    /// takes next to nothing from the contenders, the same for each.
    init(_ body: @escaping () -> Void) throws {
        let box = Unmanaged.passRetained(Box {
            var parameters = sched_param()
            parameters.sched_priority = 50
            let ok = pthread_setschedparam(pthread_self(), SCHED_FIFO, &parameters) == 0
            MeasuringThread.realtime.store(ok ? 1 : 2, ordering: .relaxed)
            body()
        })
        let rc = pthread_create(&thread, nil, { context in
            let box = Unmanaged<Box>.fromOpaque(context!).takeRetainedValue()
            box.body()
            return nil
        }, box.toOpaque())
        guard rc == 0 else {
            box.release()
            throw BenchError("pthread_create: errno \(rc)")
        }
    }

    func join() {
        guard !joined else { return }
        pthread_join(thread, nil)
        joined = true
    }

    deinit { join() }
}
