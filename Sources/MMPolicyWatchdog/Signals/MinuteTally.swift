import MMPolicyCore

/// The per-window counts of one subject over the last 60 s, summed into a
/// ``MinuteCounts`` for each new window.
///
/// It exists so that "actions per minute" (OOM: kills) is a sliding count of what happened
/// in the last minute, not one window's count times 60: a single action reads
/// 1, not 60, and a burst keeps counting until it is a minute old.
struct MinuteTally: Sendable {
    static let horizonNs: UInt64 = 60_000_000_000

    private struct Entry: Sendable {
        var startNs: UInt64
        var endNs: UInt64
        var actions: UInt64
        var rejections: UInt64
        var errors: UInt64
        var deadlineMisses: UInt64
        var callbackRuns: UInt64
        var callbackRunTimeNanoseconds: UInt64
    }

    private var entries: [Entry] = []

    init() { entries.reserveCapacity(64) }

    /// Adds one window and returns the sums over every window that ended in
    /// the 60 s before its end.
    mutating func add(startNs: UInt64, endNs: UInt64, decisions: DecisionHealth, callbackRuns: UInt64,
                      callbackRunTimeNanoseconds: UInt64) -> MinuteCounts {
        entries.append(Entry(startNs: startNs, endNs: endNs, actions: decisions.actions, rejections: decisions.rejections,
                             errors: decisions.errors, deadlineMisses: decisions.deadlineMisses,
                             callbackRuns: callbackRuns, callbackRunTimeNanoseconds: callbackRunTimeNanoseconds))
        let horizon = endNs.saturatingMinus(Self.horizonNs)
        var expired = 0
        while expired < entries.count, entries[expired].endNs <= horizon { expired += 1 }
        if expired > 0 { entries.removeFirst(expired) }
        var sums = MinuteCounts()
        for entry in entries {
            sums.actions += entry.actions
            sums.rejections += entry.rejections
            sums.errors += entry.errors
            sums.deadlineMisses += entry.deadlineMisses
            sums.callbackRuns += entry.callbackRuns
            sums.callbackRunTimeNanoseconds += entry.callbackRunTimeNanoseconds
        }
        sums.seconds = Double(endNs.saturatingMinus(entries.first?.startNs ?? endNs)) / 1e9
        return sums
    }
}
