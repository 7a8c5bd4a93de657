import BPFKit
import CMMPolicyABI
import MMPolicyCore
import MMPolicyKinds
import MMPolicyTestSupport
import Testing

/// mmpolicy_error() in BPF and PolicyErrorReport in Swift, against the real
/// kernel: a callback reports why it failed, the daemon reads it back.
@Suite struct PolicyErrorReportTests {
    private func loaded(_ fixture: String, _ overrides: [(String, ParameterValue)] = []) throws -> Policy {
        let policy = try Policy.open(objectPath: TestPaths.fixture(fixture), kinds: .builtIn, overrides: overrides)
        try policy.load()
        return policy
    }

    /// Runs the policy's select_victim once; returns its status as the signed value the program returned.
    private func selectVictim(_ policy: Policy, daemonTgid: UInt32, limitBytes: UInt64) throws -> Int32 {
        let program = try #require(policy.ops.program(for: "select_victim").flatMap { policy.object.program(named: $0) })
        var ctx = mmpolicy_oom_ctx()
        ctx.abi_version = mmpolicyABIVersion
        ctx.daemon_tgid = daemonTgid
        ctx.limit_bytes = limitBytes
        return Int32(bitPattern: try program.run(context: &ctx))
    }

    @Test func aFailingCallbackSaysWhyAndCountsEachReport() throws {
        let policy = try loaded("report_error")
        #expect(try policy.errorReport() == nil, "nothing is reported before the first run")

        let before = monotonicNanoseconds()
        #expect(try selectVictim(policy, daemonTgid: 4242, limitBytes: 1 << 30) == -22, "mmpolicy_error() returns its code")
        let first = try #require(try policy.errorReport())
        #expect(first.code == -22)
        #expect(first.message == "no victim for daemon 4242 under a 1073741824-byte limit")
        #expect(first.count == 1)
        #expect(first.timeNs >= before && first.timeNs <= monotonicNanoseconds(), "bpf_ktime_get_ns is CLOCK_MONOTONIC")

        #expect(try selectVictim(policy, daemonTgid: 7, limitBytes: 4096) == -22)
        let second = try #require(try policy.errorReport(clear: true))
        #expect(second.count == 2)
        #expect(second.message == "no victim for daemon 7 under a 4096-byte limit", "the latest report's message")
        #expect(second.timeNs >= first.timeNs)
        #expect(try policy.errorReport() == nil, "clearing empties the report")

        #expect(try selectVictim(policy, daemonTgid: 9, limitBytes: 1) == -22)
        #expect(try policy.errorReport()?.count == 1, "counting starts again after a clear")
    }

    @Test func aMessageWithoutArgumentsAndOneTooLongToKeep() throws {
        let plain = try loaded("report_error", [("variant", .integer(1))])
        #expect(try selectVictim(plain, daemonTgid: 1, limitBytes: 1) == -2)
        #expect(try plain.errorReport() == PolicyErrorReport(code: -2, message: "nothing to format", timeNs: plain.errorReport()?.timeNs ?? 0, count: 1))

        let long = try loaded("report_error", [("variant", .integer(2))])
        #expect(try selectVictim(long, daemonTgid: 1, limitBytes: 5) == -7)
        let report = try #require(try long.errorReport())
        let full = "long: " + Array(repeating: "0123456789", count: 12).joined(separator: " ") + " (limit 5)"
        #expect(report.message == String(full.prefix(Int(MMPOLICY_EXIT_MSG_LEN) - 1)), "bpf_snprintf keeps 127 bytes and the NUL")
    }

    @Test func aCallbackThatDoesNotFailReportsNothing() throws {
        let declining = try loaded("report_error", [("decline", .integer(1))])
        #expect(try selectVictim(declining, daemonTgid: 1, limitBytes: 1) == Int32(MMPOLICY_NO_DECISION.rawValue))
        #expect(try declining.errorReport() == nil)

        // Every object built with common.bpf.h has the map; one that never calls mmpolicy_error() leaves it empty.
        let echo = try loaded("echo_ctx")
        #expect(echo.object.map(named: PolicyErrorReport.mapName)?.valueSize == MemoryLayout<mmpolicy_exit_info>.size)
        #expect(try selectVictim(echo, daemonTgid: 1, limitBytes: 1) == Int32(MMPOLICY_DECIDED.rawValue))
        #expect(try echo.errorReport() == nil)
    }

    @Test func anObjectWithoutTheMapReadsNil() throws {
        // kill_clock is built without mmpolicy's prelude: no mmpolicy_exit map at all.
        let object = try BPFObject(path: TestPaths.objectDirectory + "/bench/kill_clock.bpf.o")
        #expect(object.map(named: PolicyErrorReport.mapName) == nil)
        try object.load()
        #expect(try PolicyErrorReport.read(from: object) == nil)
    }

    @Test func aMessageWithoutItsNULIsReadToTheABILength() {
        var info = mmpolicy_exit_info()
        info.code = -12
        info.count = 3
        info.time_ns = 99
        withUnsafeMutableBytes(of: &info.message) { bytes in
            for i in bytes.indices { bytes[i] = UInt8(ascii: "x") } // no NUL, as a torn write could leave it
        }
        let report = PolicyErrorReport(info)
        #expect(report == PolicyErrorReport(code: -12, message: String(repeating: "x", count: Int(MMPOLICY_EXIT_MSG_LEN)), timeNs: 99, count: 3))
        #expect(PolicyErrorReport(mmpolicy_exit_info()) == nil)
    }

    @Test func aTestKindTakesAnIdFromTheReservedRangeAndIsRefused() throws {
        let object = try BPFObject(path: TestPaths.fixture("test_kind"))
        let header = try #require(object.elf.section(named: MMPOLICY_HEADER_SECTION))
        let bytes = Array(header.data)
        #expect(bytes.count == MemoryLayout<mmpolicy_header>.size)
        let kind = UInt32(bytes[4]) | UInt32(bytes[5]) << 8 | UInt32(bytes[6]) << 16 | UInt32(bytes[7]) << 24
        #expect(kind == UInt32(MMPOLICY_KIND_TEST_FIRST.rawValue) + 1)
        let error = #expect(throws: OpsTableError.self) { try OpsTable(reading: object, kinds: .builtIn) }
        #expect(error?.reason.contains("kind \(kind)") == true, "\(error?.description ?? "")")
    }
}
