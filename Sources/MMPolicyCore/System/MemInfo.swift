#if canImport(Glibc)
import Glibc
#endif

/// The system-wide memory and swap figures of /proc/meminfo that early-OOM
/// decisions use (the thresholds earlyoom and nohang apply).
public struct MemInfo: Sendable, Equatable {
    public var memTotal: UInt64
    public var memFree: UInt64
    /// The kernel's estimate of memory available for new allocations without swapping.
    public var memAvailable: UInt64
    public var swapTotal: UInt64
    public var swapFree: UInt64

    public init(memTotal: UInt64, memFree: UInt64, memAvailable: UInt64, swapTotal: UInt64, swapFree: UInt64) {
        self.memTotal = memTotal
        self.memFree = memFree
        self.memAvailable = memAvailable
        self.swapTotal = swapTotal
        self.swapFree = swapFree
    }

    /// MemAvailable as a percentage of MemTotal (0...100).
    public var availablePercent: Double {
        memTotal == 0 ? 0 : Double(memAvailable) * 100 / Double(memTotal)
    }

    /// SwapFree as a percentage of SwapTotal; **0 when there is no swap**.
    ///
    /// This is earlyoom's convention (meminfo.c: `SwapFreePercent = 0` when
    /// `SwapTotal` is 0): its trigger is "available memory below M% *and*
    /// free swap below S%", so with no swap the swap condition always holds
    /// and memory alone decides. Reporting 100 would make such a trigger
    /// never fire on a swapless machine. Check `swapTotal` to tell "no swap"
    /// from "swap full".
    public var swapFreePercent: Double {
        swapTotal == 0 ? 0 : Double(swapFree) * 100 / Double(swapTotal)
    }

    /// Parses /proc/meminfo text ("Key:   value kB" lines). Values are
    /// converted to bytes; keys other than the five used here are ignored.
    public init(parsing text: String) throws(SystemCallError) {
        var values: [Substring: UInt64] = [:]
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            let words = line[line.index(after: colon)...].split(separator: " ")
            guard let first = words.first, let number = UInt64(first) else { continue }
            switch words.count > 1 ? words[1] : "" {
            case "kB": values[key] = number * 1024
            case "": values[key] = number  // counts such as HugePages_Total
            default: continue
            }
        }
        func value(_ key: Substring) throws(SystemCallError) -> UInt64 {
            guard let found = values[key] else {
                throw SystemCallError.format("/proc/meminfo", "The '\(key):' line is missing; MemAvailable needs Linux 3.14 or later.")
            }
            return found
        }
        self.init(memTotal: try value("MemTotal"), memFree: try value("MemFree"), memAvailable: try value("MemAvailable"),
                  swapTotal: try value("SwapTotal"), swapFree: try value("SwapFree"))
        guard memTotal > 0 else {
            throw SystemCallError.format("/proc/meminfo", "MemTotal is 0; this is not a real meminfo file.")
        }
    }

    /// Reads /proc/meminfo.
    public static func read() throws(SystemCallError) -> MemInfo {
        try MemInfo(parsing: KernelFile.read("/proc/meminfo"))
    }
}
