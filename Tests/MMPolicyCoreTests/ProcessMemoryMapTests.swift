import MMPolicyCore
import Testing

/// /proc/PID/maps parsing (text from a Linux 6.18 machine, plus made-up
/// edge cases), which mappings count as movable anonymous memory, and
/// AddressRange's clipping against the result.
@Suite struct ProcessMemoryMapTests {
    /// `cat /proc/self/maps` on this machine, shortened, with an [anon:...]
    /// name, a shared anonymous mapping, a deleted file and a path with spaces added.
    static let catMaps = """
        555accf18000-555accf1a000 r--p 00000000 fe:00 253911                     /usr/bin/cat
        555accf1a000-555accf1f000 r-xp 00002000 fe:00 253911                     /usr/bin/cat
        555accf23000-555accf24000 rw-p 0000a000 fe:00 253911                     /usr/bin/cat
        555b09763000-555b09784000 rw-p 00000000 00:00 0                          [heap]
        7f4860943000-7f4860965000 rw-p 00000000 00:00 0 
        7f4860965000-7f48609bc000 r--p 00000000 fe:00 323409                     /usr/lib/locale/C.utf8/LC_CTYPE
        7f48609c5000-7f48609c8000 rw-p 00000000 00:00 0 
        7f48609c8000-7f48609ee000 r--p 00000000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        7f4860b9b000-7f4860b9d000 rw-p 001d3000 fe:00 333151                     /usr/lib/x86_64-linux-gnu/libc.so.6
        7f4860b9d000-7f4860baa000 rw-p 00000000 00:00 0 
        7f4860baa000-7f4860bab000 rw-p 00000000 00:00 0                          [anon:jemalloc]
        7f4860bab000-7f4860bb2000 r--s 00000000 fe:00 332619                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
        7f4860bb2000-7f4860bb3000 rw-s 00000000 00:01 1042                       /dev/zero (deleted)
        7f4860bb3000-7f4860bb5000 rw-p 00000000 00:00 0 
        7f4860bb5000-7f4860bb9000 r--p 00000000 00:00 0                          [vvar]
        7f4860bb9000-7f4860bbb000 r--p 00000000 00:00 0                          [vvar_vclock]
        7f4860bbb000-7f4860bbd000 r-xp 00000000 00:00 0                          [vdso]
        7f4860bbd000-7f4860bbe000 rw-p 00000000 fe:00 4242                       /tmp/my data (deleted)
        7f4860bbe000-7f4860bbf000 ---p 00000000 00:00 0 
        7ffd6b2c5000-7ffd6b2e6000 rw-p 00000000 00:00 0                          [stack]
        ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]

        """

    @Test func parsesEveryField() throws {
        let map = try ProcessMemoryMap(parsing: Self.catMaps)
        #expect(map.mappings.count == 21)
        let text = map.mappings[1]
        #expect(text.range == AddressRange(start: 0x555a_ccf1_a000, end: 0x555a_ccf1_f000))
        #expect(text.isReadable && !text.isWritable && text.isExecutable && !text.isShared)
        #expect(text.offset == 0x2000 && text.device == "fe:00" && text.inode == 253_911 && text.path == "/usr/bin/cat")
        #expect(map.mappings[4].path == "", "an unnamed mapping's trailing space is not a path")
        #expect(map.mappings[11].isShared && map.mappings[11].offset == 0)
        #expect(map.mappings[17].path == "/tmp/my data (deleted)", "the path runs to the end of the line, spaces and all")
        #expect(map.mappings[18].isReadable == false && map.mappings[18].isWritable == false)
        #expect(map.mappings.last!.range.end == 0xffff_ffff_ff60_1000)
    }

