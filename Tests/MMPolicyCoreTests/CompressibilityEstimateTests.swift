import MMPolicyCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// CompressibilityEstimate on buffers whose compressibility is known, and
/// where it samples.
@Suite struct CompressibilityEstimateTests {
    static let page = 4096

    static func estimate(_ bytes: [UInt8]) -> CompressibilityEstimate {
        bytes.withUnsafeBytes { CompressibilityEstimate.measure($0, pageSize: page) }
    }

    @Test func zerosCompressToAlmostNothing() throws {
        let estimate = Self.estimate([UInt8](repeating: 0, count: 16 * Self.page))
        #expect(estimate.sampledPages == 16 && estimate.sampledBytes == UInt64(16 * Self.page))
        // Fixed codes: ~43 bytes a page (dynamic codes would take ~35).
        #expect(try #require(estimate.ratio) < 0.015, "\(estimate)")
        #expect(estimate.wholePages == 0 && estimate.storedBytes == estimate.compressedBytes)
    }

    @Test func randomBytesDoNotCompress() throws {
        var bytes = [UInt8](repeating: 0, count: 16 * Self.page)
        var generator = SystemRandomNumberGenerator()
        for index in bytes.indices { bytes[index] = generator.next() }
        let estimate = Self.estimate(bytes)
        #expect(try #require(estimate.ratio) > 0.99, "\(estimate)")
        #expect(estimate.ratio! <= 1, "a page that grows counts at its own size")
        #expect(estimate.wholePages == 16 && estimate.storedRatio == 1, "zram stores each page whole")
    }

    @Test func fewDistinctBytesWithoutRepeatsDoNotCompressForZram() throws {
        // Random hex digits: 4 bits of entropy a byte, which deflate's dynamic
        // codes halve, but lz4 and lzo-rle (no literal coding) store whole.
        var generator = SystemRandomNumberGenerator()
        let digits = Array("0123456789abcdef".utf8)
        let bytes = (0..<16 * Self.page).map { _ in digits[Int(generator.next() % 16)] }
        let estimate = Self.estimate(bytes)
        #expect(try #require(estimate.ratio) > 0.85, "\(estimate)")
    }

    @Test func pagesPastTheWholePageLineCountWhole() throws {
        // Per page: n random bytes, then zeros; compresses to about n bytes.
        var generator = SystemRandomNumberGenerator()
        func pages(randomBytes n: Int) -> [UInt8] {
            (0..<4).flatMap { _ in (0..<Self.page).map { $0 < n ? UInt8.random(in: 0...255, using: &generator) : 0 } }
        }
        let low = Self.estimate(pages(randomBytes: 2048))
        #expect(low.wholePages == 0 && low.storedBytes == low.compressedBytes, "\(low)")
        let high = Self.estimate(pages(randomBytes: 3700))
        #expect(high.wholePages == 4 && high.storedBytes == high.sampledBytes && high.compressedBytes < high.sampledBytes, "\(high)")
    }

    @Test func textIsInBetween() throws {
        // Varied English-like text: words repeat, letters do not fill bytes.
        let words = ["memory", "tier", "policy", "swap", "page", "the", "of", "and", "compress", "kernel", "process", "cold",
                     "resident", "zram", "ratio", "sample", "estimate", "moves", "back", "later"]
        var generator = SystemRandomNumberGenerator()
        var text = ""
        while text.utf8.count < 16 * Self.page { text += words[Int(generator.next() % UInt64(words.count))] + (generator.next() % 9 == 0 ? ".\n" : " ") }
        let estimate = Self.estimate(Array(text.utf8.prefix(16 * Self.page)))
        let ratio = try #require(estimate.ratio)
        #expect(ratio > 0.2 && ratio < 0.7, "\(estimate)")
    }

    @Test func theTestWorkloadsPagesCompressAlmostLikeZeros() throws {
        // mmpolicy-workload writes one distinct 8-byte value per page.
        var bytes = [UInt8](repeating: 0, count: 8 * Self.page)
        for page in 0..<8 { withUnsafeBytes(of: UInt64(page * Self.page) | 1) { bytes.replaceSubrange(page * Self.page..<page * Self.page + 8, with: $0) } }
        #expect(try #require(Self.estimate(bytes).ratio) < 0.02)
    }

    @Test func anEmptyBufferHasNoRatio() {
        let estimate = Self.estimate([])
        #expect(estimate.sampledPages == 0 && estimate.ratio == nil)
        #expect(CompressibilityEstimate().ratio == nil)
    }

    @Test func samplesAreSpreadEvenlyOverWholePages() {
        let page = UInt64(Self.page)
        // 64 pages in two ranges of 32: 8 samples, the middle page of each share of 8.
        let ranges = [AddressRange(start: 0x10_0000, length: 32 * page), AddressRange(start: 0x80_0000, length: 32 * page)]
        let picks = CompressibilityEstimate.samplePages(in: ranges, count: 8, pageSize: page)
        #expect(picks == [4, 12, 20, 28].map { 0x10_0000 + $0 * page } + [4, 12, 20, 28].map { 0x80_0000 + $0 * page })
        // Fewer pages than samples: each page once.
        let small = [AddressRange(start: 0x10_0000, length: 3 * page)]
        #expect(CompressibilityEstimate.samplePages(in: small, count: 8, pageSize: page) == [0x10_0000, 0x10_1000, 0x10_2000])
        // Only whole pages count: a range of less than a page, or straddling two halves, has none.
        #expect(CompressibilityEstimate.samplePages(in: [AddressRange(start: 0x10_0800, length: page)], count: 8, pageSize: page).isEmpty)
        #expect(CompressibilityEstimate.samplePages(in: [AddressRange(start: 0x10_0800, length: 2 * page)], count: 8, pageSize: page) == [0x10_1000])
        #expect(CompressibilityEstimate.samplePages(in: [], count: 8, pageSize: page).isEmpty)
        #expect(CompressibilityEstimate.samplePages(in: ranges, count: 0, pageSize: page).isEmpty)
        // Every pick lies inside a range.
        let odd = [AddressRange(start: 0x1000, length: 5 * page), AddressRange(start: 0x20000, length: 1 * page), AddressRange(start: 0x40000, length: 17 * page)]
        let oddPicks = CompressibilityEstimate.samplePages(in: odd, count: 7, pageSize: page)
        #expect(oddPicks.count == 7 && oddPicks == oddPicks.sorted())
        #expect(oddPicks.allSatisfy { pick in odd.contains { $0.start <= pick && pick + page <= $0.end } })
    }
}
