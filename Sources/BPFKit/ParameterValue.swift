/// A value for a `const volatile` global of a BPF object, set before load.
///
/// Manifests and the command line produce these; ``BPFObject/setParameter(_:to:)``
/// checks each against the global's BTF type, so a policy never starts with a
/// parameter silently truncated or reinterpreted.
public enum ParameterValue: Sendable, Hashable, CustomStringConvertible {
    case integer(Int64)
    case boolean(Bool)
    case string(String)

    public var description: String {
        switch self {
        case .integer(let v): return String(v)
        case .boolean(let v): return String(v)
        case .string(let v): return "\"\(v)\""
        }
    }

    /// Parses a command-line `--set key=value` value: integers (decimal or
    /// 0x-hex, with an optional K/M/G binary suffix), `true`/`false`, or a string.
    public init(parsing text: String) {
        if text == "true" { self = .boolean(true); return }
        if text == "false" { self = .boolean(false); return }
        if let v = ParameterValue.parseInteger(text) { self = .integer(v); return }
        self = .string(text)
    }

    static func parseInteger(_ text: String) -> Int64? {
        var body = Substring(text)
        var multiplier: Int64 = 1
        switch body.last {
        case "K", "k": multiplier = 1 << 10
        case "M", "m": multiplier = 1 << 20
        case "G", "g": multiplier = 1 << 30
        default: break
        }
        if multiplier != 1 { body = body.dropLast() }
        let negative = body.hasPrefix("-")
        if negative { body = body.dropFirst() }
        let value: Int64?
        if body.hasPrefix("0x") { value = Int64(body.dropFirst(2), radix: 16) } else { value = Int64(body) }
        guard let magnitude = value else { return nil }
        let (scaled, overflow) = magnitude.multipliedReportingOverflow(by: multiplier)
        if overflow { return nil }
        return negative ? -scaled : scaled
    }
}
