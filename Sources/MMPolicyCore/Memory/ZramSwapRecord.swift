/// A zram swap device mmpolicy set up, as its knob journal keeps it: which
/// device, whether mmpolicy added it (and so removes it), the UUID of the
/// swap area it wrote (its proof that the device is still the one it made),
/// and what it was set up as.
///
/// It exists because a swap device is not a file with a value to write
/// back: its "original value" is "no such swap", and undoing it is a
/// procedure (``ZramSwapSetup/tearDown(_:)``). The journal keeps it as an
/// entry whose path is ``journalKey`` (`zram-swap:/dev/zramN`, never a
/// file) and whose original is ``journalText``; ``KnobJournal`` restores
/// such an entry by tearing the device down.
public struct ZramSwapRecord: Sendable, Equatable {
    public var device: ZramDevice
    /// mmpolicy added the device (hot_add): teardown removes it. Otherwise
    /// it existed and teardown resets it, leaving it as it was found.
    public var hotAdded: Bool
    /// The swap area's UUID, as text.
    public var uuid: String
    public var sizeBytes: UInt64
    public var algorithm: String
    public var priority: Int

    public init(device: ZramDevice, hotAdded: Bool, uuid: String, sizeBytes: UInt64, algorithm: String, priority: Int) {
        self.device = device
        self.hotAdded = hotAdded
        self.uuid = uuid
        self.sizeBytes = sizeBytes
        self.algorithm = algorithm
        self.priority = priority
    }

    /// The journal entry's path for zram device `device`.
    public static func journalKey(_ device: ZramDevice) -> String { keyPrefix + device.path }
    static let keyPrefix = "zram-swap:"

    public var journalKey: String { Self.journalKey(device) }

    /// Whether a journal entry's path is a zram swap device's.
    public static func isJournalKey(_ path: String) -> Bool { path.hasPrefix(keyPrefix) }

    /// The journal entry's original: "hot_added=1 uuid=... algorithm=lz4 disksize=1073741824 priority=100".
    public var journalText: String {
        "hot_added=\(hotAdded ? 1 : 0) uuid=\(uuid) algorithm=\(algorithm) disksize=\(sizeBytes) priority=\(priority)"
    }

    /// The record a journal entry holds; nil when the entry is not a zram
    /// swap device's or its text is not one this build wrote.
    public init?(journalKey key: String, text: String) {
        guard Self.isJournalKey(key), let device = ZramDevice(naming: String(key.dropFirst(Self.keyPrefix.count))) else { return nil }
        var fields: [Substring: Substring] = [:]
        for word in text.split(separator: " ") {
            guard let equals = word.firstIndex(of: "=") else { return nil }
            fields[word[..<equals]] = word[word.index(after: equals)...]
        }
        guard let added = fields["hot_added"], added == "0" || added == "1", let uuid = fields["uuid"],
              SwapHeader.uuid(parsing: String(uuid)) != nil, let algorithm = fields["algorithm"], !algorithm.isEmpty,
              let size = fields["disksize"].flatMap({ UInt64($0) }), let priority = fields["priority"].flatMap({ Int($0) }) else { return nil }
        self.init(device: device, hotAdded: added == "1", uuid: String(uuid), sizeBytes: size, algorithm: String(algorithm),
                  priority: priority)
    }

    public init?(_ entry: KnobJournalEntry) { self.init(journalKey: entry.path, text: entry.original) }

    /// "/dev/zram3 (added by mmpolicy): 1.0 GiB, lz4, priority 100".
    public var summary: String {
        "\(device.path) (\(hotAdded ? "added by mmpolicy" : "an existing device")): \(ByteSize(bytes: sizeBytes)), \(algorithm), priority \(priority)"
    }
}

/// What to set up: `mmpolicy tier setup-zram SIZE [--algorithm] [--priority] [--device]`,
/// or a manifest's `[tiering] setup_zram`.
public struct ZramSwapRequest: Sendable, Equatable {
    /// Which device to use.
    public enum DeviceChoice: Sendable, Equatable {
        /// A device of mmpolicy's own (hot_add) where the kernel can add
        /// one, else the first free existing one.
        case any
        /// Always a new device (hot_add).
        case new
        /// This existing device, which must be free.
        case named(ZramDevice)
    }

    public var size: ByteSize
    public var algorithm: String
    public var priority: Int
    public var device: DeviceChoice

    /// lz4: fast, and built wherever zram is.
    public static let defaultAlgorithm = "lz4"
    /// Above disk swap (swapon's defaults are negative), as zram-generator sets it.
    public static let defaultPriority = 100
    /// The smallest area worth setting up (swapon itself needs 10 pages).
    public static let minimumSize = ByteSize(bytes: 1 << 20)

    public init(size: ByteSize, algorithm: String = defaultAlgorithm, priority: Int = defaultPriority, device: DeviceChoice = .any) {
        self.size = size
        self.algorithm = algorithm
        self.priority = priority
        self.device = device
    }

    /// Checks what can be checked before touching a device: the size
    /// against the smallest area and the machine's memory (`memTotal`), the
    /// priority against swapon's range.
    public func check(memTotal: UInt64) throws(ZramError) {
        guard size >= Self.minimumSize else {
            throw ZramError(.sizeTooSmall(requested: size.bytes, minimum: Self.minimumSize.bytes), path: "zram size")
        }
        guard size.bytes <= memTotal else {
            throw ZramError(.sizeTooLarge(requested: size.bytes, memTotal: memTotal), path: "zram size")
        }
        guard SwapArea.priorities.contains(priority) else {
            throw ZramError(.priorityOutOfRange(priority), path: "swap priority")
        }
    }
}
