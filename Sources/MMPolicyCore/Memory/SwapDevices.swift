/// One active swap area, a line of /proc/swaps, with the zram device's
/// statistics when it is one.
///
/// Exists because the slow tier is whatever swap the system has: tiering
/// needs to know whether there is any, how full it is, and, for zram, how
/// much memory the stored pages really cost.
public struct SwapDevice: Sendable, Equatable {
    /// The device or file, e.g. "/dev/zram0" or "/swapfile".
    public var path: String
    /// "partition" or "file".
    public var type: String
    public var sizeBytes: UInt64
    public var usedBytes: UInt64
    /// Higher is used first; swapon without -p gives -2, -3, ... in order.
    public var priority: Int
    /// The statistics of /sys/block/zramN/mm_stat, when the device is zram
    /// and the file could be read.
    public var zram: ZramStats?
    /// /sys/block/zramN/disksize: the most uncompressed data the zram
    /// device takes (its swap area is that less a header page).
    public var zramDiskSizeBytes: UInt64?

    public init(path: String, type: String, sizeBytes: UInt64, usedBytes: UInt64, priority: Int, zram: ZramStats? = nil) {
        self.path = path
        self.type = type
        self.sizeBytes = sizeBytes
        self.usedBytes = usedBytes
        self.priority = priority
        self.zram = zram
    }

    public var freeBytes: UInt64 { sizeBytes > usedBytes ? sizeBytes - usedBytes : 0 }

    /// "zram3" for "/dev/zram3"; nil for anything else.
    public var zramName: String? {
        guard path.hasPrefix("/dev/zram") else { return nil }
        let name = path.dropFirst("/dev/".count)
        let number = name.dropFirst("zram".count)
        return !number.isEmpty && number.allSatisfy(\.isNumber) ? String(name) : nil
    }
}

/// /sys/block/zramN/mm_stat: what a zram device stores and what that costs
/// (field order per Documentation/admin-guide/blockdev/zram.rst).
public struct ZramStats: Sendable, Equatable {
    /// orig_data_size: uncompressed bytes stored, same-filled pages included.
    public var storedBytes: UInt64
    /// compr_data_size: those bytes compressed.
    public var compressedBytes: UInt64
    /// mem_used_total: memory the device takes, allocator overhead and
    /// fragmentation included: what the stored pages really cost.
    public var usedBytes: UInt64
    /// mem_limit (0: none).
    public var limitBytes: UInt64
    /// mem_used_max: the most `usedBytes` has been.
    public var usedMaxBytes: UInt64
    /// same_pages: pages of one repeated word (zeros...), stored without memory.
    public var samePages: UInt64
    /// pages_compacted: pages freed by compaction.
    public var pagesCompacted: UInt64
    /// huge_pages: pages that did not compress and are stored whole (Linux 4.18).
    public var hugePages: UInt64?
    /// huge_pages_since: all such pages since the device was set up (Linux 5.15).
    public var hugePagesSince: UInt64?

    public init(storedBytes: UInt64, compressedBytes: UInt64, usedBytes: UInt64, limitBytes: UInt64 = 0,
                usedMaxBytes: UInt64 = 0, samePages: UInt64 = 0, pagesCompacted: UInt64 = 0,
                hugePages: UInt64? = nil, hugePagesSince: UInt64? = nil) {
        self.storedBytes = storedBytes
        self.compressedBytes = compressedBytes
        self.usedBytes = usedBytes
        self.limitBytes = limitBytes
        self.usedMaxBytes = usedMaxBytes
        self.samePages = samePages
        self.pagesCompacted = pagesCompacted
        self.hugePages = hugePages
        self.hugePagesSince = hugePagesSince
    }

    /// Parses mm_stat: 7 numbers (Linux 4.7), 8 (4.18) or 9 (5.15).
    public init(parsing text: String, target: String = "/sys/block/zramN/mm_stat") throws(SystemCallError) {
        let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" })
        let numbers = words.compactMap { UInt64($0) }
        guard numbers.count == words.count, numbers.count >= 7 else {
            throw SystemCallError.format(target, "Expected 7 to 9 numbers (orig_data_size compr_data_size mem_used_total mem_limit mem_used_max same_pages pages_compacted [huge_pages [huge_pages_since]]), found '\(text.prefix(80))'.")
        }
        self.init(storedBytes: numbers[0], compressedBytes: numbers[1], usedBytes: numbers[2], limitBytes: numbers[3],
                  usedMaxBytes: numbers[4], samePages: numbers[5], pagesCompacted: numbers[6],
                  hugePages: numbers.count > 7 ? numbers[7] : nil, hugePagesSince: numbers.count > 8 ? numbers[8] : nil)
    }

    /// Reads /sys/block/`name`/mm_stat (name e.g. "zram0").
    public static func read(device name: String) throws(SystemCallError) -> ZramStats {
        let path = "/sys/block/\(name)/mm_stat"
        return try ZramStats(parsing: KernelFile.read(path), target: path)
    }
}

/// The active swap areas: /proc/swaps, and mm_stat for the zram ones.
public enum SwapDevices {
    /// Parses /proc/swaps ("Filename Type Size Used Priority", sizes in KiB).
    /// Spaces, tabs, newlines and backslashes in a path are printed as octal
    /// escapes ("\040") and decoded here.
    public static func parse(_ text: String, target: String = "/proc/swaps") throws(SystemCallError) -> [SwapDevice] {
        var devices: [SwapDevice] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("Filename") {
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count == 5, let size = UInt64(words[2]), let used = UInt64(words[3]), let priority = Int(words[4]) else {
                throw SystemCallError.format(target, "Expected lines 'PATH TYPE SIZE USED PRIORITY', found '\(line.prefix(80))'.")
            }
            devices.append(SwapDevice(path: unescape(words[0]), type: String(words[1]),
                                      sizeBytes: size * 1024, usedBytes: used * 1024, priority: priority))
        }
        return devices
    }

    /// The active swap areas, each zram one with its mm_stat when readable
    /// (nil when not: a device reset meanwhile).
    public static func read() throws(SystemCallError) -> [SwapDevice] {
        var devices = try parse(KernelFile.read("/proc/swaps"))
        for index in devices.indices {
            guard let name = devices[index].zramName else { continue }
            devices[index].zram = try? ZramStats.read(device: name)
            devices[index].zramDiskSizeBytes = (try? KernelFile.read("/sys/block/\(name)/disksize"))
                .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { UInt64($0) } }
        }
        return devices
    }

    /// Decodes seq_file's "\ooo" escapes.
    static func unescape(_ text: Substring) -> String {
        guard text.contains("\\") else { return String(text) }
        var bytes: [UInt8] = []
        let source = Array(text.utf8)
        var i = 0
        while i < source.count {
            if source[i] == UInt8(ascii: "\\"), i + 3 < source.count {
                let digits = source[(i + 1)...(i + 3)]
                if digits.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "7")).contains($0) }) {
                    bytes.append(digits.reduce(0) { $0 << 3 | ($1 - UInt8(ascii: "0")) })
                    i += 4
                    continue
                }
            }
            bytes.append(source[i])
            i += 1
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
