import BPFKit
import Logging
import MMPolicyCore
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What is wrong with the daemon's state database right now, for `status`,
/// the log and the audit trail.
///
/// It exists because the state store's failures used to be swallowed where
/// they happened (a `try?` here, a warning there): a knob journal that could
/// not be written or read, or a desired set that was lost, left no trace an
/// operator would see. Every read and write of the ``StateStore`` reports
/// here; the first failure of a kind is logged at error level and recorded
/// as a `note` event (an event that cannot be stored is counted in the
/// recorder's lost events, as any other), repeats are only counted, and a
/// later success of the same kind clears it with a notice. Start-up findings
/// that no later success undoes (a damaged file moved aside, a desired set
/// that could not be salvaged, knobs reset without the journal) are
/// ``report(_:_:)``ed and stay for the daemon's life.
public final class StateHealth: Sendable {
    /// Which part of the state a problem concerns.
    public enum Area: String, Sendable, CaseIterable {
        /// The database file itself: damaged, moved aside, recreated.
        case database
        /// The knob journal (originals of the kernel knobs mmpolicy changed).
        case journal
        /// The desired policy set (what a restarted daemon loads).
        case desiredSet = "desired-set"
        /// The audit trail.
        case events
    }

    private struct Key: Hashable {
        var area: Area
        /// "read", "write", or "" for a reported finding.
        var access: String
    }

    private struct Entry {
        var problem: StateProblem
        var sticky: Bool
    }

    private struct State {
        var problems: [Key: Entry] = [:]
        var order: [Key] = []
        var record: (@Sendable (EventRecord) -> Void)?
    }

    private let state = Mutex(State())
    private let logger: Logger?

    /// `logger` nil: nothing is logged (tests, tools).
    public init(logger: Logger? = nil) {
        self.logger = logger
    }

    /// Where problems are recorded as audit events from now on (the daemon's
    /// ``EventRecorder``, once it exists). Problems found before are recorded now.
    public func connect(record: @escaping @Sendable (EventRecord) -> Void) {
        let earlier = state.withLock { state -> [StateProblem] in
            state.record = record
            return state.order.compactMap { state.problems[$0]?.problem }.filter { $0.area != Area.events.rawValue }
        }
        for problem in earlier { record(Self.event(problem.message, timeNs: problem.sinceNs)) }
    }

    /// The problems now, oldest first.
    public var problems: [StateProblem] {
        state.withLock { state in state.order.compactMap { state.problems[$0]?.problem } }
    }

    /// A finding that stays for the daemon's life: logged at error level and recorded.
    public func report(_ area: Area, _ message: String) {
        let now = wallClockNanoseconds()
        let record = state.withLock { state -> (@Sendable (EventRecord) -> Void)? in
            let key = Key(area: area, access: "report-\(state.order.count)")
            state.problems[key] = Entry(problem: StateProblem(area: area.rawValue, message: message, sinceNs: now, failures: 1),
                                        sticky: true)
            state.order.append(key)
            return state.record
        }
        logger?.error("\(message)")
        record?(Self.event(message, timeNs: now))
    }

    /// A read or write of `area` failed with `error` (``StateStore`` calls this).
    func failed(_ area: Area, writing: Bool, operation: String, _ error: StateStoreError) {
        let key = Key(area: area, access: writing ? "write" : "read")
        let now = wallClockNanoseconds()
        let message = "state database: \(Self.what(area, writing: writing)) failed (\(operation)): \(error)"
        let (isNew, sink) = state.withLock { state -> (Bool, (@Sendable (EventRecord) -> Void)?) in
            if state.problems[key] != nil {
                state.problems[key]!.problem.failures += 1
                return (false, nil)
            }
            state.problems[key] = Entry(problem: StateProblem(area: area.rawValue, message: message, sinceNs: now, failures: 1),
                                        sticky: false)
            state.order.append(key)
            return (true, state.record)
        }
        guard isNew else { return }
        logger?.error("\(message)")
        // An event about the audit trail failing would fail the same way: it is counted there.
        if area != .events { sink?(Self.event(message, timeNs: now)) }
    }

    /// A read or write of `area` succeeded: a failure of the same kind is over.
    func succeeded(_ area: Area, writing: Bool) {
        let key = Key(area: area, access: writing ? "write" : "read")
        let cleared = state.withLock { state -> (StateProblem, (@Sendable (EventRecord) -> Void)?)? in
            guard let entry = state.problems[key], !entry.sticky else { return nil }
            state.problems[key] = nil
            state.order.removeAll { $0 == key }
            return (entry.problem, state.record)
        }
        guard let (problem, record) = cleared else { return }
        let message = "state database: \(Self.what(area, writing: writing)) works again (it had failed \(problem.failures) time(s) since \(formatUTC(problem.sinceNs)))"
        logger?.notice("\(message)")
        if area != .events { record?(Self.event(message, timeNs: wallClockNanoseconds())) }
    }

    static func what(_ area: Area, writing: Bool) -> String {
        switch area {
        case .database: return writing ? "writing the database" : "reading the database"
        case .journal: return writing ? "writing the knob journal" : "reading the knob journal"
        case .desiredSet: return writing ? "saving the desired policy set" : "reading the desired policy set"
        case .events: return writing ? "storing audit events" : "reading audit events"
        }
    }

    static func event(_ message: String, timeNs: Int64) -> EventRecord {
        EventRecord(timeNs: timeNs, type: .note, policy: nil, summary: message)
    }
}

/// "2026-11-22T10:15:03Z" for wall-clock nanoseconds since the epoch.
func formatUTC(_ ns: Int64) -> String {
    var seconds = time_t(ns / 1_000_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}
