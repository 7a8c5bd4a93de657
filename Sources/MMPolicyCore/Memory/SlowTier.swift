/// The slow memory tier as it is now: every active swap area, and what the
/// zram ones store and cost.
///
/// Tiering moves memory here with MADV_PAGEOUT; before it does, the engine
/// asks whether there is a slow tier at all (`isConfigured`), whether it has
/// room (`swapFreeBytes`), and what a demoted byte costs in RAM
/// (`usedBytes` / `storedBytes` for zram). Reading it never fails: an
/// unreadable file counts as no swap (or no zram statistics) and is named in
/// `unreadable`.
public struct SlowTier: Sendable, Equatable {
    /// The active swap areas, in /proc/swaps order.
    public var devices: [SwapDevice]
    /// Files that could not be read or parsed, with the reason; empty normally.
    public var unreadable: [String]

    public init(devices: [SwapDevice], unreadable: [String] = []) {
        self.devices = devices
        self.unreadable = unreadable
    }

    /// Reads /proc/swaps and each zram device's mm_stat.
    public static func current() -> SlowTier {
        do {
            let devices = try SwapDevices.read()
            let missing = devices.filter { $0.zramName != nil && $0.zram == nil }
                .map { "/sys/block/\($0.zramName!)/mm_stat: unreadable (the device may have been reset)" }
            return SlowTier(devices: devices, unreadable: missing)
        } catch {
            return SlowTier(devices: [], unreadable: [error.description])
        }
    }

    /// True when there is any active swap: without it MADV_PAGEOUT cannot
    /// move anonymous memory anywhere.
    public var isConfigured: Bool { !devices.isEmpty }

    /// Swap space of every area.
    public var swapTotalBytes: UInt64 { devices.reduce(0) { $0 + $1.sizeBytes } }

    /// Swap space not in use.
    public var swapFreeBytes: UInt64 { devices.reduce(0) { $0 + $1.freeBytes } }

    /// Uncompressed bytes the zram devices hold (orig_data_size). Not the
    /// same as memory demoted now: a page brought back by a read keeps its
    /// copy in zram until it is written or swap is more than half full.
    public var storedBytes: UInt64 { devices.reduce(0) { $0 + ($1.zram?.storedBytes ?? 0) } }

    /// Swap space in use, every area together.
    public var swapUsedBytes: UInt64 { devices.reduce(0) { $0 + min($1.usedBytes, $1.sizeBytes) } }

    /// The zram devices' disk sizes (disksize): what they may take in
    /// uncompressed data.
    public var zramDiskSizeBytes: UInt64 { devices.reduce(0) { $0 + ($1.zramDiskSizeBytes ?? 0) } }

    /// Those bytes compressed (compr_data_size).
    public var compressedBytes: UInt64 { devices.reduce(0) { $0 + ($1.zram?.compressedBytes ?? 0) } }

    /// RAM the zram devices take (mem_used_total, allocator overhead included).
    public var usedBytes: UInt64 { devices.reduce(0) { $0 + ($1.zram?.usedBytes ?? 0) } }

    /// compressedBytes / storedBytes, in 0...1 like `CompressibilityEstimate.ratio`
    /// (lower compresses better); nil when zram stores nothing.
    public var compressionRatio: Double? {
        storedBytes == 0 ? nil : Double(compressedBytes) / Double(storedBytes)
    }

    /// usedBytes / storedBytes: RAM a demoted byte really costs, allocator
    /// overhead included (what compressionRatio leaves out); nil when zram
    /// stores nothing.
    public var memoryCostRatio: Double? {
        storedBytes == 0 ? nil : Double(usedBytes) / Double(storedBytes)
    }
}
