/// The "KEY VALUE" lines of a kernel counter file (/proc/vmstat, a memcg's
/// memory.stat or memory.events), walked without building an array of lines.
///
/// The sampler parses several such files every window; walking them in place
/// keeps a window's cost to one string per file.
struct CounterLines: Sequence, IteratorProtocol {
    private var rest: Substring

    init(_ text: String) { rest = Substring(text) }

    /// The next line's key and its value as an unsigned integer. Lines
    /// without a space or whose value is not a number are skipped.
    mutating func next() -> (key: Substring, value: UInt64)? {
        while !rest.isEmpty {
            let end = rest.utf8.firstIndex(of: UInt8(ascii: "\n")) ?? rest.endIndex
            let line = rest[..<end]
            rest = end == rest.endIndex ? rest[end...] : rest[rest.index(after: end)...]
            guard let space = line.utf8.firstIndex(of: UInt8(ascii: " ")) else { continue }
            var digits = line[line.index(after: space)...]
            while digits.utf8.first == UInt8(ascii: " ") { digits = digits.dropFirst() }
            if let value = UInt64(digits) { return (line[..<space], value) }
        }
        return nil
    }
}
