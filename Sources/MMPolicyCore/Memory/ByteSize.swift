import BPFKit

/// A size as an operator writes it ("1G", "512M", "1.5GiB", "2048k",
/// "1073741824") and as mmpolicy prints it ("1.0 GiB").
///
/// It exists because zram swap is asked for by size in two places (`mmpolicy
/// tier setup-zram SIZE` and a manifest's `[tiering] setup_zram`), and both
/// must accept the same spellings and refuse the same mistakes with the
/// same words. Units are binary, as the kernel's own `memparse` reads
/// `/sys/block/zramN/disksize` ("1G" is 2^30 bytes).
public struct ByteSize: Sendable, Equatable, Hashable, Comparable, CustomStringConvertible {
    public var bytes: UInt64

    public init(bytes: UInt64) { self.bytes = bytes }

    /// What a size may look like, for error messages.
    public static let rule = "a size such as 512M, 1G, 1.5G or 4GiB (binary units K, M, G, T; a plain number is bytes)"

    /// Parses `text`: a number (digits, optionally one decimal point) and an
    /// optional unit K, M, G or T (any case), optionally followed by "iB" or
    /// "B". Nil when it is not such a size, or does not fit 64 bits.
    public init?(parsing text: String) {
        var rest = Substring(text.trimmingWhitespace())
        let lower = rest.lowercased()
        if lower.hasSuffix("ib") { rest = rest.dropLast(2) } else if lower.hasSuffix("b") { rest = rest.dropLast(1) }
        var shift: UInt64 = 0
        if let last = rest.last?.lowercased(), let unit = ["k": 10, "m": 20, "g": 30, "t": 40][last] {
            shift = UInt64(unit)
            rest = rest.dropLast()
        } else if lower.hasSuffix("ib") {
            return nil  // "iB" without a unit before it
        }
        let parts = rest.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false)
        guard let whole = parts.first, !whole.isEmpty, whole.allSatisfy(\.isASCIIDigit),
              parts.count == 1 || (!parts[1].isEmpty && parts[1].allSatisfy(\.isASCIIDigit)),
              let integer = UInt64(whole) else { return nil }
        guard shift < 64, integer <= UInt64.max >> shift else { return nil }
        var bytes = integer << shift
        if parts.count == 2 {
            // A fraction of the unit, to the byte (rounded down): 1.5G is 1610612736.
            guard shift > 0 else { return nil }  // half a byte is not a size
            var fraction: UInt64 = 0, scale: UInt64 = 1
            for digit in parts[1].prefix(12) {
                fraction = fraction * 10 + UInt64(digit.wholeNumberValue!)
                scale *= 10
            }
            let (extra, overflow) = bytes.addingReportingOverflow((fraction << shift) / scale)
            guard !overflow else { return nil }
            bytes = extra
        }
        self.bytes = bytes
    }

    /// "1.0 GiB", "512.0 MiB", "4.0 KiB", "100 B".
    public var description: String {
        let value = Double(bytes), kib = 1024.0, mib = kib * 1024, gib = mib * 1024, tib = gib * 1024
        if value >= tib { return "\(decimalString(value / tib, places: 1)) TiB" }
        if value >= gib { return "\(decimalString(value / gib, places: 1)) GiB" }
        if value >= mib { return "\(decimalString(value / mib, places: 1)) MiB" }
        if value >= kib { return "\(decimalString(value / kib, places: 1)) KiB" }
        return "\(bytes) B"
    }

    /// Rounded up to a multiple of `unit` (a page), as zram rounds a disksize.
    public func roundedUp(to unit: UInt64) -> ByteSize {
        guard unit > 1 else { return self }
        let remainder = bytes % unit
        return remainder == 0 ? self : ByteSize(bytes: bytes + (unit - remainder))
    }

    public static func < (lhs: ByteSize, rhs: ByteSize) -> Bool { lhs.bytes < rhs.bytes }
}

extension Character {
    var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}
