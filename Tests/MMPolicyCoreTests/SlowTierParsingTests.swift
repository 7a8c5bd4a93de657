import MMPolicyCore
import Testing

/// The parsers behind SlowTier and ProcessMemoryStatus: /proc/swaps,
/// /sys/block/zramN/mm_stat (field order of Documentation/admin-guide/
/// blockdev/zram.rst) and /proc/PID/status, on text from a Linux 6.18
/// machine and broken input.
@Suite struct SlowTierParsingTests {
    /// /proc/swaps with the kernel's tabs, a zram device, a file whose path
    /// has a space (printed "\040") and a disk partition.
    static let swaps = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        + "/dev/zram1                              partition\t524284\t\t65924\t\t32000\n"
        + "/var/swap\\040files/one                  file\t\t1048572\t\t0\t\t-2\n"
        + "/dev/vda3                               partition\t2097148\t\t1024\t\t-3\n"

    @Test func parsesProcSwaps() throws {
        let devices = try SwapDevices.parse(Self.swaps)
        #expect(devices.count == 3)
        #expect(devices[0] == SwapDevice(path: "/dev/zram1", type: "partition", sizeBytes: 524_284 * 1024, usedBytes: 65_924 * 1024, priority: 32000))
        #expect(devices[1].path == "/var/swap files/one" && devices[1].type == "file" && devices[1].priority == -2)
        #expect(devices[0].zramName == "zram1" && devices[1].zramName == nil && devices[2].zramName == nil)
        #expect(devices[2].freeBytes == (2_097_148 - 1024) * 1024)
        #expect(try SwapDevices.parse("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n").isEmpty, "no swap on")
        #expect(SwapDevice(path: "/dev/zram", type: "partition", sizeBytes: 0, usedBytes: 0, priority: 0).zramName == nil)
        #expect(SwapDevice(path: "/dev/zram12", type: "partition", sizeBytes: 0, usedBytes: 0, priority: 0).zramName == "zram12")
    }

    @Test func rejectsBrokenSwapLines() {
        for line in ["/dev/zram0 partition 10 0", "/dev/zram0 partition ten 0 -2", "/dev/zram0 partition 10 0 -2 extra"] {
            #expect(throws: SystemCallError.self, "\(line)") { try SwapDevices.parse(line + "\n") }
        }
    }

    @Test func parsesMmStatOfEveryKernelGeneration() throws {
        // 6.18, after 64 MiB of a test workload was paged out (9 fields).
        let now = try ZramStats(parsing: "67510272   741700  1990656        0  1990656        0        0        0        0\n")
        #expect(now.storedBytes == 67_510_272 && now.compressedBytes == 741_700 && now.usedBytes == 1_990_656)
        #expect(now.limitBytes == 0 && now.usedMaxBytes == 1_990_656 && now.samePages == 0 && now.pagesCompacted == 0)
        #expect(now.hugePages == 0 && now.hugePagesSince == 0)
        // 4.18 to 5.14: no huge_pages_since; 4.7 to 4.17: no huge_pages either.
        let older = try ZramStats(parsing: "4096 73 12288 0 12288 5 2 7\n")
        #expect(older.samePages == 5 && older.pagesCompacted == 2 && older.hugePages == 7 && older.hugePagesSince == nil)
        let oldest = try ZramStats(parsing: "4096 73 12288 0 12288 5 2\n")
        #expect(oldest.hugePages == nil)
        for broken in ["", "1 2 3", "1 2 3 4 5 6 x", "-1 2 3 4 5 6 7"] {
            #expect(throws: SystemCallError.self, "\(broken)") { try ZramStats(parsing: broken) }
        }
    }