    @Test func anonymousPrivateMemoryIsHeapStackUnnamedAndNamedAnonymous() throws {
        let map = try ProcessMemoryMap(parsing: Self.catMaps)
        let anonymous = map.mappings.filter(\.isAnonymousPrivate).map(\.path)
        #expect(anonymous == ["[heap]", "", "", "", "[anon:jemalloc]", "", "[stack]"])
        // Not: file mappings (even writable private ones, the COW .data of libc), shared
        // memory, the vdso pages, a guard page (---p), a deleted file.
        #expect(map.anonymousRanges == [
            AddressRange(start: 0x555b_0976_3000, end: 0x555b_0978_4000),
            AddressRange(start: 0x7f48_6094_3000, end: 0x7f48_6096_5000),
            AddressRange(start: 0x7f48_609c_5000, end: 0x7f48_609c_8000),
            // Two adjacent anonymous mappings become one range.
            AddressRange(start: 0x7f48_60b9_d000, end: 0x7f48_60ba_b000),
            AddressRange(start: 0x7f48_60bb_3000, end: 0x7f48_60bb_5000),
            AddressRange(start: 0x7ffd_6b2c_5000, end: 0x7ffd_6b2e_6000),
        ])
        #expect(map.anonymousBytes == map.anonymousRanges.reduce(0) { $0 + $1.length })
    }

    @Test func anEmptyMapHasNoRanges() throws {
        // A kernel thread's maps file is empty.
        let map = try ProcessMemoryMap(parsing: "")
        #expect(map.mappings.isEmpty && map.anonymousRanges.isEmpty && map.anonymousBytes == 0)
        #expect(AddressRange(start: 0x1000, end: 0x9000).clipped(to: map.anonymousRanges).isEmpty)
    }

    @Test func rejectsBrokenLines() {
        for line in [
            "garbage",
            "7f00-7e00 rw-p 00000000 00:00 0",  // end before start
            "7f00-8000 rw-x 00000000 00:00 0",  // neither p nor s
            "7f00-8000 rw-p 00000000 0000 0",  // device without ':'
            "7f00-8000 rw-p zz 00:00 0",
            "7f00-8000 rw-p 00000000 00:00",
            "7g00-8000 rw-p 00000000 00:00 0",
            "1ffffffffffffffff-2ffffffffffffffff rw-p 00000000 00:00 0",  // overflow
        ] {
            #expect(throws: SystemCallError.self, "\(line)") { try ProcessMemoryMap(parsing: line + "\n") }
        }
        do throws(SystemCallError) {
            _ = try ProcessMemoryMap(parsing: "7f00-8000 rw-p 0 00:00 0\nnonsense here\n", target: "/proc/42/maps")
            Issue.record("accepted a broken line")
        } catch {
            #expect(error.errno == .badMessage && error.target == "/proc/42/maps")
            #expect(error.description.contains("nonsense here"), "\(error)")
        }
    }

    @Test func parsesTheMostMappingsAProcessCanHave() throws {
        // vm.max_map_count is 65,530: alternate anonymous and file mappings so none join.
        var text = ""
        text.reserveCapacity(65_530 * 90)
        for index in 0..<65_530 {
            let start = 0x1000_0000 + UInt64(index) * 0x2000
            let file = index % 2 == 1
            text += "\(String(start, radix: 16))-\(String(start + 0x2000, radix: 16)) rw-p 00000000 "
            text += file ? "fe:00 \(1000 + index)                     /usr/lib/lib\(index).so\n" : "00:00 0 \n"
        }
        let clock = ContinuousClock()
        var map: ProcessMemoryMap?
        let elapsed = try clock.measure { map = try ProcessMemoryMap(parsing: text) }
        let parsed = try #require(map)
        #expect(parsed.mappings.count == 65_530)
        #expect(parsed.anonymousRanges.count == 32_765)
        #expect(parsed.anonymousBytes == 32_765 * 0x2000)
        #expect(elapsed < .seconds(5), "parsing 65,530 mappings took \(elapsed)")

        // Clipping a range against them finds its parts by binary search.
        let wide = AddressRange(start: 0x1000_0000 + 100 * 0x2000 + 0x800, length: 4 * 0x2000)
        #expect(wide.clipped(to: parsed.anonymousRanges) == [
            AddressRange(start: 0x1000_0000 + 100 * 0x2000 + 0x800, end: 0x1000_0000 + 101 * 0x2000),
            AddressRange(start: 0x1000_0000 + 102 * 0x2000, length: 0x2000),
            AddressRange(start: 0x1000_0000 + 104 * 0x2000, end: 0x1000_0000 + 104 * 0x2000 + 0x800),
        ])
    }

    @Test func clippingARangeAgainstTheAnonymousRanges() {
        let anonymous = [
            AddressRange(start: 0x1000, end: 0x3000),
            AddressRange(start: 0x5000, end: 0x8000),
            AddressRange(start: 0x9000, end: 0xa000),
        ]
        // Straddling two mappings (and the gap between them).
        #expect(AddressRange(start: 0x2000, end: 0x6000).clipped(to: anonymous)
                == [AddressRange(start: 0x2000, end: 0x3000), AddressRange(start: 0x5000, end: 0x6000)])
        // Exactly one mapping.
        #expect(AddressRange(start: 0x5000, end: 0x8000).clipped(to: anonymous) == [AddressRange(start: 0x5000, end: 0x8000)])
        // Inside one.
        #expect(AddressRange(start: 0x6000, end: 0x7000).clipped(to: anonymous) == [AddressRange(start: 0x6000, end: 0x7000)])
        // In a gap, before all, after all, touching an end: none.
        #expect(AddressRange(start: 0x3000, end: 0x5000).clipped(to: anonymous).isEmpty)
        #expect(AddressRange(start: 0x0, end: 0x1000).clipped(to: anonymous).isEmpty)
        #expect(AddressRange(start: 0xa000, end: 0xf000).clipped(to: anonymous).isEmpty)
        #expect(AddressRange(start: 0x4000, length: 0).clipped(to: anonymous).isEmpty)
        // Covering all.
        #expect(AddressRange(start: 0, end: 0x10000).clipped(to: anonymous) == anonymous)
        #expect(AddressRange.prefix(AddressRange(start: 0, end: 0x10000).clipped(to: anonymous), bytes: 0x3000)
                == [AddressRange(start: 0x1000, end: 0x3000), AddressRange(start: 0x5000, end: 0x6000)])
    }

    @Test func mergingSortsJoinsAndDropsEmptyRanges() {
        let merged = AddressRange.merged([
            AddressRange(start: 0x9000, end: 0xa000),
            AddressRange(start: 0x1000, end: 0x3000),
            AddressRange(start: 0x3000, end: 0x4000),  // touches the previous one
            AddressRange(start: 0x2000, end: 0x2800),  // inside
            AddressRange(start: 0x7000, length: 0),
        ])
        #expect(merged == [AddressRange(start: 0x1000, end: 0x4000), AddressRange(start: 0x9000, end: 0xa000)])
        #expect(AddressRange(start: 0x7f00_0000_0000, end: 0x7f00_0020_0000).hexDescription == "0x7f0000000000-0x7f0000200000")
    }

    @Test func removingARangeSplitsTrimsAndDrops() {
        let ranges = [AddressRange(start: 0x1000, end: 0x5000), AddressRange(start: 0x8000, end: 0x9000),
                      AddressRange(start: 0xa000, end: 0xc000)]
        // Splits the first, drops the second, trims the third.
        #expect(AddressRange.removing(AddressRange(start: 0x2000, end: 0xb000), from: ranges)
                == [AddressRange(start: 0x1000, end: 0x2000), AddressRange(start: 0xb000, end: 0xc000)])
        #expect(AddressRange.removing(AddressRange(start: 0x2000, end: 0x3000), from: ranges)
                == [AddressRange(start: 0x1000, end: 0x2000), AddressRange(start: 0x3000, end: 0x5000)] + ranges.dropFirst())
        // Touching is not overlapping; an empty cut removes nothing.
        #expect(AddressRange.removing(AddressRange(start: 0x5000, end: 0x8000), from: ranges) == ranges)
        #expect(AddressRange.removing(AddressRange(start: 0x2000, length: 0), from: ranges) == ranges)
        #expect(AddressRange.removing(AddressRange(start: 0, end: 0x10000), from: ranges).isEmpty)
    }
}
