import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// One zram block device, /dev/zramN, and its sysfs files under
/// /sys/block/zramN: how big it is set up, which compression algorithms it
/// offers, and the writes that set it up, reset it, add and remove it.
///
/// It exists so that ``ZramSwapSetup`` reads as the procedure it is (pick,
/// size, format, swap on; and back) while the file names, formats and
/// errnos of zram's sysfs interface (Documentation/admin-guide/blockdev/
/// zram.rst) live here, each turned into a ``ZramError`` naming the file.
public struct ZramDevice: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// N of zramN.
    public var number: Int

    public init(number: Int) { self.number = number }

    /// The device named by "/dev/zram3", "zram3" or "3"; nil for anything else.
    public init?(naming text: String) {
        var name = Substring(text)
        if name.hasPrefix("/dev/") { name = name.dropFirst("/dev/".count) }
        if name.hasPrefix("zram") { name = name.dropFirst("zram".count) }
        guard !name.isEmpty, name.allSatisfy(\.isASCIIDigit), let number = Int(name), number < 1 << 20 else { return nil }
        self.number = number
    }

    public var name: String { "zram\(number)" }
    /// "/dev/zramN".
    public var path: String { "/dev/\(name)" }
    public var sysfs: String { "/sys/block/\(name)" }
    public var description: String { path }

    /// Where devices are added and removed (Linux 4.2).
    public static let control = "/sys/class/zram-control"

    /// Whether the device exists (its sysfs directory does).
    public var exists: Bool { access(sysfs, F_OK) == 0 }

    /// Every zram device there is, by number.
    public static func all() -> [ZramDevice] {
        guard let directory = opendir("/sys/block") else { return [] }
        defer { closedir(directory) }
        var devices: [ZramDevice] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix("zram"), let device = ZramDevice(naming: name) { devices.append(device) }
        }
        return devices.sorted { $0.number < $1.number }
    }

    /// Whether devices can be added (/sys/class/zram-control/hot_add).
    public static var canAddDevices: Bool { access(control + "/hot_add", R_OK) == 0 }

    // MARK: reading

    /// The size it is set up as; 0 when it is not set up.
    public func diskSize() throws(ZramError) -> UInt64 {
        let file = sysfs + "/disksize"
        do { return try KernelFile.readUInt64(file) } catch { throw .file("reading", error) }
    }

    /// comp_algorithm: what it offers, and which is selected.
    public func algorithms() throws(ZramError) -> ZramAlgorithms {
        let file = sysfs + "/comp_algorithm"
        do { return ZramAlgorithms(parsing: try KernelFile.read(file)) } catch { throw .file("reading", error) }
    }

    // MARK: changing

    /// Selects the compression algorithm; only while the device is not set up.
    func select(algorithm: String) throws(ZramError) {
        let file = sysfs + "/comp_algorithm"
        do { try KernelFile.write(file, algorithm) } catch {
            if error.errno == .resourceBusy { throw ZramError(.deviceBusy("it is set up already (its algorithm cannot change)"), path: path, errno: error.errno) }
            if error.errno == .invalidArgument {
                throw ZramError(.algorithmUnavailable(requested: algorithm, available: (try? algorithms().available) ?? []), path: file)
            }
            throw .file("writing '\(algorithm)' to", error)
        }
    }

    /// Sets the device up as `bytes` big. EBUSY: someone set it up first.
    func setDiskSize(_ bytes: UInt64) throws(ZramError) {
        let file = sysfs + "/disksize"
        do { try KernelFile.write(file, String(bytes)) } catch {
            if error.errno == .resourceBusy { throw ZramError(.deviceBusy("someone else set it up meanwhile"), path: path, errno: error.errno) }
            throw .file("writing \(bytes) to", error)
        }
    }

    /// Resets it: frees what it stores and its size goes back to 0. EBUSY
    /// while it is open (swap on it, a reader), retried for up to 5 s.
    func reset() throws(ZramError) {
        try retryingWhileBusy { () throws(SystemCallError) in try KernelFile.write(sysfs + "/reset", "1") }
    }

    /// Adds a device (/sys/class/zram-control/hot_add) and returns it.
    static func add() throws(ZramError) -> ZramDevice {
        let file = control + "/hot_add"
        guard canAddDevices else {
            throw ZramError(.zramUnavailable("\(file) does not exist, so no zram device can be added (the zram module is not loaded, or the kernel is older than 4.2)"), path: file)
        }
        let text: String
        do { text = try KernelFile.read(file) } catch { throw .file("reading (adding a device)", error) }
        guard let number = Int(text.trimmingWhitespace()) else {
            throw ZramError(.systemCall(operation: "reading a device number from"), path: file, errno: .badMessage)
        }
        return ZramDevice(number: number)
    }

    /// Removes a device that ``add()`` added (it is reset with it). EBUSY
    /// while it is open, retried for up to 5 s.
    func remove() throws(ZramError) {
        let number = String(number)
        try retryingWhileBusy { () throws(SystemCallError) in try KernelFile.write(Self.control + "/hot_remove", number) }
    }

    /// Runs `write`, again every 100 ms for up to 5 s while it fails with
    /// EBUSY (the last references of swapoff, a udev probe, a reader).
    private func retryingWhileBusy(_ write: () throws(SystemCallError) -> Void) throws(ZramError) {
        var attempts = 0
        while true {
            do { return try write() } catch {
                attempts += 1
                guard error.errno == .resourceBusy, attempts < 50 else {
                    throw .file(error.target.hasSuffix("hot_remove") ? "removing \(path) through" : "resetting \(path) through", error)
                }
                usleep(100_000)
            }
        }
    }
}

/// A zram device's comp_algorithm file: "lzo [lzo-rle] lz4 zstd".
public struct ZramAlgorithms: Sendable, Equatable {
    /// Every algorithm it offers, in the file's order.
    public var available: [String]
    /// The one in brackets.
    public var selected: String?

    public init(available: [String], selected: String?) {
        self.available = available
        self.selected = selected
    }

    public init(parsing text: String) {
        var available: [String] = []
        var selected: String?
        for word in text.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }) {
            if word.hasPrefix("["), word.hasSuffix("]"), word.count > 2 {
                let name = String(word.dropFirst().dropLast())
                selected = name
                available.append(name)
            } else {
                available.append(String(word))
            }
        }
        self.init(available: available, selected: selected)
    }
}
