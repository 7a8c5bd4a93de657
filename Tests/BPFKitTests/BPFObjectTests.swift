import BPFKit
import CMMPolicyABI
import MMPolicyTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// BPFKit against the real kernel: open, inspect, parameterise, load, run.
@Suite struct BPFObjectTests {
    @Test func opensAPolicyObjectAndListsItsPrograms() throws {
        let object = try BPFObject(path: TestPaths.policyObject("oom_growth"))
        #expect(object.name == "oom_growth.bpf.o")
        let programs = Dictionary(uniqueKeysWithValues: object.programs.map { ($0.name, $0) })
        #expect(Set(programs.keys) == ["growth_rss_stat", "growth_select_victim"])
        #expect(programs["growth_select_victim"]?.type == .syscall)
        #expect(programs["growth_select_victim"]?.sectionName == "syscall")
        #expect(programs["growth_rss_stat"]?.type == .tracepoint)
        #expect(programs["growth_rss_stat"]?.sectionName == "tracepoint/kmem/rss_stat")
        #expect((programs["growth_select_victim"]?.instructionCount ?? 0) > 20)
        let growth = try #require(object.map(named: "growth_by_tgid"))
        #expect(growth.type == "lru_hash")
        #expect(growth.keySize == 4 && growth.valueSize == 72 && growth.maxEntries == 32768)
        #expect(growth.fd == nil)
    }

    @Test func readsParametersWithTheirBTFTypesAndDefaults() throws {
        let object = try BPFObject(path: TestPaths.fixture("params"))
        let params = Dictionary(uniqueKeysWithValues: object.parameters.map { ($0.name, $0) })
        #expect(params["p_u32"]?.type == .integer(bytes: 4, signed: false))
        #expect(params["p_s64"]?.type == .integer(bytes: 8, signed: true))
        #expect(params["p_bool"]?.type == .boolean)
        #expect(params["p_u8"]?.type == .integer(bytes: 1, signed: false))
        #expect(params["p_str"]?.type == .characters(capacity: 16))
        #expect(object.currentValue(of: params["p_u32"]!) == .integer(7))
        #expect(object.currentValue(of: params["p_s64"]!) == .integer(-5))
        #expect(object.currentValue(of: params["p_bool"]!) == .boolean(false))
        #expect(object.currentValue(of: params["p_str"]!) == .string("default"))
    }

    @Test func refusesParameterValuesThatDoNotFitTheirType() throws {
        let object = try BPFObject(path: TestPaths.fixture("params"))
        let cases: [(String, ParameterValue, String)] = [
            ("p_u32", .integer(-1), "out of its range"),
            ("p_u32", .integer(1 << 32), "out of its range"),
            ("p_u8", .integer(256), "Give an integer from 0 to 255"),
            ("p_bool", .integer(1), "is a bool, not a integer"),
            ("p_u32", .string("seven"), "is a u32, not a string"),
            ("p_str", .string(String(repeating: "x", count: 16)), "at most 15 bytes"),
            ("nope", .integer(1), "has no parameter 'nope'"),
        ]
        for (name, value, expected) in cases {
            let error = #expect(throws: BPFError.self) { try object.setParameter(name, to: value) }
            #expect(error?.operation == .setParameter)
            #expect(error?.description.contains(expected) == true, "\(name)=\(value): \(error?.description ?? "")")
        }
    }

    @Test func setParametersReachTheLoadedProgram() throws {
        let object = try BPFObject(path: TestPaths.fixture("params"))
        try object.setParameter("p_u32", to: .integer(4_000_000_000))
        try object.setParameter("p_s64", to: .integer(-1234567890123))
        try object.setParameter("p_bool", to: .boolean(true))
        try object.setParameter("p_u8", to: .integer(200))
        try object.setParameter("p_str", to: .string("Zebra"))
        try object.load()
        let program = try #require(object.programs.first { $0.type == .syscall })
        var ctx = mmpolicy_oom_ctx()
        let status = try program.run(context: &ctx)
        #expect(status == UInt32(MMPOLICY_DECIDED.rawValue))
        #expect(ctx.victim_tgid == 4_000_000_000)
        #expect(ctx.score == -1234567890123)
        #expect(ctx.flags == 1)
        #expect(ctx.reason == 200)
        #expect(ctx.candidates == UInt32(UInt8(ascii: "Z")))
        #expect(throws: BPFError.self) { try object.setParameter("p_u32", to: .integer(1)) }
    }

