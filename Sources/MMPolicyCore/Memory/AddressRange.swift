/// A range of a process's virtual addresses, [start, end).
///
/// The unit tiering works in: what a policy asks to move, what a process's
/// mappings cover, and what process_madvise(2) is given.
public struct AddressRange: Sendable, Equatable, Hashable, Codable {
    public var start: UInt64
    public var end: UInt64

    public init(start: UInt64, end: UInt64) {
        self.start = start
        self.end = max(start, end)
    }

    public init(start: UInt64, length: UInt64) {
        self.init(start: start, end: start &+ length < start ? UInt64.max : start + length)
    }

    public var length: UInt64 { end - start }

    /// The parts of this range inside `ranges` (sorted, not overlapping), in their order.
    public func clipped(to ranges: [AddressRange]) -> [AddressRange] {
        ranges.compactMap { m in
            let s = max(start, m.start), e = min(end, m.end)
            return s < e ? AddressRange(start: s, end: e) : nil
        }
    }

    /// The first `bytes` of `ranges`, in order.
    public static func prefix(_ ranges: [AddressRange], bytes: UInt64) -> [AddressRange] {
        var left = bytes, result: [AddressRange] = []
        for range in ranges where left > 0 {
            let take = min(left, range.length)
            result.append(AddressRange(start: range.start, end: range.start + take))
            left -= take
        }
        return result
    }
}
