#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds: the clock `bpf_ktime_get_ns()` reads, so
/// times taken in Swift and in BPF programs compare directly.
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// CLOCK_REALTIME in nanoseconds since the Unix epoch: the timestamps of
/// recorded events, which people read as dates.
public func wallClockNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

/// `value` with `places` decimal places ("12.35"), without Foundation's formatters.
public func decimalString(_ value: Double, places: Int) -> String {
    var scale = 1
    for _ in 0..<places { scale *= 10 }
    let scaled = Int((value * Double(scale)).rounded())
    guard places > 0 else { return String(scaled) }
    let fraction = String(abs(scaled % scale))
    let sign = scaled < 0 && scaled / scale == 0 ? "-" : ""
    return "\(sign)\(scaled / scale)." + String(repeating: "0", count: places - fraction.count) + fraction
}

/// A duration as a person reads it: "42s", "3m5s", "2h10m", "1d4h".
public func durationString(seconds: Double) -> String {
    let s = Int(max(0, seconds))
    if s >= 86400 { return "\(s / 86400)d\(s % 86400 / 3600)h" }
    if s >= 3600 { return "\(s / 3600)h\(s % 3600 / 60)m" }
    if s >= 60 { return "\(s / 60)m\(s % 60)s" }
    return "\(s)s"
}