    @Test func reportsProgramInfoAfterLoad() throws {
        let object = try BPFObject(path: TestPaths.policyObject("oom_largest"))
        let program = try #require(object.program(named: "largest_select_victim"))
        #expect(throws: BPFError.self) { try program.info() }
        try object.load()
        let info = try program.info()
        #expect(info.verifiedInstructions > 50)
        #expect(info.id > 0 && info.jitedBytes > 0)
    }

    @Test func verifierRejectionNamesProgramLineAndMessage() throws {
        // Something already loaded must not be disturbed by the failure.
        let healthy = try BPFObject(path: TestPaths.policyObject("oom_largest"))
        try healthy.load()
        let bad = try BPFObject(path: TestPaths.fixture("verifier_reject"))
        let error = try #require(#expect(throws: BPFError.self) { try bad.load() })
        #expect(error.operation == .load)
        #expect(error.program == "reject_select_victim")
        let verdict = try #require(error.verifier)
        #expect(verdict.message.contains("invalid mem access") || verdict.message.contains("map_value_or_null"), "\(verdict.message)")
        #expect(verdict.location?.contains("verifier_reject.bpf.c") == true)
        #expect(verdict.sourceLine?.contains("*v") == true, "\(verdict.sourceLine ?? "")")
        #expect(!bad.isLoaded)
        #expect(bad.programs.allSatisfy { $0.fd == nil })
        var ctx = mmpolicy_oom_ctx()
        ctx.daemon_tgid = UInt32(getpid())
        try healthy.program(named: "largest_select_victim")!.run(context: &ctx)
        #expect(ctx.candidates > 0)
    }

    @Test func refusesBytesThatAreNotABPFObject() throws {
        let good = try readBytes(TestPaths.policyObject("oom_largest"))
        let cases: [([UInt8], String)] = [
            (Array(good.prefix(good.count / 2)), "truncated"),
            (Array(good.prefix(40)), "ELF header is incomplete"),
            (Array("#!/bin/sh\necho not a policy\n".utf8), "not an ELF file"),
            (try readBytes("/bin/true"), "machine 62 (x86-64), not for BPF"),
        ]
        for (bytes, expected) in cases {
            let error = #expect(throws: BPFError.self) { _ = try BPFObject(bytes: bytes, name: "bad.bpf.o") }
            #expect(error?.operation == .open)
            #expect(error?.description.contains(expected) == true, "\(error?.description ?? "no error")")
        }
        let missing = #expect(throws: BPFError.self) { _ = try BPFObject(path: "/nonexistent/x.bpf.o") }
        #expect(missing?.errno == .noSuchFileOrDirectory)
        #expect(missing?.description.contains("make build") == true)
    }

    @Test func openingFromBytesMatchesOpeningTheFile() throws {
        let object = try BPFObject(bytes: try readBytes(TestPaths.policyObject("oom_largest")), name: "copy.bpf.o")
        #expect(object.programs.map(\.name) == ["largest_select_victim"])
        try object.load()
        #expect(object.programs[0].fd != nil)
    }
}

func readBytes(_ path: String) throws -> [UInt8] {
    guard let file = fopen(path, "rb") else { throw BPFError(.read, object: path, reason: "cannot open") }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&chunk, 1, chunk.count, file)
        if n == 0 { return bytes }
        bytes.append(contentsOf: chunk[0..<n])
    }
}