    @Test func slowTierAddsUpItsDevices() {
        let zram1 = SwapDevice(path: "/dev/zram1", type: "partition", sizeBytes: 512 << 20, usedBytes: 64 << 20, priority: 100,
                               zram: ZramStats(storedBytes: 64 << 20, compressedBytes: 16 << 20, usedBytes: 20 << 20))
        let zram2 = SwapDevice(path: "/dev/zram2", type: "partition", sizeBytes: 256 << 20, usedBytes: 0, priority: 50,
                               zram: ZramStats(storedBytes: 0, compressedBytes: 0, usedBytes: 4096))
        let disk = SwapDevice(path: "/dev/vda3", type: "partition", sizeBytes: 1 << 30, usedBytes: 1 << 20, priority: -2)
        let tier = SlowTier(devices: [zram1, zram2, disk])
        #expect(tier.isConfigured)
        #expect(tier.swapTotalBytes == (512 << 20) + (256 << 20) + (1 << 30))
        #expect(tier.swapFreeBytes == (448 << 20) + (256 << 20) + (1 << 30) - (1 << 20))
        #expect(tier.storedBytes == 64 << 20 && tier.compressedBytes == 16 << 20 && tier.usedBytes == (20 << 20) + 4096)
        #expect(tier.compressionRatio == 0.25)
        #expect(abs(tier.memoryCostRatio! - Double((20 << 20) + 4096) / Double(64 << 20)) < 1e-12)

        let none = SlowTier(devices: [])
        #expect(!none.isConfigured && none.swapTotalBytes == 0 && none.storedBytes == 0)
        #expect(none.compressionRatio == nil && none.memoryCostRatio == nil)
        #expect(SlowTier(devices: [disk]).compressionRatio == nil, "a disk stores nothing compressed")
    }

    @Test func slowTierOfThisMachineNeverFails() {
        // Whatever swap another test has on right now; reading it cannot throw.
        let tier = SlowTier.current()
        #expect(tier.isConfigured == !tier.devices.isEmpty)
        #expect(tier.swapFreeBytes <= tier.swapTotalBytes)
    }

    // MARK: /proc/PID/status

    /// `cat /proc/self/status` on this machine, shortened.
    static let catStatus = """
        Name:\tcat
        Umask:\t0022
        State:\tR (running)
        Tgid:\t17064
        Kthread:\t0
        VmPeak:\t    3060 kB
        VmRSS:\t    1748 kB
        RssAnon:\t     108 kB
        RssFile:\t    1640 kB
        RssShmem:\t       0 kB
        VmData:\t     360 kB
        VmSwap:\t   65924 kB
        HugetlbPages:\t       0 kB
        Threads:\t1

        """

    @Test func parsesProcessMemoryStatus() throws {
        let status = try ProcessMemoryStatus(parsing: Self.catStatus)
        #expect(status == ProcessMemoryStatus(rssAnonBytes: 108 * 1024, rssFileBytes: 1640 * 1024, rssShmemBytes: 0, swapBytes: 65_924 * 1024))
        #expect(status.residentBytes == 1748 * 1024, "the parts add up to VmRSS")
    }

    @Test func aZombieIsGoneAndAKernelThreadHasNoMemory() {
        let zombie = "Name:\tworkload\nState:\tZ (zombie)\nTgid:\t99\nThreads:\t1\n"
        do throws(SystemCallError) {
            _ = try ProcessMemoryStatus(parsing: zombie, target: "/proc/99/status")
            Issue.record("a zombie has no memory to report")
        } catch {
            #expect(error.errno == .noSuchProcess && error.meansGone && error.target == "/proc/99/status")
        }
        let kthread = "Name:\tkthreadd\nState:\tS (sleeping)\nKthread:\t1\nThreads:\t1\n"
        do throws(SystemCallError) {
            _ = try ProcessMemoryStatus(parsing: kthread)
            Issue.record("a kernel thread has no RssAnon line")
        } catch {
            #expect(error.errno == .badMessage && error.description.contains("RssAnon"), "\(error)")
        }
        #expect(throws: SystemCallError.self) {
            try ProcessMemoryStatus(parsing: Self.catStatus.replacingFirst("RssFile:\t    1640 kB", with: "RssFile:\t    many kB"))
        }
    }
}
