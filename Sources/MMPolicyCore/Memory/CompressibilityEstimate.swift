import CZlib

/// How well some memory would compress, estimated from a few pages: the
/// compressed size over the original, 0...1 (lower is better), and what
/// zram would keep of it.
///
/// Exists so that tiering can leave alone memory that zram would store at
/// nearly full size (already compressed or encrypted data): demoting it
/// frees almost nothing and costs a swap-in later.
///
/// The pages are compressed one at a time, as zram does, with zlib's deflate
/// at level 1 (raw, 4 KiB window) and **fixed** Huffman codes. zlib because
/// it is already on every machine that builds mmpolicy (libbpf needs it);
/// fixed codes because zram's compressors (lz4, lzo-rle) only find repeats
/// and code no literal shorter than a byte, and neither does deflate with
/// fixed codes, while its default dynamic codes shrink any page with few
/// distinct byte values. Measured against a zram device of this machine
/// (256 pages each, lz4 / lzo-rle): random hex text, deflate 0.57, fixed
/// 0.89, zram stored every page whole; English-like text 0.26 / 0.33 /
/// 0.47 (lz4) and 0.37 (lzo-rle); random bytes then zeros 0.87 / 0.90 /
/// 0.86 and 0.88. So the estimate ranks like zram and errs on the side of
/// compressing better, except near a full page, where it is a few points
/// high.
///
/// zram stores a page whose compressed size reaches zsmalloc's huge class
/// (``zramWholePageLine``) uncompressed: `storedBytes` counts such a page
/// at its full size. A page that does not shrink at all counts at its own
/// size in `compressedBytes` too.
///
/// `sample` reads only resident pages: process_vm_readv would fault a
/// swapped page back in (see `RemoteMemory`), so pages in swap or never
/// touched are skipped (`PageResidency`). A page swapped out between that
/// check and the read is still brought back: sample before demoting.
/// Cost measured here (debug build, 8 resident pages, page-map lookups,
/// copies and deflate included): 63-118 µs per call when each page holds a
/// word, 276 µs for text, 496 µs for random bytes, whose deflate is the
/// dearest part (TieringPrimitivesTests/measureRegionSampling).
public struct CompressibilityEstimate: Sendable, Equatable {
    /// Pages compressed.
    public var sampledPages: Int = 0
    /// Pages chosen but not read: not resident (swapped or never touched),
    /// or unmapped since the ranges were taken.
    public var skippedPages: Int = 0
    /// Bytes compressed.
    public var sampledBytes: UInt64 = 0
    /// Their compressed size, each page at most its own size.
    public var compressedBytes: UInt64 = 0
    /// Pages past ``zramWholePageLine``: zram would store them whole.
    public var wholePages: Int = 0
    /// What zram would keep of the sampled bytes: each page's compressed
    /// size, or its full size past ``zramWholePageLine``.
    public var storedBytes: UInt64 = 0

    public init(sampledPages: Int = 0, skippedPages: Int = 0, sampledBytes: UInt64 = 0, compressedBytes: UInt64 = 0,
                wholePages: Int = 0, storedBytes: UInt64 = 0) {
        self.sampledPages = sampledPages
        self.skippedPages = skippedPages
        self.sampledBytes = sampledBytes
        self.compressedBytes = compressedBytes
        self.wholePages = wholePages
        self.storedBytes = storedBytes
    }

    /// The share of a page at and past which zram stores the page
    /// uncompressed (a "huge" page in mm_stat): zsmalloc's huge class size
    /// less its handle, 3,625 of 4,096 bytes with this kernel's zspage chain
    /// of 8 pages. Measured on this machine's zram (lz4 and lzo-rle alike):
    /// pages compressing to 3,614 bytes were kept compressed, pages
    /// compressing to 3,630 or more were all stored whole. Not the 3/4 of
    /// older kernels (chain of 4 pages: 3,264 bytes). Such a page frees
    /// nothing when it goes to zram.
    public static let zramWholePageLine = 3625.0 / 4096.0

    /// compressedBytes / sampledBytes, 0...1; nil when no page was sampled.
    public var ratio: Double? { sampledBytes == 0 ? nil : Double(compressedBytes) / Double(sampledBytes) }

    /// storedBytes / sampledBytes, 0...1: what zram would keep of each byte
    /// demoted (allocator overhead aside); nil when no page was sampled.
    public var storedRatio: Double? { sampledBytes == 0 ? nil : Double(storedBytes) / Double(sampledBytes) }

