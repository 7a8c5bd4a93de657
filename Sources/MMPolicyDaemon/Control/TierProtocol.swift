/// `mmpolicy tier setup-zram` and `teardown-zram`'s arguments (the
/// request's `zram`).
public struct ZramRequest: Codable, Sendable, Equatable {
    /// setup-zram: the size in bytes.
    public var sizeBytes: UInt64?
    /// setup-zram: the compression algorithm (default lz4).
    public var algorithm: String?
    /// setup-zram: the swap priority (default 100).
    public var priority: Int?
    /// setup-zram: "new" (always add a device), or an existing device
    /// ("/dev/zram3", "zram3"), which must be free; absent: a device of
    /// mmpolicy's own where the kernel can add one, else a free one.
    /// teardown-zram: the device; absent: the only one set up on request.
    public var device: String?

    public init(sizeBytes: UInt64? = nil, algorithm: String? = nil, priority: Int? = nil, device: String? = nil) {
        self.sizeBytes = sizeBytes
        self.algorithm = algorithm
        self.priority = priority
        self.device = device
    }
}

/// The slow tier as `mmpolicy tier status` shows it: every active swap
/// area, the zram devices mmpolicy set up, and who relies on them.
public struct TierStatus: Codable, Sendable, Equatable {
    /// The active swap areas (/proc/swaps), in its order.
    public var areas: [SwapAreaStatus]
    /// The zram swap devices mmpolicy set up (its knob journal), active or not.
    public var zram: [ZramSetupStatus]
    /// Loaded policies of a kind that moves memory to swap (tiering).
    public var relyingPolicies: [String]
    /// Files that could not be read; absent normally.
    public var unreadable: [String]?

    public init(areas: [SwapAreaStatus], zram: [ZramSetupStatus], relyingPolicies: [String], unreadable: [String]? = nil) {
        self.areas = areas
        self.zram = zram
        self.relyingPolicies = relyingPolicies
        self.unreadable = unreadable
    }
}

/// One active swap area.
public struct SwapAreaStatus: Codable, Sendable, Equatable {
    public var path: String
    /// "partition" or "file".
    public var type: String
    public var sizeBytes: UInt64
    public var usedBytes: UInt64
    public var priority: Int
    /// For a zram device: what it stores and what that costs.
    public var zram: ZramAreaStatus?
    /// Who set it up, when mmpolicy did: the owner in its journal
    /// ("operator-request", or a policy's name). Absent: not mmpolicy.
    public var setUpFor: String?

    public init(path: String, type: String, sizeBytes: UInt64, usedBytes: UInt64, priority: Int, zram: ZramAreaStatus? = nil,
                setUpFor: String? = nil) {
        self.path = path
        self.type = type
        self.sizeBytes = sizeBytes
        self.usedBytes = usedBytes
        self.priority = priority
        self.zram = zram
        self.setUpFor = setUpFor
    }
}

/// A zram swap area's mm_stat and algorithm.
public struct ZramAreaStatus: Codable, Sendable, Equatable {
    /// Uncompressed bytes stored.
    public var storedBytes: UInt64
    /// Those bytes compressed.
    public var compressedBytes: UInt64
    /// Memory the device takes, allocator overhead included.
    public var memoryBytes: UInt64
    public var algorithm: String?

    public init(storedBytes: UInt64, compressedBytes: UInt64, memoryBytes: UInt64, algorithm: String?) {
        self.storedBytes = storedBytes
        self.compressedBytes = compressedBytes
        self.memoryBytes = memoryBytes
        self.algorithm = algorithm
    }

    /// storedBytes / compressedBytes (3.0: a third of the size); nil when it stores nothing.
    public var compressionRatio: Double? { compressedBytes == 0 ? nil : Double(storedBytes) / Double(compressedBytes) }
}

/// A zram swap device mmpolicy set up, as its journal records it.
public struct ZramSetupStatus: Codable, Sendable, Equatable {
    /// "/dev/zram3".
    public var device: String
    /// "operator-request" (`mmpolicy tier setup-zram`: stays until
    /// teardown-zram), or the policy whose manifest asked for it (goes
    /// with the policy).
    public var owner: String
    /// mmpolicy added the device, and removes it at teardown (otherwise it
    /// resets it).
    public var hotAdded: Bool
    /// The swap area's UUID.
    public var uuid: String
    public var sizeBytes: UInt64
    public var algorithm: String
    public var priority: Int
    /// Whether it is an active swap area now.
    public var active: Bool
    /// When it was set up (journaled; wall clock, ns since the epoch).
    public var setUpNs: Int64
    /// teardown-zram: what was done ("swapped off and removed"), or why
    /// nothing had to be.
    public var outcome: String?

    public init(device: String, owner: String, hotAdded: Bool, uuid: String, sizeBytes: UInt64, algorithm: String, priority: Int,
                active: Bool, setUpNs: Int64, outcome: String? = nil) {
        self.device = device
        self.owner = owner
        self.hotAdded = hotAdded
        self.uuid = uuid
        self.sizeBytes = sizeBytes
        self.algorithm = algorithm
        self.priority = priority
        self.active = active
        self.setUpNs = setUpNs
        self.outcome = outcome
    }
}
