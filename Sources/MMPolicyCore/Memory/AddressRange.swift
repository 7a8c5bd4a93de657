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
    /// Finds the first candidate by binary search: O(log n + parts), so that
    /// clipping many ranges against a map of tens of thousands of mappings stays cheap.
    public func clipped(to ranges: [AddressRange]) -> [AddressRange] {
        var low = 0, high = ranges.count
        while low < high {  // the first range that ends after `start`
            let middle = (low + high) / 2
            if ranges[middle].end <= start { low = middle + 1 } else { high = middle }
        }
        var result: [AddressRange] = []
        for m in ranges[low...] {
            if m.start >= end { break }
            let s = max(start, m.start), e = min(end, m.end)
            if s < e { result.append(AddressRange(start: s, end: e)) }
        }
        return result
    }

    /// `ranges` sorted by start, with overlapping and touching ranges joined
    /// and empty ones dropped: the form `clipped(to:)` expects.
    public static func merged(_ ranges: [AddressRange]) -> [AddressRange] {
        var result: [AddressRange] = []
        for range in ranges.sorted(by: { $0.start < $1.start }) where range.length > 0 {
            if let last = result.last, range.start <= last.end {
                result[result.count - 1].end = max(last.end, range.end)
            } else {
                result.append(range)
            }
        }
        return result
    }

    /// "0x7f3a00000000-0x7f3a00200000", for errors and logs.
    public var hexDescription: String { "0x\(String(start, radix: 16))-0x\(String(end, radix: 16))" }

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

    /// `ranges` without the bytes of `cut`, in their order: a range that
    /// holds `cut` is split in two, one that lies inside it goes.
    public static func removing(_ cut: AddressRange, from ranges: [AddressRange]) -> [AddressRange] {
        guard cut.length > 0 else { return ranges }
        var result: [AddressRange] = []
        for range in ranges {
            if range.end <= cut.start || range.start >= cut.end {
                result.append(range)
                continue
            }
            if range.start < cut.start { result.append(AddressRange(start: range.start, end: cut.start)) }
            if range.end > cut.end { result.append(AddressRange(start: cut.end, end: range.end)) }
        }
        return result
    }
}
