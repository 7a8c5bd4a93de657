import BPFKit
import Dispatch
import Logging
import MMPolicyCore
import Synchronization

/// How long the audit trail keeps events, and how often the recorder
/// enforces it.
///
/// An event goes once it is older than `maxAgeSeconds` or is not among the
/// newest `maxCount` (either limit nil: none of that kind). The recorder's
/// writer prunes after a batch, at most every `pruneIntervalSeconds` unless
/// `pruneEveryEvents` events were written since the last prune; it also
/// prunes after its first batch (so a restart applies a changed retention).
public struct EventRetention: Sendable, Equatable {
    public var maxAgeSeconds: Int64?
    public var maxCount: Int?
    public var pruneIntervalSeconds: Double
    public var pruneEveryEvents: Int

    public static let defaultDays = 30
    public static let defaultCount = 100_000

    /// 30 days and 100,000 events, pruned at most every 60 s or every 1,000 events.
    public static let standard = EventRetention(days: defaultDays, count: defaultCount)
    /// Keeps everything.
    public static let unlimited = EventRetention(maxAgeSeconds: nil, maxCount: nil)

    public init(maxAgeSeconds: Int64?, maxCount: Int?, pruneIntervalSeconds: Double = 60, pruneEveryEvents: Int = 1000) {
        precondition(maxAgeSeconds.map { $0 >= 0 } ?? true && maxCount.map { $0 >= 0 } ?? true, "retention limits must be >= 0")
        self.maxAgeSeconds = maxAgeSeconds
        self.maxCount = maxCount
        self.pruneIntervalSeconds = pruneIntervalSeconds
        self.pruneEveryEvents = max(1, pruneEveryEvents)
    }

    public init(days: Int?, count: Int?, pruneIntervalSeconds: Double = 60, pruneEveryEvents: Int = 1000) {
        self.init(maxAgeSeconds: days.map { Int64($0) * 86_400 }, maxCount: count,
                  pruneIntervalSeconds: pruneIntervalSeconds, pruneEveryEvents: pruneEveryEvents)
    }

    /// Events before this wall-clock time (ns) are too old, as of `now`.
    public func cutoffNs(now: Int64) -> Int64? {
        maxAgeSeconds.map { now - min($0, Int64.max / 1_000_000_000 - 1) * 1_000_000_000 }
    }

    var limitsAnything: Bool { maxAgeSeconds != nil || maxCount != nil }
}

/// Writes audit events to the ``StateStore`` in the background, so the
/// daemon's OOM path never waits for SQLite.
///
/// ``record(_:)`` only appends to an in-memory queue under a lock that is
/// never held across database work. One serial dispatch queue writes what
/// has accumulated, a batch per transaction, and afterwards prunes by the
/// ``EventRetention`` (on the same queue: never on a decision path). A
/// batch that fails because the database is locked (someone's `sqlite3`
/// holding a transaction) stays queued and is tried again every
/// ``retryDelaySeconds``, up to ``maxQueuedEvents``; any other failed batch
/// (a full disk, a damaged file) is logged and counted in
/// ``lostEventCount``; later events are still written.
public final class EventRecorder: Sendable {
    private struct State {
        var pending: [EventRecord] = []
        /// A drain is queued or running and will look at `pending` again before it stops.
        var drainScheduled = false
        var closed = false
        var lost = 0
    }

    /// Touched on `writer` only.
    private struct PruneState {
        var lastPruneNs: UInt64?
        var writtenSincePrune = 0
        var pruned = 0
    }

    private let store: StateStore
    private let logger: Logger
    private let writer: DispatchQueue
    private let state = Mutex(State())
    public let retention: EventRetention
    private let pruneState = Mutex(PruneState())

    /// Events kept queued while the database is locked; beyond this the
    /// oldest are dropped (and counted lost).
    static let maxQueuedEvents = 50_000
    static let retryDelaySeconds = 0.5

    public init(store: StateStore, retention: EventRetention = .unlimited, logger: Logger = Logger(label: "mmpolicy.state")) {
        self.store = store
        self.logger = logger
        self.retention = retention
        writer = DispatchQueue(label: "mmpolicy.state.recorder", qos: .utility)
    }

