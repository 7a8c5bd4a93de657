import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The figures in ProcessMadvise's and CompressibilityEstimate's doc
/// comments. Timing, not correctness, and slow (~1 GiB through zram), so it
/// runs only when asked: `MMPOLICY_MEASURE=1 swift test --skip-build --filter
/// TieringPrimitivesTests/measure`. Prints "measure: ..." lines.
extension TieringPrimitivesTests {
    static var measuring: Bool { getenv("MMPOLICY_MEASURE") != nil }

    @Test(.enabled(if: measuring)) func measure() throws {
        let zram = try ZramSwap(sizeBytes: 1 << 30, ownDevice: true, priority: 32767)
        defer { withExtendedLifetime(zram) {} }
        try measureCallsOnTwoMiBRanges()
        for mode in ["stopped", "idle", "running"] { try measurePageOutRate(mode) }
        try measureIncompressiblePageOut()
        try measureSampling()
    }

    static func microseconds(_ body: () throws -> Void) rethrows -> Double {
        let clock = ContinuousClock()
        let elapsed = try clock.measure(body)
        return Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12
    }

    static func twoDecimals(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }

    static func bigRange(_ pidfd: PidFD) throws -> AddressRange {
        try #require(try ProcessMemoryMap.read(pidfd).anonymousRanges.max { $0.length < $1.length })
    }

