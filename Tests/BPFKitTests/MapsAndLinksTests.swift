import BPFKit
import MMPolicyTestSupport
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Mirrors `struct growth` of oom_growth.bpf.c (72 bytes).
struct Growth: BitwiseCopyable, Equatable {
    var mmID: UInt32 = 0
    var pad: UInt32 = 0
    var file: Int64 = 0, anon: Int64 = 0, swap: Int64 = 0, shmem: Int64 = 0
    var windowStartBytes: Int64 = 0
    var windowStartNS: UInt64 = 0
    var lastRate: Int64 = 0
    var lastEventNS: UInt64 = 0
}

@Suite(.serialized) struct MapsAndLinksTests {
    @Test func mapLookupUpdateDeleteAndIterate() throws {
        let object = try BPFObject(path: TestPaths.policyObject("oom_growth"))
        try object.load()
        let map = try #require(object.map(named: "growth_by_tgid"))
        #expect(MemoryLayout<Growth>.size == map.valueSize)
        let keys: [UInt32] = [0xfff0_0001, 0xfff0_0002, 0xfff0_0003]
        for (i, key) in keys.enumerated() { try map.update(key, Growth(mmID: UInt32(i), anon: Int64(i) * 4096)) }
        #expect(try map.lookup(keys[1], as: Growth.self) == Growth(mmID: 1, anon: 4096))
        #expect(Set(try map.keys(as: UInt32.self)).isSuperset(of: keys))
        #expect(try map.delete(keys[0]))
        #expect(try map.delete(keys[0]) == false)
        #expect(try map.lookup(keys[0], as: Growth.self) == nil)
        let wrong = #expect(throws: BPFError.self) { _ = try map.lookup(keys[1], as: UInt32.self) }
        #expect(wrong?.description.contains("4-byte value was given for 72-byte values") == true)
        #expect(map.memoryBytes > 0)
    }

    @Test func attachesEveryProgramTypeAndDetaches() throws {
        let object = try BPFObject(path: TestPaths.fixture("attach_kinds"))
        try object.setParameter("target_tgid", to: .integer(Int64(getpid())))
        try object.load()
        let hits = try #require(object.map(named: "hits"))
        var links = try object.programs.map { try $0.attach() }
        _ = getppid()  // a syscall of ours: tracepoint, raw_tp and tp_btf fire
        let iterLink = try #require(links.first { $0.program == "count_iter" })
        let output = String(decoding: try iterLink.readIterator(), as: UTF8.self)
        #expect(output.contains("tgid \(getpid())"))
        for slot: UInt32 in 0..<4 {
            #expect((try hits.lookup(slot, as: UInt64.self) ?? 0) > 0, "hook \(slot) never fired")
        }
        // Detached programs stop counting.
        links.forEach { $0.detach() }
        links.removeAll()
        let before = try hits.lookup(UInt32(0), as: UInt64.self) ?? 0
        _ = getppid()
        #expect(try hits.lookup(UInt32(0), as: UInt64.self) == before)
    }

    @Test func pinsAndUnpinsMapsAndPrograms() throws {
        let dir = "/sys/fs/bpf/mmpolicy-test-\(getpid())"
        mkdir(dir, 0o700)
        defer { rmdir(dir) }
        let object = try BPFObject(path: TestPaths.policyObject("oom_growth"))
        try object.load()
        let map = try #require(object.map(named: "growth_by_tgid"))
        let program = try #require(object.program(named: "growth_select_victim"))
        try map.pin(at: dir + "/growth_by_tgid")
        try program.pin(at: dir + "/select")
        #expect(access(dir + "/growth_by_tgid", F_OK) == 0)
        #expect(access(dir + "/select", F_OK) == 0)
        try map.unpin(at: dir + "/growth_by_tgid")
        try program.unpin(at: dir + "/select")
        #expect(access(dir + "/growth_by_tgid", F_OK) != 0)
        #expect(access(dir + "/select", F_OK) != 0)
        let error = #expect(throws: BPFError.self) { try map.pin(at: "/nonexistent-dir/x") }
        #expect(error?.operation == .pin)
    }
}