    /// Estimates `ranges` of the process `pidfd` refers to from `pages` pages
    /// spread evenly over them (`samplePages`). Throws when the process is
    /// gone or cannot be read; pages that are not resident are skipped.
    public static func sample(_ pidfd: PidFD, ranges: [AddressRange], pages: Int = 8) throws(SystemCallError) -> CompressibilityEstimate {
        let pageSize = ProcessSnapshot.pageSize
        let addresses = samplePages(in: ranges, count: pages, pageSize: pageSize)
        var estimate = CompressibilityEstimate()
        guard !addresses.isEmpty else { return estimate }
        let pageMap = try PageMapFile(pidfd)
        let compressor = PageCompressor(pageSize: Int(pageSize))
        let page = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(pageSize), alignment: 16)
        defer { page.deallocate() }
        for address in addresses {
            let entry = try pageMap.entries(firstPage: address / pageSize, count: 1)[0]
            guard entry & PageResidency.presentBit != 0 else { estimate.skippedPages += 1; continue }
            let copied: Int
            do throws(SystemCallError) {
                copied = try RemoteMemory.copy(pidfd, from: AddressRange(start: address, length: pageSize), into: page)
            } catch {
                guard error.errno == .badAddress else { throw error }
                estimate.skippedPages += 1  // unmapped since the ranges were taken
                continue
            }
            estimate.add(compressed: compressor.compressedSize(of: UnsafeRawBufferPointer(rebasing: page[..<copied])), original: copied)
        }
        try pidfd.checkAlive(after: "the memory of process \(pidfd.pid)")
        return estimate
    }

    /// Estimates a buffer of our own, page by page (every page, no sampling).
    public static func measure(_ bytes: UnsafeRawBufferPointer, pageSize: Int = Int(ProcessSnapshot.pageSize)) -> CompressibilityEstimate {
        let compressor = PageCompressor(pageSize: pageSize)
        var estimate = CompressibilityEstimate()
        var offset = 0
        while offset < bytes.count {
            let page = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(offset + pageSize, bytes.count)])
            estimate.add(compressed: compressor.compressedSize(of: page), original: page.count)
            offset += pageSize
        }
        return estimate
    }

    private mutating func add(compressed: Int, original: Int) {
        sampledPages += 1
        sampledBytes += UInt64(original)
        compressedBytes += UInt64(min(compressed, original))
        if Double(compressed) >= Self.zramWholePageLine * Double(original) {
            wholePages += 1
            storedBytes += UInt64(original)
        } else {
            storedBytes += UInt64(compressed)
        }
    }

    /// The start addresses of `count` pages spread evenly over the whole
    /// pages of `ranges` (the middle page of each of `count` equal shares),
    /// in order; every page when there are fewer than `count`.
    public static func samplePages(in ranges: [AddressRange], count: Int, pageSize: UInt64 = ProcessSnapshot.pageSize) -> [UInt64] {
        let whole = ranges.compactMap { range -> (first: UInt64, pages: UInt64)? in
            let first = (range.start + pageSize - 1) / pageSize, end = range.end / pageSize
            return end > first ? (first, end - first) : nil
        }
        let total = whole.reduce(0) { $0 + $1.pages }
        guard count > 0, total > 0 else { return [] }
        let picks = min(UInt64(count), total)
        var result: [UInt64] = []
        var part = 0, before: UInt64 = 0  // pages in the parts before `part`
        for pick in 0..<picks {
            let index = (2 * pick + 1) * total / (2 * picks)
            while index >= before + whole[part].pages { before += whole[part].pages; part += 1 }
            result.append((whole[part].first + index - before) * pageSize)
        }
        return result
    }
}

/// zlib deflate at level 1, raw, with a 4 KiB window and fixed Huffman
/// codes (Z_FIXED: no entropy coding of literals, like lz4), reused from
/// page to page (deflateReset instead of compress2's allocation per call).
final class PageCompressor {
    private let stream = UnsafeMutablePointer<z_stream>.allocate(capacity: 1)
    private var output: [UInt8]
    private let ready: Bool

    init(pageSize: Int) {
        output = [UInt8](repeating: 0, count: pageSize)
        stream.initialize(to: z_stream())
        ready = deflateInit2_(stream, 1, Z_DEFLATED, -12, 8, Z_FIXED, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK
    }

    /// The deflated size of `page`; its own size when it does not shrink.
    func compressedSize(of page: UnsafeRawBufferPointer) -> Int {
        guard ready, page.count > 0 else { return page.count }
        deflateReset(stream)
        let finished = output.withUnsafeMutableBufferPointer { out -> Bool in
            stream.pointee.next_in = UnsafeMutablePointer(mutating: page.bindMemory(to: Bytef.self).baseAddress)
            stream.pointee.avail_in = uInt(page.count)
            stream.pointee.next_out = out.baseAddress
            stream.pointee.avail_out = uInt(min(out.count, page.count))
            return deflate(stream, Z_FINISH) == Z_STREAM_END
        }
        return finished ? Int(stream.pointee.total_out) : page.count
    }

    deinit {
        if ready { deflateEnd(stream) }
        stream.deinitialize(count: 1)
        stream.deallocate()
    }
}
