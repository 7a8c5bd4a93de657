import BPFKit

/// One figure a kind's engine reports about a loaded policy for `status`,
/// e.g. tiering's "demoted 512 MiB" or "saved 280 MiB".
///
/// It exists so that a kind can show what its policy has done without the
/// control protocol or the CLI knowing the kind: the engine names the
/// figure, gives its value and unit, and `status` prints the list.
public struct KindFigure: Codable, Sendable, Equatable {
    /// What it counts, in words: "demoted", "refaulted pages".
    public var name: String
    public var value: Double
    /// How the value reads: `bytes` (printed in KiB/MiB/GiB), `count`, `ratio`, or a unit of its own.
    public var unit: String

    public init(_ name: String, _ value: Double, unit: String) {
        self.name = name
        self.value = value
        self.unit = unit
    }

    /// "demoted 512.0 MiB", "refaulted pages 12", "compression 3.10x".
    public var text: String {
        switch unit {
        case "bytes":
            let magnitude = abs(value), kib = 1024.0, mib = kib * 1024, gib = mib * 1024
            if magnitude >= gib { return "\(name) \(decimalString(value / gib, places: 1)) GiB" }
            if magnitude >= mib { return "\(name) \(decimalString(value / mib, places: 1)) MiB" }
            if magnitude >= kib { return "\(name) \(decimalString(value / kib, places: 1)) KiB" }
            return "\(name) \(decimalString(value, places: 0)) B"
        case "count": return "\(name) \(decimalString(value, places: 0))"
        case "ratio": return "\(name) \(decimalString(value, places: 2))x"
        default: return "\(name) \(decimalString(value, places: 2)) \(unit)"
        }
    }
}
