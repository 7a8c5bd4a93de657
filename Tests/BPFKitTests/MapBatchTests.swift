import BPFKit
import MMPolicyTestSupport
import Testing

/// Batch reads and deletes of a hash map (BPF_MAP_LOOKUP_BATCH, BPF_MAP_DELETE_BATCH).
@Suite struct MapBatchTests {
    @Test func readsEveryEntryInBatchesAndDeletesInOneCall() throws {
        let object = try BPFObject(path: TestPaths.policyObject("oom_growth"))
        try object.load()
        let map = try #require(object.map(named: "growth_by_tgid"))  // an LRU hash, keyed by tgid
        let keys = (0..<UInt32(3000)).map { 0xfff0_0000 + $0 }
        for key in keys { try map.update(key, Growth(mmID: key, anon: Int64(key) * 2)) }

        // Small batches: many calls, every entry once, the values with their keys.
        let read = try map.entries(as: (UInt32, Growth).self, batchSize: 64)
        #expect(read.count == keys.count && Set(read.map(\.key)) == Set(keys))
        #expect(read.allSatisfy { $0.value == Growth(mmID: $0.key, anon: Int64($0.key) * 2) })

        // A key already gone is skipped; the rest go.
        #expect(try map.delete(keys[10]))
        #expect(try map.delete(batch: keys) == keys.count - 1)
        #expect(try map.entries(as: (UInt32, Growth).self).isEmpty)

        let wrong = #expect(throws: BPFError.self) { _ = try map.entries(as: (UInt32, UInt32).self) }
        #expect(wrong?.description.contains("4-byte value was given for 72-byte values") == true)
    }
}
