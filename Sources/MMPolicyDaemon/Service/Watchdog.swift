#if canImport(Glibc)
import Glibc
#endif
import BPFKit
import MMPolicyCore
import MMPolicyWatchdog
import Synchronization

/// The daemon's watchdog: once per window it samples every loaded policy's
/// signals (one shared `SignalSampler`), judges them by the policy's guards
/// (`GuardMonitor`) and hands a tripped guard's verdict to the daemon, which
/// ejects the policy.
///
/// It runs on a thread of its own, never on Swift concurrency's pool, so a
/// busy control plane cannot delay a verdict and a slow sample cannot stall
/// the control plane. Registration and sampling share one lock; a policy is
/// unregistered before its BPF object closes, so the sampler never reads a
/// descriptor that has been reused.
public final class Watchdog: Sendable {
    /// One policy under watch.
    struct Watched {
        var monitor: GuardMonitor
        /// Set once a guard tripped: the verdict is being carried out.
        var tripped: Bool = false
    }

    struct State {
        var sampler = SignalSampler()
        var watched: [String: Watched] = [:]
        var samples: UInt64 = 0
        /// CPU time the sampling thread spent sampling and judging.
        var cpuNs: UInt64 = 0
        var startedNs: UInt64 = monotonicNanoseconds()
    }

    public let windowNs: UInt64
    private let state = Mutex(State())
    /// The watchdog's thread; it takes no commands, only stop.
    private let loop: CommandLoop<Never>

    /// Windows are `windowMs` long (at least 100 ms).
    public init(windowMs: Int = 1000) throws(SystemCallError) {
        self.windowNs = UInt64(max(100, windowMs)) * 1_000_000
        self.loop = try CommandLoop(threadName: "mmpolicy-watch", role: "the watchdog thread")
    }

    // MARK: registration

    /// Starts watching `subject` with the guards for `definition`'s kind and `settings`.
    public func watch(_ subject: WatchedSubject, definition: (any PolicyKindDefinition)?, settings: GuardSettings) {
        state.withLock { state in
            state.sampler.register(subject)
            state.watched[subject.name] = Watched(monitor: GuardMonitor(subject: subject.name, definition: definition, settings: settings))
        }
    }

    /// Stops watching `name`. Call before the policy's object is closed.
    public func unwatch(_ name: String) {
        state.withLock { state in
            state.sampler.unregister(name: name)
            state.watched[name] = nil
        }
    }

    // MARK: status

    /// `name`'s latest window, guards and (up to `history`) recent windows.
    public func status(of name: String, history: Int = 0) -> WatchdogPolicyStatus? {
        state.withLock { state in
            guard let watched = state.watched[name] else { return nil }
            return WatchdogPolicyStatus(
                windowSeconds: Double(windowNs) / 1e9, breachWindows: watched.monitor.breachWindows,
                latest: watched.monitor.latest, guards: watched.monitor.status,
                history: history > 0 ? Array(watched.monitor.history.suffix(history)) : nil)
        }
    }

    /// What watching costs: samples taken and the CPU they took.
    public var cost: WatchdogCost {
        state.withLock { state in
            let elapsed = Double(monotonicNanoseconds() - state.startedNs)
            return WatchdogCost(windowSeconds: Double(windowNs) / 1e9, samples: state.samples, cpuNs: state.cpuNs,
                                cpuPercent: elapsed > 0 ? Double(state.cpuNs) / elapsed * 100 : 0,
                                policies: state.watched.count)
        }
    }

    // MARK: running

    /// Starts sampling. `onTrip` is called on the watchdog's thread, at most
    /// once per loaded policy; it must not block (start a task).
    public func start(onTrip: @escaping @Sendable (GuardTrip) -> Void) throws(SystemCallError) {
        try loop.start { [self] loop in run(loop, onTrip: onTrip) }
    }

    public func stop() {
        loop.stop()
    }

    private func run(_ loop: CommandLoop<Never>, onTrip: @Sendable (GuardTrip) -> Void) {
        var next = monotonicNanoseconds() + windowNs
        while !loop.takeCommands().stopping {
            let now = monotonicNanoseconds()
            if now < next {
                loop.wait(untilNs: next)
                continue
            }
            // Windows stay on a fixed grid; a late tick does not shift the next.
            next += windowNs
            if next <= now { next = now + windowNs }
            for trip in tick() { onTrip(trip) }
        }
    }

    /// One window: sample, judge, and return the guards that tripped.
    func tick() -> [GuardTrip] {
        state.withLock { state -> [GuardTrip] in
            let cpuStart = Self.threadCPUNanoseconds()
            var trips: [GuardTrip] = []
            // A tripped policy is being unloaded: its windows are no longer judged.
            for (name, window) in state.sampler.sample() where state.watched[name]?.tripped == false {
                if let trip = state.watched[name]?.monitor.observe(window) {
                    state.watched[name]?.tripped = true
                    trips.append(trip)
                }
            }
            state.samples += 1
            state.cpuNs += Self.threadCPUNanoseconds() - cpuStart
            return trips
        }
    }

    static func threadCPUNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

/// One policy's watchdog view for `mmpolicy status`: the latest window, every
/// guard with its last value and current run of breaches, and, for
/// `status --watch`, recent windows.
public struct WatchdogPolicyStatus: Codable, Sendable, Equatable {
    public var windowSeconds: Double
    /// Consecutive breached windows that trip one of this policy's guards.
    public var breachWindows: Int
    public var latest: SignalWindow?
    public var guards: [GuardMonitor.GuardStatus]
    public var history: [SignalWindow]?
}

/// What the watchdog costs the daemon.
public struct WatchdogCost: Codable, Sendable, Equatable {
    public var windowSeconds: Double
    public var samples: UInt64
    /// CPU time spent sampling and judging since the daemon started.
    public var cpuNs: UInt64
    /// That, as a share of one CPU over the daemon's life.
    public var cpuPercent: Double
    public var policies: Int
}
