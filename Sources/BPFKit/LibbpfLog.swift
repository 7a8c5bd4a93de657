import CLibBPF
import Synchronization

/// Collects what libbpf prints, so errors can quote it instead of it going
/// to stderr. libbpf has one process-wide print callback; this installs it
/// once and keeps the most recent warnings (debug lines are dropped) in a
/// ring shared by all objects. An error quotes the lines printed since its
/// operation began; operations running at the same time on other threads may
/// add lines of their own to that span.
enum LibbpfLog {
    private static let ring = Mutex<[String]>([])
    private static let capacity = 256
    private static let installed = Mutex(false)

    static func install() {
        installed.withLock { done in
            guard !done else { return }
            done = true
            libbpf_set_print { level, format, args in
                guard let format, let args else { return 0 }
                // Debug lines (CO-RE relocations, section skipping) are noise.
                guard level != LIBBPF_DEBUG else { return 0 }
                var buffer = [CChar](repeating: 0, count: 1024)
                _ = vsnprintf(&buffer, buffer.count, format, args)
                let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                LibbpfLog.append(line.trimmingCharacters(in: "\n "))
                return 0
            }
        }
    }

    private static func append(_ line: String) {
        guard !line.isEmpty else { return }
        ring.withLock { lines in
            lines.append(line)
            if lines.count > capacity { lines.removeFirst(lines.count - capacity) }
        }
    }

    /// Lines printed since `mark`, mentioning `object` when non-nil.
    static func messages(since mark: Int, mentioning needle: String? = nil) -> [String] {
        ring.withLock { lines in
            let start = max(0, min(mark, lines.count))
            return lines[start...].filter { line in needle.map { line.contains($0) } ?? true }
                .filter { !$0.contains("-- BEGIN PROG LOAD LOG") }
        }
    }

    static var mark: Int { ring.withLock { $0.count } }
}
