import MMPolicyCore
import MMPolicyTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The Core primitives tiering moves memory with, against the running
/// kernel: process_madvise on a real workload with a zram swap of the test's
/// own (hot_add, highest priority), the process's map, status and page
/// residency, the slow tier's figures, and compressibility sampling.
/// Every test removes its zram device and kills its workloads, even when it fails.
@Suite(.serialized) struct TieringPrimitivesTests {
    static let mib: UInt64 = 1 << 20
    static let page = ProcessSnapshot.pageSize

    // MARK: PAGEOUT and WILLNEED

    @Test func pageOutMovesAWorkloadToZramAndWillNeedReadsItBack() throws {
        let zram = try ZramSwap(sizeBytes: 256 * Self.mib, ownDevice: true, priority: 32767)
        defer { withExtendedLifetime(zram) {} }
        let child = try workload(["hold", "--rss", "64M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        let map = try ProcessMemoryMap.read(pidfd)
        let before = try ProcessMemoryStatus.read(pidfd)
        #expect(before.rssAnonBytes >= 64 * Self.mib && before.swapBytes == 0, "\(before)")
        let storedBefore = try zram.stats().storedBytes

        let out = ProcessMadvise.advise(pidfd, ranges: map.anonymousRanges, advice: .pageOut)
        #expect(out.isComplete, "\(String(describing: out.error))")
        #expect(out.bytes == map.anonymousBytes && out.calls == 1)
        let demoted = try ProcessMemoryStatus.read(pidfd)
        #expect(demoted.swapBytes >= 58 * Self.mib, "at least 90 % of 64 MiB in swap: \(demoted)")
        #expect(demoted.rssAnonBytes + 58 * Self.mib <= before.rssAnonBytes, "\(demoted)")
        let residency = try PageResidency.read(pidfd, ranges: map.anonymousRanges)
        #expect(UInt64(residency.swappedPages) * Self.page == demoted.swapBytes, "pagemap and VmSwap agree: \(residency)")

        let tier = SlowTier.current()
        let device = try #require(tier.devices.first { $0.path == zram.device }, "\(tier)")
        let stats = try #require(device.zram)
        #expect(tier.isConfigured && tier.unreadable.isEmpty, "\(tier.unreadable)")
        #expect(stats.storedBytes - storedBefore >= 58 * Self.mib, "zram stores what left: \(stats)")
        #expect(device.usedBytes >= stats.storedBytes - storedBefore, "swap slots in use: \(device)")
        #expect(tier.storedBytes >= stats.storedBytes && tier.swapTotalBytes >= 256 * Self.mib - Self.mib)
        // The workload writes one word per page: zram keeps ~45 bytes of each.
        #expect(try #require(tier.compressionRatio) < 0.1 && stats.usedBytes < 16 * Self.mib, "\(stats)")

        // Sampling swapped memory skips it rather than faulting it back.
        let estimate = try CompressibilityEstimate.sample(pidfd, ranges: map.anonymousRanges)
        #expect(estimate.skippedPages >= 7, "\(estimate)")
        #expect(try ProcessMemoryStatus.read(pidfd).swapBytes == demoted.swapBytes)

        let cachedBefore = try Self.swapCachedBytes()
        let back = ProcessMadvise.advise(pidfd, ranges: map.anonymousRanges, advice: .willNeed)
        #expect(back.isComplete && back.bytes == map.anonymousBytes, "\(String(describing: back.error))")
        // Asynchronous: the pages land in the swap cache, not in the page tables.
        let landed = waitUntil(timeoutMs: 10_000) {
            ((try? Self.swapCachedBytes()) ?? 0) >= cachedBefore + demoted.swapBytes * 9 / 10
        }
        #expect(landed != nil, "the swap cache did not grow by 90 % of \(demoted.swapBytes) bytes")
        #expect(try ProcessMemoryStatus.read(pidfd).swapBytes >= 58 * Self.mib, "VmSwap stays until the pages are touched")

        // Touching them now costs no major fault, and maps them again.
        let faults = try Self.majorFaultsOfThisThread()
        let pages = try Self.readAll(pidfd, map.anonymousRanges)
        let taken = try Self.majorFaultsOfThisThread() - faults
        #expect(taken * 10 < pages, "\(taken) major faults reading \(pages) pages after MADV_WILLNEED")
        #expect(try ProcessMemoryStatus.read(pidfd).swapBytes < 6 * Self.mib)
    }

    @Test func readingSwappedMemoryFaultsItBackIn() throws {
        let zram = try ZramSwap(sizeBytes: 128 * Self.mib, ownDevice: true, priority: 32767)
        defer { withExtendedLifetime(zram) {} }
        let child = try workload(["hold", "--rss", "16M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        let big = try #require(try ProcessMemoryMap.read(pidfd).anonymousRanges.max { $0.length < $1.length })
        let first = AddressRange(start: big.start, length: Self.mib)
        #expect(ProcessMadvise.advise(pidfd, ranges: [first], advice: .pageOut).bytes == Self.mib)
        let swapped = try ProcessMemoryStatus.read(pidfd).swapBytes
        #expect(try PageResidency.read(pidfd, ranges: [first]).swappedPages == Int(Self.mib / Self.page))

        let faults = try Self.majorFaultsOfThisThread()
        #expect(try Self.readAll(pidfd, [first]) == Int(Self.mib / Self.page))
        #expect(try Self.majorFaultsOfThisThread() - faults == Int(Self.mib / Self.page), "one major fault per page read")
        #expect(try ProcessMemoryStatus.read(pidfd).swapBytes + Self.mib == swapped)
        #expect(try PageResidency.read(pidfd, ranges: [first]).residentPages == Int(Self.mib / Self.page))
    }

    @Test func aRangeRunningPastItsMappingIsPagedOutYetCountsNothing() throws {
        let zram = try ZramSwap(sizeBytes: 128 * Self.mib, ownDevice: true, priority: 32767)
        defer { withExtendedLifetime(zram) {} }
        let child = try workload(["hold", "--rss", "16M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        let map = try ProcessMemoryMap.read(pidfd)
        let big = try #require(map.anonymousRanges.max { $0.length < $1.length })
        // The mapping and a free page next to it.
        let isFree = { (page: AddressRange) in !map.mappings.contains { $0.range.start < page.end && page.start < $0.range.end } }
        let straddling = try #require([AddressRange(start: big.start, end: big.end + Self.page),
                                       AddressRange(start: big.start - Self.page, end: big.end)].first {
            isFree(AddressRange(start: $0.start == big.start ? big.end : $0.start, length: Self.page))
        }, "a free page next to \(big.hexDescription)")
        let out = ProcessMadvise.advise(pidfd, ranges: [straddling], advice: .pageOut)
        #expect(out.error?.errno == .noMemory && out.bytes == 0 && out.failedRangeIndex == 0 && !out.stoppedEarly)
        #expect(try ProcessMemoryStatus.read(pidfd).swapBytes >= 15 * Self.mib, "the mapped part went anyway")
    }

    // MARK: Errors

    @Test func aProcessThatExitedGivesESRCH() throws {
        var child: ChildProcess? = try workload(["hold", "--rss", "4M"])
        let pidfd = try PidFD(pid: child!.pid)
        let ranges = try ProcessMemoryMap.read(pidfd).anonymousRanges
        // A zombie first (killed, not reaped), then gone altogether.
        kill(pidfd.pid, SIGKILL)
        #expect(pidfd.waitForExit(timeoutMs: 10_000))
        for stage in ["zombie", "reaped"] {
            let out = ProcessMadvise.advise(pidfd, ranges: ranges, advice: .pageOut)
            #expect(out.bytes == 0 && out.stoppedEarly && out.error?.errno == .noSuchProcess && out.failedRangeIndex == 0, "\(stage)")
            #expect(out.error?.description.contains("has exited") == true, "\(stage): \(String(describing: out.error))")
            #expect(throws: SystemCallError.self, "\(stage)") { try ProcessMemoryStatus.read(pidfd) }
            #expect(throws: SystemCallError.self, "\(stage)") { try PageResidency.read(pidfd, ranges: ranges) }
            #expect(throws: SystemCallError.self, "\(stage)") { try CompressibilityEstimate.sample(pidfd, ranges: ranges) }
            child = nil  // reaps it
        }
    }

    @Test func rangesOutsideTheMappingsAreRefusedAndDisturbNothing() throws {
        let child = try workload(["hold", "--rss", "16M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        let map = try ProcessMemoryMap.read(pidfd)
        let before = try ProcessMemoryStatus.read(pidfd)
        // Below vm.mmap_min_addr: never mapped.
        let hole = AddressRange(start: 0x10000, length: Self.page)
        #expect(hole.clipped(to: map.anonymousRanges).isEmpty)

        let out = ProcessMadvise.advise(pidfd, ranges: [hole], advice: .pageOut)
        #expect(out.error?.errno == .noMemory && out.failedRange == hole && out.bytes == 0 && !out.stoppedEarly)
        #expect(out.error?.description.contains("not mapped") == true, "\(String(describing: out.error))")
        #expect(try ProcessMemoryStatus.read(pidfd) == before)
        #expect(try ProcessMemoryMap.read(pidfd) == map)

        // Between good ranges it is skipped; they are advised.
        let big = try #require(map.anonymousRanges.max { $0.length < $1.length })
        let mixed = ProcessMadvise.advise(pidfd, ranges: [big, hole, big], advice: .cold)
        #expect(mixed.bytes == 2 * big.length && mixed.failedRangeIndex == 1 && mixed.failedRanges == 1)

        // Outside user space: EFAULT. A misaligned start: EINVAL before any call.
        let kernel = ProcessMadvise.advise(pidfd, ranges: [AddressRange(start: 0xffff_8000_0000_0000, length: Self.page)], advice: .cold)
        #expect(kernel.error?.errno == .badAddress, "\(String(describing: kernel.error))")
        let misaligned = ProcessMadvise.advise(pidfd, ranges: [AddressRange(start: big.start + 1, length: Self.page)], advice: .cold)
        #expect(misaligned.error?.errno == .invalidArgument && misaligned.calls == 0)
        #expect(try ProcessMemoryStatus.read(pidfd).rssAnonBytes == before.rssAnonBytes)
    }

    @Test func moreRangesThanOneCallTakesAreBatched() throws {
        let child = try workload(["hold", "--rss", "16M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        let big = try #require(try ProcessMemoryMap.read(pidfd).anonymousRanges.max { $0.length < $1.length })
        let pages = stride(from: big.start, to: big.end, by: Int(Self.page)).map { AddressRange(start: $0, length: Self.page) }
        try #require(pages.count >= 4096)
        let out = ProcessMadvise.advise(pidfd, ranges: pages, advice: .cold)
        #expect(out.isComplete && out.bytes == big.length, "\(String(describing: out.error))")
        #expect(out.calls == (pages.count + 1023) / 1024)
    }
}
