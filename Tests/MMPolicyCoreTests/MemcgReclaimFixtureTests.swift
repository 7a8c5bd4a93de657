import MMPolicyCore
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The parts of memcg reclaim that need no live memory cgroup: cgroup v2's
/// memory.reclaim against a fixture directory (this machine has no v2
/// memory controller), the v1 floor from memory.stat text, and the
/// journal's record-without-writing. The v1 lower-and-raise itself is
/// tested live (LiveKernelTests/MemcgReclaimTests).
struct MemcgReclaimFixtureTests {
    static let mib: UInt64 = 1 << 20

    /// A cgroup v2 directory with memory.current and an empty memory.reclaim.
    func v2Cgroup(_ scratch: ScratchDirectory, current: UInt64 = 96 << 20, reclaimFile: Bool = true) throws -> String {
        let dir = try scratch.makeDirectory("job")
        try scratch.write("job/memory.current", "\(current)\n")
        if reclaimFile { try scratch.write("job/memory.reclaim", "") }
        return dir
    }

    @Test func v2WritesTheByteCountToMemoryReclaimAndMeasuresMemoryCurrent() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-reclaim-v2")
        let dir = try v2Cgroup(scratch)
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        let outcome = try MemcgReclaim(path: dir, version: .v2).reclaim(8 * Self.mib, journal: journal, owner: "p")
        #expect(try readFile(dir + "/memory.reclaim") == "8388608", "one write of the byte count, no unit")
        #expect(outcome.askedBytes == 8 * Self.mib && outcome.usageBeforeBytes == 96 * Self.mib)
        #expect(outcome.reclaimedBytes == 0, "a fixture's memory.current does not move")
        #expect(outcome.stop == .reachedTarget && outcome.steps.isEmpty)
        #expect(journal.entries().isEmpty, "v2 changes no knob: nothing is journaled")
    }

    @Test func v2WithoutMemoryReclaimIsATypedErrorNamingTheFile() throws {
        let scratch = try ScratchDirectory(prefix: "mmpolicy-reclaim-v2")
        let dir = try v2Cgroup(scratch, reclaimFile: false)
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        do {
            _ = try MemcgReclaim(path: dir, version: .v2).reclaim(Self.mib, journal: journal, owner: "p")
            Issue.record("reclaimed without memory.reclaim")
        } catch {
            #expect(error.errno == .noSuchFileOrDirectory)
            #expect(error.path == dir + "/memory.reclaim")
            #expect(error.description.contains("memory.reclaim needs Linux 5.19"), "\(error)")
        }
    }

    static let stat = """
        cache 0
        rss 0
        total_cache 67108864
        total_rss 134217728
        total_inactive_anon 100663296
        total_active_anon 33554432
        total_inactive_file 50331648
        total_active_file 16777216
        total_unevictable 0
        """

    @Test func theV1FloorIsWhatTheGroupCannotGiveUpPlusHeadroom() {
        let limits = MemcgV1LimitReclaim.Limits(steps: 4, minimumFloorBytes: 16 * Self.mib, headroomBytes: 16 * Self.mib)
        // 224 MiB used: 64 MiB file, 128 MiB anon, 32 MiB kernel memory and the like.
        let usage = 224 * Self.mib
        let roomy = MemcgV1LimitReclaim.floor(usage: usage, stat: Self.stat, swappiness: 60, swapRoomBytes: 1 << 30, limits: limits)
        #expect(roomy == 48 * Self.mib, "the 32 MiB nothing can take, plus 16 MiB headroom")
        let noSwappiness = MemcgV1LimitReclaim.floor(usage: usage, stat: Self.stat, swappiness: 0, swapRoomBytes: 1 << 30, limits: limits)
        #expect(noSwappiness == 176 * Self.mib, "swappiness 0: anonymous memory stays, only file pages go")
        let littleSwap = MemcgV1LimitReclaim.floor(usage: usage, stat: Self.stat, swappiness: 60, swapRoomBytes: 32 * Self.mib, limits: limits)
        #expect(littleSwap == 144 * Self.mib, "only as much anonymous memory as swap has room for")
        let tiny = MemcgV1LimitReclaim.floor(usage: 4 * Self.mib, stat: "", swappiness: 60, swapRoomBytes: 0,
                                             limits: .init(steps: 4, minimumFloorBytes: 16 * Self.mib, headroomBytes: 0))
        #expect(tiny == 16 * Self.mib, "never below the minimum floor")
    }

    @Test func theJournalRecordsAnOriginalWithoutWritingAndTheFirstOriginalWins() throws {
        let scratch = try ScratchDirectory()
        let knob = try scratch.write("memory.limit_in_bytes", "1073741824\n")
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        let entry = try journal.record(knob, owner: "p")
        #expect(entry.original == "1073741824" && entry.owner == "p")
        #expect(try readFile(knob) == "1073741824\n", "nothing written")
        try writeFile(knob, "536870912\n")
        #expect(try journal.record(knob, owner: "q").original == "1073741824", "the first original wins, whoever asks")
        #expect(journal.restore(owner: "p").isEmpty)
        #expect(try readFile(knob).hasPrefix("1073741824"))
        do {
            _ = try journal.record(scratch.path + "/gone", owner: "p")
            Issue.record("journaled a file that does not exist")
        } catch {
            #expect(error.errno == .noSuchFileOrDirectory && journal.entries().isEmpty)
        }
    }
}
