import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The cgroup v1 memory cgroups whose kernel OOM killer a policy has turned
/// off ("held"), shared by the engine that holds them, the guardian that
/// watches them from outside the daemon, and the daemon's link to it.
///
/// It exists because a held memcg's OOM waits for the daemon: if the daemon
/// is stopped (SIGSTOP, a debugger) or stuck, its tasks would wait for ever.
/// The engine ``hold(root:boundNs:)``s each governed scope with a bound (the
/// policy's deadline plus a margin); the guardian, told through the daemon's
/// link, watches every memcg below each root and hands an OOM that outlives
/// its bound to the kernel killer (`oom_kill_disable=0`). What the guardian
/// saw comes back here: when each OOM began (``onset(of:before:)``, so a
/// decision's latency counts from the OOM, not from a late daemon's wake-up)
/// and which OOMs it handed over (``takeHandovers()``, for the engine to
/// record and to turn the killer off again once the OOM is over).
///
/// Every method takes a short lock; none waits on anything else.
public final class OOMHoldBoard: Sendable {
    /// A governed scope and how long an OOM in it may last before the
    /// guardian hands it to the kernel.
    public struct Hold: Sendable, Equatable {
        public var root: String
        public var boundNs: UInt64

        public init(root: String, boundNs: UInt64) {
            self.root = root
            self.boundNs = boundNs
        }
    }

    /// An OOM the guardian handed to the kernel killer because nobody had
    /// resolved it within its bound. Times are CLOCK_MONOTONIC (the same in
    /// every process).
    public struct Handover: Sendable, Equatable {
        public var memcg: String
        public var onsetNs: UInt64
        public var handedNs: UInt64
        /// The memcg's kernel kill count (`oom_kill`) when it was handed over.
        public var killCount: UInt64

        public init(memcg: String, onsetNs: UInt64, handedNs: UInt64, killCount: UInt64) {
            self.memcg = memcg
            self.onsetNs = onsetNs
            self.handedNs = handedNs
            self.killCount = killCount
        }
    }

    private struct State {
        var holds: [String: UInt64] = [:]
        var generation: UInt64 = 0
        var onsets: [String: UInt64] = [:]
        var handovers: [Handover] = []
    }

    private let state = Mutex(State())
    /// Reads what the guardian has sent and not yet been taken (set by the
    /// daemon's guardian link; nil: nobody to ask).
    private let pump = Mutex<(@Sendable () -> Void)?>(nil)
    /// Signalled when the holds change (the guardian link sends them on).
    public let holdsChanged: EventFD
    /// Signalled when a handover arrives (the engine records it).
    public let handoverArrived: EventFD

    /// How many onsets are kept (one per memcg, the newest).
    static let onsetCapacity = 4096

    public init() throws(SystemCallError) {
        holdsChanged = try EventFD()
        handoverArrived = try EventFD()
    }

    // MARK: the engine's side

    /// Starts (or updates) holding the scope at `root`.
    public func hold(root: String, boundNs: UInt64) {
        let changed = state.withLock { state -> Bool in
            guard state.holds[root] != boundNs else { return false }
            state.holds[root] = boundNs
            state.generation += 1
            return true
        }
        if changed { holdsChanged.signal() }
    }

    /// Stops holding the scope at `root`.
    public func release(root: String) {
        let changed = state.withLock { state -> Bool in
            guard state.holds.removeValue(forKey: root) != nil else { return false }
            state.generation += 1
            return true
        }
        if changed { holdsChanged.signal() }
    }

    /// When the guardian saw memcg `memcg`'s current OOM begin, if it began
    /// at or before `t0` (plus a little: both processes wake on the same
    /// notification) and no more than `withinNs` before it.
    public func onset(of memcg: String, before t0: UInt64, withinNs: UInt64 = 60_000_000_000) -> UInt64? {
        guard let onset = state.withLock({ $0.onsets[memcg] }) else { return nil }
        guard onset <= t0 + 5_000_000, t0 <= onset + withinNs else { return nil }
        return onset
    }

    /// The onset of `memcg`'s OOM as ``onset(of:before:withinNs:)`` gives
    /// it, taking first whatever the guardian sent that the link has not
    /// passed on yet: both processes wake on the same notification, and the
    /// link's thread may not have run by the time a fast decision is done.
    /// Non-blocking reads only; call it after acting, never before.
    public func onsetReadingTheLink(of memcg: String, before t0: UInt64) -> UInt64? {
        if let onset = onset(of: memcg, before: t0) { return onset }
        pump.withLock { $0 }?()
        return onset(of: memcg, before: t0)
    }

    /// Installs what ``onsetReadingTheLink(of:before:)`` calls to take the
    /// guardian's pending messages.
    public func setPump(_ body: (@Sendable () -> Void)?) { pump.withLock { $0 = body } }

    /// The handovers since the last call.
    public func takeHandovers() -> [Handover] {
        _ = handoverArrived.read()
        return state.withLock { state in
            defer { state.handovers.removeAll() }
            return state.handovers
        }
    }

    // MARK: the guardian link's side

    /// The holds now, and a number that changes whenever they do.
    public func currentHolds() -> (holds: [Hold], generation: UInt64) {
        state.withLock { state in
            (state.holds.map { Hold(root: $0.key, boundNs: $0.value) }.sorted { $0.root < $1.root }, state.generation)
        }
    }

    /// The guardian saw an OOM begin in `memcg` at `onsetNs`.
    public func noteOnset(memcg: String, onsetNs: UInt64) {
        state.withLock { state in
            if state.onsets.count >= Self.onsetCapacity, state.onsets[memcg] == nil {
                // Keep the newest: drop the oldest half.
                let keep = state.onsets.sorted { $0.value > $1.value }.prefix(Self.onsetCapacity / 2)
                state.onsets = Dictionary(uniqueKeysWithValues: keep.map { ($0.key, $0.value) })
            }
            state.onsets[memcg] = onsetNs
        }
    }

    /// The guardian handed an OOM to the kernel killer.
    public func noteHandover(_ handover: Handover) {
        state.withLock { state in
            state.onsets[handover.memcg] = handover.onsetNs
            state.handovers.append(handover)
        }
        handoverArrived.signal()
    }
}
