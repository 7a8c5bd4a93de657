// Helpers shared by the benchmarks: errors, statistics, formatting, small file I/O.
#if canImport(Glibc)
import Glibc
#endif

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func physicalMemoryBytes() -> UInt64 {
    UInt64(sysconf(Int32(_SC_PHYS_PAGES))) * UInt64(sysconf(Int32(_SC_PAGESIZE)))
}

func kernelRelease() -> String {
    var u = utsname()
    uname(&u)
    return withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

func write(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY)
    guard fd >= 0 else { throw BenchError("cannot open \(path): errno \(errno)") }
    defer { close(fd) }
    guard Glibc.write(fd, text, text.utf8.count) == text.utf8.count else { throw BenchError("cannot write \(path): errno \(errno)") }
}

func percentile(_ samples: [Double], _ p: Double) -> Double {
    let sorted = samples.sorted()
    guard !sorted.isEmpty else { return .nan }
    let rank = Int((p / 100 * Double(sorted.count - 1)).rounded())
    return sorted[rank]
}

func fmt(_ value: Double, _ decimals: Int = 1) -> String {
    guard value.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = Int((value * scale).rounded())
    if decimals == 0 { return String(scaled) }
    // The sign apart: -0.9 has a whole part of 0, which has no sign.
    let sign = scaled < 0 ? "-" : "", magnitude = abs(scaled)
    let whole = magnitude / Int(scale), frac = magnitude % Int(scale)
    let fracText = String(frac)
    return "\(sign)\(whole).\(String(repeating: "0", count: decimals - fracText.count))\(fracText)"
}

extension String {
    func trimmed(_ set: String) -> String {
        var view = Substring(self)
        while let c = view.first, set.contains(c) { view = view.dropFirst() }
        while let c = view.last, set.contains(c) { view = view.dropLast() }
        return String(view)
    }
}

/// Waits up to `timeoutMs` for `fd` to poll readable (POLLIN or hang-up).
func pollReadable(_ fd: Int32, timeoutMs: Int32) -> Bool {
    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
        let n = poll(&entry, 1, timeoutMs)
        if n < 0 && errno == EINTR { continue }
        return n > 0
    }
}

/// The whole contents of a (small) file; nil if it cannot be read.
func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 && errno == EINTR { continue }
        if n < 0 { return nil }
        if n == 0 { break }
        out += chunk[..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

/// Sleeps `ms` milliseconds.
func sleepMs(_ ms: Int) { usleep(UInt32(ms * 1000)) }

/// libc functions the Glibc module does not import (they need _GNU_SOURCE),
/// looked up once by name.
enum LibC {
    static let memfdCloexec: UInt32 = 1  // MFD_CLOEXEC, <linux/memfd.h>
    static let memfdCreate = unsafeBitCast(dlsym(nil, "memfd_create")!, to: (@convention(c) (UnsafePointer<CChar>, UInt32) -> Int32).self)
    static let fallocate = unsafeBitCast(dlsym(nil, "fallocate")!, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
    static let pipe2 = unsafeBitCast(dlsym(nil, "pipe2")!, to: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
}
