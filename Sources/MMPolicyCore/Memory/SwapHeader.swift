/// The first page of a swap area, as mkswap(8) writes it and swapon(2)
/// reads it (`union swap_header` in include/linux/swap.h): version 1,
/// the last usable page, no bad pages, a UUID and a label, and
/// "SWAPSPACE2" in the page's last ten bytes.
///
/// mmpolicy writes it itself instead of running mkswap: the daemon is a
/// multithreaded, mlock'ed process that should not fork an external tool
/// whose presence and version it cannot vouch for, and the UUID it picks is
/// its proof, later, that a zram device still holds the swap area it made
/// (``ZramSwapSetup`` tears down nothing else).
public struct SwapHeader: Sendable, Equatable {
    /// The page size the area is laid out in (the kernel's).
    public var pageSize: Int
    /// The last page of the area (its size in pages minus one); page 0 is
    /// this header.
    public var lastPage: UInt32
    /// 16 bytes.
    public var uuid: [UInt8]
    /// Up to 16 bytes of text ("mmpolicy").
    public var label: String

    public static let magic = Array("SWAPSPACE2".utf8)
    static let versionOffset = 1024
    static let lastPageOffset = 1028
    static let badPagesOffset = 1032
    static let uuidOffset = 1036
    static let labelOffset = 1052

    public init(pageSize: Int, lastPage: UInt32, uuid: [UInt8], label: String) {
        precondition(uuid.count == 16, "a swap area's UUID is 16 bytes")
        self.pageSize = pageSize
        self.lastPage = lastPage
        self.uuid = uuid
        self.label = label
    }

    /// The header for an area of `sizeBytes` (whole pages of it), with a
    /// new random UUID (version 4).
    public static func forArea(sizeBytes: UInt64, pageSize: Int, label: String = "mmpolicy") -> SwapHeader {
        var uuid = (0..<16).map { _ in UInt8.random(in: 0...255) }
        uuid[6] = uuid[6] & 0x0f | 0x40
        uuid[8] = uuid[8] & 0x3f | 0x80
        let pages = sizeBytes / UInt64(pageSize)
        return SwapHeader(pageSize: pageSize, lastPage: UInt32(clamping: pages > 0 ? pages - 1 : 0), uuid: uuid, label: label)
    }

    /// The page as it goes on the device.
    public var bytes: [UInt8] {
        var page = [UInt8](repeating: 0, count: pageSize)
        func put(_ value: UInt32, at offset: Int) {
            withUnsafeBytes(of: value) { for (i, byte) in $0.enumerated() { page[offset + i] = byte } }
        }
        put(1, at: Self.versionOffset)
        put(lastPage, at: Self.lastPageOffset)
        put(0, at: Self.badPagesOffset)
        page.replaceSubrange(Self.uuidOffset..<Self.uuidOffset + 16, with: uuid)
        let name = Array(label.utf8.prefix(15))
        page.replaceSubrange(Self.labelOffset..<Self.labelOffset + name.count, with: name)
        page.replaceSubrange(pageSize - Self.magic.count..<pageSize, with: Self.magic)
        return page
    }

    /// Reads a header from the first page of a device; nil when it is not a
    /// version 1 swap area (no magic, another version, a short page).
    public init?(parsing page: [UInt8], pageSize: Int) {
        guard page.count >= pageSize, pageSize > Self.labelOffset + 16 + Self.magic.count,
              Array(page[pageSize - Self.magic.count..<pageSize]) == Self.magic else { return nil }
        func get(_ offset: Int) -> UInt32 {
            page[offset..<offset + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
        }
        guard get(Self.versionOffset) == 1 else { return nil }
        let label = page[Self.labelOffset..<Self.labelOffset + 16].prefix { $0 != 0 }
        self.init(pageSize: pageSize, lastPage: get(Self.lastPageOffset),
                  uuid: Array(page[Self.uuidOffset..<Self.uuidOffset + 16]),
                  label: String(decoding: label, as: UTF8.self))
    }

    /// The UUID as text: "1b4e28ba-2fa1-41d2-883f-0016d3cca427".
    public var uuidString: String { Self.uuidString(uuid) }

    public static func uuidString(_ uuid: [UInt8]) -> String {
        let hex = uuid.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }
        return [0..<4, 4..<6, 6..<8, 8..<10, 10..<16].map { hex[$0].joined() }.joined(separator: "-")
    }

    /// The 16 bytes of a UUID written as text; nil if it is not one.
    public static func uuid(parsing text: String) -> [UInt8]? {
        let digits = Array(text.filter { $0 != "-" })
        guard digits.count == 32 else { return nil }
        var bytes: [UInt8] = []
        for i in stride(from: 0, to: 32, by: 2) {
            guard let byte = UInt8(String(digits[i...i + 1]), radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}
