import BPFKit
import CMMPolicyABI

/// Why a policy said it failed: what its BPF code recorded with
/// `mmpolicy_error(code, "fmt", args...)` (common.bpf.h) in the object's
/// `mmpolicy_exit` map, like sched_ext's exit info.
///
/// `code`, `message` and `timeNs` are the latest report's; `count` counts
/// every report since the object was loaded or the report last cleared.
public struct PolicyErrorReport: Sendable, Equatable, Codable {
    /// What the policy returned with the report: a negative errno by convention.
    public var code: Int32
    /// The formatted message (at most `MMPOLICY_EXIT_MSG_LEN` - 1 bytes).
    public var message: String
    /// CLOCK_MONOTONIC (`bpf_ktime_get_ns`) of the latest report, in ns.
    public var timeNs: UInt64
    /// Reports so far; at least 1.
    public var count: UInt32

    public init(code: Int32, message: String, timeNs: UInt64, count: UInt32) {
        self.code = code
        self.message = message
        self.timeNs = timeNs
        self.count = count
    }

    /// The report in `info`, or nil if it holds none (count 0).
    public init?(_ info: mmpolicy_exit_info) {
        guard info.count > 0 else { return nil }
        let message = withUnsafeBytes(of: info.message) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        self.init(code: info.code, message: message, timeNs: info.time_ns, count: info.count)
    }

    /// The map's name in the object (`MMPOLICY_EXIT_MAP`).
    public static let mapName = MMPOLICY_EXIT_MAP

    /// Reads the report of a loaded `object`; with `clear`, empties it after
    /// reading, so the next read returns only later reports. nil when the
    /// object has no `mmpolicy_exit` map (built before the error report
    /// existed, or without common.bpf.h) or nothing was reported.
    ///
    /// A report the policy makes between the read and the clear is lost,
    /// count included. Throws if the object is not loaded or its map does
    /// not hold a `struct mmpolicy_exit_info`.
    public static func read(from object: BPFObject, clear: Bool = false) throws(BPFError) -> PolicyErrorReport? {
        guard let map = object.map(named: mapName) else { return nil }
        guard let info = try map.lookup(UInt32(0), as: mmpolicy_exit_info.self) else { return nil }
        let report = PolicyErrorReport(info)
        if clear, report != nil { try map.update(UInt32(0), mmpolicy_exit_info()) }
        return report
    }
}

extension Policy {
    /// The policy's error report, if it made one (see ``PolicyErrorReport/read(from:clear:)``).
    public func errorReport(clear: Bool = false) throws(BPFError) -> PolicyErrorReport? {
        try PolicyErrorReport.read(from: object, clear: clear)
    }
}
