import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// TieringPrimitivesTests: zram devices of their own, compressibility
/// sampling of live processes, and the helpers of the suite.
extension TieringPrimitivesTests {
    @Test func zramDevicesOfTheirOwnCoexistAndGoAway() throws {
        var first: ZramSwap? = try ZramSwap(sizeBytes: 64 * Self.mib, ownDevice: true)
        var second: ZramSwap? = try ZramSwap(sizeBytes: 32 * Self.mib, ownDevice: true, priority: 5)
        let names = [first!.name, second!.name]
        #expect(names[0] != names[1] && !names.contains("zram0"), "\(names)")
        let tier = SlowTier.current()
        let devices = names.compactMap { name in tier.devices.first { $0.path == "/dev/" + name } }
        #expect(devices.count == 2, "\(tier.devices)")
        #expect(devices.allSatisfy { $0.zram != nil && $0.type == "partition" })
        #expect(devices.first?.sizeBytes ?? 0 >= 63 * Self.mib && devices.last?.priority == 5)

        first = nil
        second = nil
        let swaps = try readFile("/proc/swaps")
        for name in names {
            #expect(!swaps.contains("/dev/\(name) "), "\(name) swapped off")
            #expect(access("/sys/block/\(name)", F_OK) != 0, "\(name) removed")
        }

        // A set-up that fails half-way (mkswap needs 40 KiB) removes its device too.
        let existing = Self.zramDevices()
        #expect(throws: ZramSwapError.self) { try ZramSwap(sizeBytes: 8192, ownDevice: true) }
        #expect(Self.zramDevices() == existing)
    }

    @Test func compressibilityOfLiveMemory() throws {
        let child = try workload(["hold", "--rss", "64M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        let ranges = try ProcessMemoryMap.read(pidfd).anonymousRanges
        let big = try #require(ranges.max { $0.length < $1.length })
        let workloadEstimate = try CompressibilityEstimate.sample(pidfd, ranges: [big])
        #expect(workloadEstimate.sampledPages == 8 && workloadEstimate.skippedPages == 0, "\(workloadEstimate)")
        #expect(try #require(workloadEstimate.ratio) < 0.05, "one word per page: \(workloadEstimate)")

        // Our own memory: random bytes do not compress; never-touched pages are skipped.
        let size = 64 * Int(Self.page)
        let random = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: Int(Self.page))
        defer { random.deallocate() }
        var generator = SystemRandomNumberGenerator()
        for offset in stride(from: 0, to: size, by: 8) { random.storeBytes(of: generator.next() as UInt64, toByteOffset: offset, as: UInt64.self) }
        let ourselves = try PidFD(pid: getpid())
        let start = UInt64(UInt(bitPattern: random.baseAddress!))
        let randomEstimate = try CompressibilityEstimate.sample(ourselves, ranges: [AddressRange(start: start, length: UInt64(size))])
        #expect(randomEstimate.sampledPages == 8 && (randomEstimate.ratio ?? 0) > 0.95, "\(randomEstimate)")

        let untouched = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(untouched, size) }
        let untouchedRange = AddressRange(start: UInt64(UInt(bitPattern: untouched)), length: UInt64(size))
        let none = try CompressibilityEstimate.sample(ourselves, ranges: [untouchedRange])
        #expect(none.sampledPages == 0 && none.skippedPages == 8 && none.ratio == nil, "\(none)")
        #expect(try PageResidency.read(ourselves, ranges: [untouchedRange]) == PageResidency(absentPages: 64), "sampling touched nothing")
    }

    // MARK: Helpers

    /// Kills `child` and waits until it has exited, its memory and swap freed
    /// (ChildProcess reaps it when released), so that a zram device can be
    /// swapped off without bringing anything back.
    static func killAndWait(_ child: ChildProcess) {
        kill(child.pid, SIGKILL)
        _ = waitUntil(timeoutMs: 10_000) { !ProcessSnapshot.isAlive(pid: child.pid) }
    }



    /// SwapCached of /proc/meminfo, in bytes.
    static func swapCachedBytes() throws -> UInt64 {
        let line = try #require(try readFile("/proc/meminfo").split(separator: "\n").first { $0.hasPrefix("SwapCached:") })
        return try #require(line.split(separator: " ").dropFirst().first.flatMap { UInt64($0) }) * 1024
    }

    /// Major faults of the calling thread (field 12 of /proc/thread-self/stat):
    /// the kernel counts a fault taken for process_vm_readv against the
    /// thread that called it.
    static func majorFaultsOfThisThread() throws -> Int {
        let stat = try readFile("/proc/thread-self/stat")
        let fields = try #require(stat.split(separator: ")").last).split(separator: " ")
        return try #require(Int(fields[12 - 3]))
    }

    /// Reads every page of `ranges` of the process (process_vm_readv), which
    /// faults each in; returns the number of pages read.
    static func readAll(_ pidfd: PidFD, _ ranges: [AddressRange]) throws -> Int {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(mib), alignment: 16)
        defer { buffer.deallocate() }
        var bytes = 0
        for range in ranges {
            var at = range.start
            while at < range.end {
                at += UInt64(try RemoteMemory.copy(pidfd, from: AddressRange(start: at, end: range.end), into: buffer))
            }
            bytes += Int(range.length)
        }
        return bytes / Int(page)
    }

    /// The zram devices that exist now ("zram0", "zram1", ...).
    static func zramDevices() -> Set<String> {
        guard let dir = opendir("/sys/block") else { return [] }
        defer { closedir(dir) }
        var names: Set<String> = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name.hasPrefix("zram") { names.insert(name) }
        }
        return names
    }
}
