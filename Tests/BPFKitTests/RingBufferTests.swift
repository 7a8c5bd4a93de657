import BPFKit
import CLibBPF
import Dispatch
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Mirrors `struct echo_ctx` of the ringbuf_echo fixture (56 bytes).
struct EchoContext: BitwiseCopyable, Sendable {
    var seq: UInt64 = 0
    var value: UInt64 = 0
    var size: UInt32 = 0
    var pad: UInt32 = 0
    var payload: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)

    init(seq: UInt64 = 0, value: UInt64 = 0) {
        self.seq = seq
        self.value = value
    }

    init(payload bytes: [UInt8]) {
        size = UInt32(bytes.count)
        withUnsafeMutableBytes(of: &payload) { $0.copyBytes(from: bytes) }
    }
}

/// Mirrors `struct echo_fixed_record` (16 bytes).
struct EchoRecord: BitwiseCopyable, Equatable {
    var seq: UInt64
    var value: UInt64
}

@Suite(.serialized) struct RingBufferTests {
    func openEcho() throws -> (BPFObject, BPFRingBuffer) {
        let object = try BPFObject(path: TestPaths.fixture("ringbuf_echo"))
        try object.load()
        let ring = try BPFRingBuffer(map: try #require(object.map(named: "records")))
        return (object, ring)
    }

    @Test func recordsComeBackInOrderAsBytesOrTyped() throws {
        let (object, ring) = try openEcho()
        let fixed = try #require(object.program(named: "echo_fixed"))
        let bytes = try #require(object.program(named: "echo_bytes"))
        #expect(try ring.drain().isEmpty)

        for seq: UInt64 in 1...3 {
            var ctx = EchoContext(seq: seq, value: seq * 1000 + 7)
            #expect(try fixed.run(context: &ctx) == 0)
        }
        #expect(try ring.drain(as: EchoRecord.self) == [
            EchoRecord(seq: 1, value: 1007), EchoRecord(seq: 2, value: 2007), EchoRecord(seq: 3, value: 3007),
        ])
        #expect(try ring.drain().isEmpty, "a drained record must not come back")

        let short: [UInt8] = [1, 2, 3, 4, 5]
        let full = (0..<32).map { UInt8(0xa0 + $0) }
        for payload in [short, full] {
            var ctx = EchoContext(payload: payload)
            #expect(try bytes.run(context: &ctx) == 0)
        }
        #expect(try ring.drain() == [short, full])
    }

    @Test func typedDrainRefusesRecordsOfAnotherSize() throws {
        let (object, ring) = try openEcho()
        var ctx = EchoContext(seq: 9, value: 9)
        try #require(object.program(named: "echo_fixed")).run(context: &ctx)
        let error = #expect(throws: BPFError.self) { _ = try ring.drain(as: UInt32.self) }
        #expect(error?.operation == .readRingBuffer)
        #expect(error?.description.contains("a 16-byte record was read as a 4-byte UInt32") == true)
    }

    @Test func refusesAMapThatIsNotARingBuffer() throws {
        let object = try BPFObject(path: TestPaths.policyObject("oom_growth"))
        let error = #expect(throws: BPFError.self) { _ = try BPFRingBuffer(map: try #require(object.map(named: "growth_by_tgid"))) }
        #expect(error?.description.contains("not a ring buffer") == true)
    }

    @Test func pollTimesOutEmptyAndWakesWhenARecordArrives() throws {
        let (object, ring) = try openEcho()
        #expect(ring.epollFD >= 0)

        var start = monotonicNanoseconds()
        #expect(try ring.poll(timeoutMs: 100).isEmpty)
        #expect(monotonicNanoseconds() - start >= 90_000_000, "poll returned before its timeout with nothing to read")

        // Another thread submits a record 200 ms into a 10 s poll.
        let programFD = try #require(object.program(named: "echo_fixed")?.fd)
        let ran = DispatchSemaphore(value: 0)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(200)) {
            var ctx = EchoContext(seq: 42, value: 4242)
            var opts = bpf_test_run_opts()
            opts.sz = MemoryLayout<bpf_test_run_opts>.size
            _ = withUnsafeMutableBytes(of: &ctx) { bytes -> Int32 in
                opts.ctx_in = UnsafeRawPointer(bytes.baseAddress)
                opts.ctx_size_in = UInt32(bytes.count)
                return bpf_prog_test_run_opts(programFD, &opts)
            }
            ran.signal()
        }
        start = monotonicNanoseconds()
        let records = try ring.poll(timeoutMs: 10_000)
        let waited = monotonicNanoseconds() - start
        ran.wait()
        #expect(records.count == 1)
        #expect(records.first.map { $0.withUnsafeBytes { $0.loadUnaligned(as: EchoRecord.self) } } == EchoRecord(seq: 42, value: 4242))
        #expect(waited >= 150_000_000 && waited < 3_000_000_000, "poll returned after \(waited / 1_000_000) ms")

        // The epoll fd alone tells a caller's own loop that records wait.
        var ctx = EchoContext(seq: 43, value: 0)
        try #require(object.program(named: "echo_fixed")).run(context: &ctx)
        var pfd = pollfd(fd: ring.epollFD, events: Int16(POLLIN), revents: 0)
        #expect(Glibc.poll(&pfd, 1, 1000) == 1)
        #expect(try ring.drain(as: EchoRecord.self) == [EchoRecord(seq: 43, value: 0)])
        pfd.revents = 0
        #expect(Glibc.poll(&pfd, 1, 0) == 0, "the epoll fd stays readable after a drain")
    }
}