    /// Events deleted by retention since this recorder started.
    public var prunedEventCount: Int { pruneState.withLock { $0.pruned } }

    /// Queues `event` for writing and returns at once. After ``close()`` the
    /// event is dropped (and logged).
    public func record(_ event: EventRecord) {
        enum Action { case none, schedule, refuse }
        let action = state.withLock { state -> Action in
            if state.closed {
                state.lost += 1
                return .refuse
            }
            state.pending.append(event)
            if state.drainScheduled { return .none }
            state.drainScheduled = true
            return .schedule
        }
        switch action {
        case .none: break
        case .schedule: writer.async { self.drain() }
        case .refuse:
            logger.error("event recorded after the recorder was closed; dropped",
                         metadata: ["type": "\(event.type.rawValue)", "summary": "\(event.summary)"])
        }
    }

    /// Returns once every event recorded before the call has been written (or
    /// has failed and been logged). Blocks the calling thread.
    public func flush() {
        dispatchPrecondition(condition: .notOnQueue(writer))
        writer.sync { drain() }
    }

    /// ``flush()`` without blocking a thread of the Swift concurrency pool.
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            writer.async {
                self.drain()
                continuation.resume()
            }
        }
    }

    /// Writes what is queued and refuses further events.
    public func close() {
        state.withLock { $0.closed = true }
        flush()
    }

    /// Events that were not stored: their batch failed to write, or they came after ``close()``.
    public var lostEventCount: Int { state.withLock { $0.lost } }

    /// Runs on `writer` only: writes batches until the queue is empty.
    private func drain() {
        while true {
            let batch = state.withLock { state -> [EventRecord] in
                if state.pending.isEmpty {
                    state.drainScheduled = false
                    return []
                }
                var batch: [EventRecord] = []
                swap(&batch, &state.pending)
                return batch
            }
            if batch.isEmpty { return }
            do {
                try store.append(contentsOf: batch)
            } catch where error.isLocked {
                // Kept, in order, for the retry; drainScheduled stays set until it runs.
                let (dropped, closed) = state.withLock { state -> (Int, Bool) in
                    guard !state.closed else {
                        state.lost += batch.count
                        return (batch.count, true)
                    }
                    state.pending = batch + state.pending
                    let excess = max(0, state.pending.count - Self.maxQueuedEvents)
                    state.pending.removeFirst(excess)
                    state.lost += excess
                    return (excess, false)
                }
                logger.warning("the state database is locked by another process; \(batch.count) events wait to be written (retrying every \(Self.retryDelaySeconds) s)",
                               metadata: ["error": "\(error)", "dropped": "\(dropped)"])
                if closed { return }
                writer.asyncAfter(deadline: .now() + Self.retryDelaySeconds) { self.drain() }
                return
            } catch {
                state.withLock { $0.lost += batch.count }
                logger.error("could not write \(batch.count) events to the state database; they are lost",
                             metadata: ["error": "\(error)", "first": "\(batch[0].summary)"])
            }
            pruneIfDue(written: batch.count)
        }
    }

    /// Runs on `writer` only, after a batch: applies the retention when the
    /// first batch was written, `pruneIntervalSeconds` passed since the last
    /// prune, or `pruneEveryEvents` were written since.
    private func pruneIfDue(written: Int) {
        guard retention.limitsAnything else { return }
        let now = monotonicNanoseconds()
        let due = pruneState.withLock { prune -> Bool in
            prune.writtenSincePrune += written
            if let last = prune.lastPruneNs,
               Double(now &- last) < retention.pruneIntervalSeconds * 1e9,
               prune.writtenSincePrune < retention.pruneEveryEvents {
                return false
            }
            prune.lastPruneNs = now
            prune.writtenSincePrune = 0
            return true
        }
        guard due else { return }
        do {
            let deleted = try store.pruneEvents(retention)
            pruneState.withLock { $0.pruned += deleted }
            if deleted > 0 { logger.debug("pruned \(deleted) events past the retention") }
        } catch {
            logger.error("could not prune old events from the state database", metadata: ["error": "\(error)"])
        }
    }
}
