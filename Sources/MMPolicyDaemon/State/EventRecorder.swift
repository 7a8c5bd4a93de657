import Dispatch
import Logging
import MMPolicyCore
import Synchronization

/// Writes audit events to the ``StateStore`` in the background, so the
/// daemon's OOM path never waits for SQLite.
///
/// ``record(_:)`` only appends to an in-memory queue under a lock that is
/// never held across database work. One serial dispatch queue writes what
/// has accumulated, a batch per transaction. A failed batch is logged and
/// counted in ``lostEventCount``; later events are still written.
public final class EventRecorder: Sendable {
    private struct State {
        var pending: [EventRecord] = []
        /// A drain is queued or running and will look at `pending` again before it stops.
        var drainScheduled = false
        var closed = false
        var lost = 0
    }

    private let store: StateStore
    private let logger: Logger
    private let writer: DispatchQueue
    private let state = Mutex(State())

    public init(store: StateStore, logger: Logger = Logger(label: "mmpolicy.state")) {
        self.store = store
        self.logger = logger
        writer = DispatchQueue(label: "mmpolicy.state.recorder", qos: .utility)
    }

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
            } catch {
                state.withLock { $0.lost += batch.count }
                logger.error("could not write \(batch.count) events to the state database; they are lost",
                             metadata: ["error": "\(error)", "first": "\(batch[0].summary)"])
            }
        }
    }
}