    func measureCallsOnTwoMiBRanges() throws {
        let child = try workload(["hold", "--rss", "256M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        let big = try Self.bigRange(pidfd)
        let chunks = stride(from: big.start, to: big.end - 2 * Self.mib + 1, by: Int(2 * Self.mib)).map { AddressRange(start: $0, length: 2 * Self.mib) }
        try #require(chunks.count >= 96)
        func average(_ advice: MemoryAdvice, _ ranges: ArraySlice<AddressRange>) -> Double {
            var total = 0.0
            for range in ranges {
                total += Self.microseconds { #expect(ProcessMadvise.advise(pidfd, ranges: [range], advice: advice).bytes == range.length) }
            }
            return total / Double(ranges.count)
        }
        let cold = average(.cold, chunks[0..<32])
        let willNeed = average(.willNeed, chunks[32..<64])
        let pageOut = average(.pageOut, chunks[64..<96])
        let pageOutAgain = average(.pageOut, chunks[64..<96])
        let willNeedSwapped = average(.willNeed, chunks[64..<96])
        print("measure: one call, one 2 MiB range (resident unless said): MADV_COLD \(Int(cold)) µs, MADV_WILLNEED \(Int(willNeed)) µs, "
              + "MADV_PAGEOUT \(Int(pageOut)) µs, MADV_PAGEOUT of a range already out \(Int(pageOutAgain)) µs, "
              + "MADV_WILLNEED of a swapped range \(Int(willNeedSwapped)) µs")
    }

    /// MADV_PAGEOUT of a workload holding 256 MiB: stopped (SIGSTOP), idle
    /// (sleeping in pause()), or running (writing every page in a loop).
    func measurePageOutRate(_ mode: String) throws {
        let child = try workload([mode == "running" ? "thrash" : "hold", "--rss", "256M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        if mode == "running" {  // until its first pass has made the memory resident
            #expect(waitUntil(timeoutMs: 30_000) { ((try? ProcessMemoryStatus.read(pidfd).rssAnonBytes) ?? 0) >= 250 * Self.mib } != nil)
        }
        if mode == "stopped" {
            kill(child.pid, SIGSTOP)
            #expect(waitUntil(timeoutMs: 5_000) { (try? ProcessSnapshot.read(pid: child.pid).state) == "T" } != nil)
        }
        let ranges = try ProcessMemoryMap.read(pidfd).anonymousRanges
        var outcome = MadviseOutcome()
        let time = Self.microseconds { outcome = ProcessMadvise.advise(pidfd, ranges: ranges, advice: .pageOut) }
        let swapped = try ProcessMemoryStatus.read(pidfd).swapBytes
        let rate = Double(outcome.bytes) / Double(Self.mib) / (time / 1e6)
        print("measure: MADV_PAGEOUT of a \(mode) workload: \(outcome.bytes / Self.mib) MiB advised in \(Int(time / 1000)) ms = \(Int(rate)) MiB/s "
              + "(\(Self.twoDecimals(time / 1e6 / (Double(outcome.bytes) / Double(1 << 30)))) s/GiB), VmSwap right after \(swapped / Self.mib) MiB")
    }

    /// 256 MiB of random bytes of our own (process_madvise on oneself is allowed): zram's worst case.
    func measureIncompressiblePageOut() throws {
        let size = 256 * Int(Self.mib)
        let memory = try #require(mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
        defer { munmap(memory, size) }
        var generator = SystemRandomNumberGenerator()
        for offset in stride(from: 0, to: size, by: 8) { memory.storeBytes(of: generator.next() as UInt64, toByteOffset: offset, as: UInt64.self) }
        let range = AddressRange(start: UInt64(UInt(bitPattern: memory)), length: UInt64(size))
        let ourselves = try PidFD(pid: getpid())
        let estimate = try CompressibilityEstimate.sample(ourselves, ranges: [range])
        var outcome = MadviseOutcome()
        let time = Self.microseconds { outcome = ProcessMadvise.advise(ourselves, ranges: [range], advice: .pageOut) }
        let residency = try PageResidency.read(ourselves, ranges: [range])
        print("measure: MADV_PAGEOUT of 256 MiB of random bytes (estimated ratio \(estimate.ratio ?? -1)): \(Int(time / 1000)) ms = "
              + "\(Int(Double(outcome.bytes) / Double(Self.mib) / (time / 1e6))) MiB/s, \(residency.swappedPages * Int(Self.page) / Int(Self.mib)) MiB swapped; "
              + "zram now \(try zramSummary())")
    }

    func measureSampling() throws {
        let child = try workload(["hold", "--rss", "64M"])
        defer { Self.killAndWait(child) }
        let pidfd = try PidFD(pid: child.pid)
        let big = try Self.bigRange(pidfd)
        let rounds = 200
        let sample = try Self.microseconds { for _ in 0..<rounds { _ = try CompressibilityEstimate.sample(pidfd, ranges: [big]) } } / Double(rounds)
        let residency = try Self.microseconds { for _ in 0..<rounds { _ = try PageResidency.read(pidfd, ranges: [big]) } } / Double(rounds)
        let map = try Self.microseconds { for _ in 0..<rounds { _ = try ProcessMemoryMap.read(pidfd) } } / Double(rounds)
        let status = try Self.microseconds { for _ in 0..<rounds { _ = try ProcessMemoryStatus.read(pidfd) } } / Double(rounds)
        let tier = Self.microseconds { for _ in 0..<rounds { _ = SlowTier.current() } } / Double(rounds)
        print("measure: CompressibilityEstimate.sample (8 pages of 64 MiB) \(Int(sample)) µs; PageResidency.read of 64 MiB \(Int(residency)) µs; "
              + "ProcessMemoryMap.read \(Int(map)) µs; ProcessMemoryStatus.read \(Int(status)) µs; SlowTier.current() \(Int(tier)) µs")
    }

    func zramSummary() throws -> String {
        let tier = SlowTier.current()
        return "stored \(tier.storedBytes / Self.mib) MiB, compressed \(tier.compressedBytes / Self.mib) MiB, used \(tier.usedBytes / Self.mib) MiB"
    }
}

/// What sampling one 2 MiB region costs (the tiering engine's
/// compressibility check, 8 pages a region): the figure in
/// docs/kinds/tiering.md. Runs only when asked: `MMPOLICY_MEASURE=1 swift
/// test --skip-build --filter TieringPrimitivesTests/measureRegionSampling`.
extension TieringPrimitivesTests {
    @Test(.enabled(if: measuring)) func measureRegionSampling() throws {
        let region = 2 * Int(Self.mib)
        let ourselves = try PidFD(pid: getpid())
        var generator = SystemRandomNumberGenerator()
        let words = ["memory", "tier", "policy", "swap", "page", "the", "of", "and", "compress", "kernel", "process", "cold"]
        let kinds: [(String, (UnsafeMutableRawPointer) -> Void)] = [
            ("a word a page (the test workloads)", { memory in
                for offset in stride(from: 0, to: region, by: Int(Self.page)) { memory.storeBytes(of: UInt64(offset) | 1, toByteOffset: offset, as: UInt64.self) }
            }),
            ("text", { memory in
                var offset = 0
                while offset < region {
                    for byte in (words[Int(generator.next() % UInt64(words.count))] + " ").utf8 where offset < region {
                        memory.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
                        offset += 1
                    }
                }
            }),
            ("random", { memory in
                for offset in stride(from: 0, to: region, by: 8) { memory.storeBytes(of: generator.next() as UInt64, toByteOffset: offset, as: UInt64.self) }
            }),
        ]
        for (name, fill) in kinds {
            let memory = try #require(mmap(nil, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
            defer { munmap(memory, region) }
            fill(memory)
            let range = AddressRange(start: UInt64(UInt(bitPattern: memory)), length: UInt64(region))
            let rounds = 200
            var estimate = CompressibilityEstimate()
            let time = try Self.microseconds { for _ in 0..<rounds { estimate = try CompressibilityEstimate.sample(ourselves, ranges: [range], pages: 8) } }
            print("measure: sampling a 2 MiB region of \(name), 8 pages: \(Int(time / Double(rounds))) µs; stored ratio \(estimate.storedRatio ?? -1)")
        }
    }
}
