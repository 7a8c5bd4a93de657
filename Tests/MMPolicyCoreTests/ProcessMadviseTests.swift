@testable import MMPolicyCore
import SystemPackage
import Testing

/// ProcessMadvise's loop against a scripted kernel that behaves like
/// mm/madvise.c's vector_madvise (measured on 6.18: ranges in order; on an
/// error, the bytes of the ranges finished before it, or the errno if none;
/// at most ~2 GiB per call): batching, partial progress, which errors skip a
/// range and which stop.
@Suite struct ProcessMadviseTests {
    static let page: UInt64 = 4096

    /// A fake kernel: `failing` maps a range start to the errno it gives.
    final class ScriptedKernel {
        var failing: [UInt64: Errno] = [:]
        var adviceRefused = false
        var maxBytesPerCall: UInt64 = 0x7fff_f000
        var calls: [[AddressRange]] = []
        var again = 0  // EAGAIN for this many calls

        func call(_ batch: [AddressRange]) -> ProcessMadvise.CallResult {
            calls.append(batch)
            #expect(batch.count <= ProcessMadvise.maxRangesPerCall)
            if adviceRefused { return .failed(.invalidArgument) }
            if again > 0 { again -= 1; return .failed(.resourceTemporarilyUnavailable) }
            if batch.contains(where: { failing[$0.start] == .badAddress }) { return .failed(.badAddress) }
            var done: UInt64 = 0
            for range in batch {
                if let code = failing[range.start] { return done > 0 ? .advised(done) : .failed(code) }
                if done + range.length > maxBytesPerCall { return .advised(maxBytesPerCall) }  // import_iovec truncates
                done += range.length
            }
            return .advised(done)
        }

        func advise(_ ranges: [AddressRange]) -> MadviseOutcome {
            ProcessMadvise.advise(ranges: ranges, advice: .pageOut, pid: 42, pageSize: ProcessMadviseTests.page) { self.call($0) }
        }
    }

    static func pages(_ count: Int, from base: UInt64 = 0x7f00_0000_0000) -> [AddressRange] {
        (0..<UInt64(count)).map { AddressRange(start: base + $0 * 2 * page, length: page) }
    }

    @Test func everythingAdvisedInOneCall() {
        let kernel = ScriptedKernel()
        let outcome = kernel.advise(Self.pages(3))
        #expect(outcome.bytes == 3 * Self.page && outcome.isComplete && outcome.calls == 1)
        #expect(outcome.failedRanges == 0 && !outcome.stoppedEarly && outcome.failedRange == nil)
    }

    @Test func batchesAtMost1024RangesPerCall() {
        let kernel = ScriptedKernel()
        let outcome = kernel.advise(Self.pages(2500))
        #expect(outcome.bytes == 2500 * Self.page && outcome.isComplete)
        #expect(kernel.calls.map(\.count) == [1024, 1024, 452])
        #expect(outcome.calls == 3)
        #expect(kernel.calls.flatMap { $0 } == Self.pages(2500), "every range once, in order")
    }

    @Test func aRangeThatIsNotMappedIsSkippedAndTheRestAdvised() {
        let kernel = ScriptedKernel()
        let ranges = Self.pages(5)
        kernel.failing[ranges[2].start] = .noMemory
        let outcome = kernel.advise(ranges)
        #expect(outcome.bytes == 4 * Self.page, "partial progress kept, later ranges done")
        #expect(outcome.error?.errno == .noMemory)
        #expect(outcome.failedRange == ranges[2] && outcome.failedRangeIndex == 2 && outcome.failedRanges == 1)
        #expect(!outcome.stoppedEarly)
        // Call 1 advised ranges 0-1 and stopped; call 2 began with range 2 and failed; call 3 did 3-4.
        #expect(kernel.calls.map(\.count) == [5, 3, 2])
        let text = outcome.error?.description ?? ""
        #expect(text.contains("process_madvise(MADV_PAGEOUT)") && text.contains("process 42") && text.contains("#2 of 5"), "\(text)")
        #expect(text.contains("not mapped") && text.contains("anonymousRanges"), "\(text)")
    }

    @Test func theFirstFailureIsReportedAndEveryOneCounted() {
        let kernel = ScriptedKernel()
        let ranges = Self.pages(6)
        kernel.failing[ranges[1].start] = .noMemory
        kernel.failing[ranges[4].start] = .noMemory
        let outcome = kernel.advise(ranges)
        #expect(outcome.bytes == 4 * Self.page)
        #expect(outcome.failedRangeIndex == 1 && outcome.failedRanges == 2)
    }

    @Test func aGoneProcessStopsTheWork() {
        let kernel = ScriptedKernel()
        let ranges = Self.pages(4)
        kernel.failing[ranges[2].start] = .noSuchProcess
        kernel.failing[ranges[3].start] = .noMemory  // never reached
        let outcome = kernel.advise(ranges)
        #expect(outcome.bytes == 2 * Self.page)
        #expect(outcome.error?.errno == .noSuchProcess && outcome.stoppedEarly)
        #expect(outcome.failedRange == nil && outcome.failedRangeIndex == 2, "where it stopped")
        #expect(outcome.error?.description.contains("has exited") == true)
        #expect(kernel.calls.count == 2)
    }

    @Test func permissionErrorsStopAndSayWhatIsNeeded() {
        for (code, words) in [(Errno.notPermitted, "CAP_SYS_NICE"), (.permissionDenied, "ptrace"), (.noFunction, "5.10")] {
            let kernel = ScriptedKernel()
            let ranges = Self.pages(3)
            kernel.failing[ranges[0].start] = code
            let outcome = kernel.advise(ranges)
            #expect(outcome.bytes == 0 && outcome.stoppedEarly && outcome.error?.errno == code)
            #expect(outcome.error?.description.contains(words) == true, "\(outcome.error!)")
            #expect(kernel.calls.count == 1)
        }
    }

    @Test func refusedAdviceIsToldFromARefusedRangeByAnEmptyCall() {
        let refused = ScriptedKernel()
        refused.adviceRefused = true
        let outcome = refused.advise(Self.pages(3))
        #expect(outcome.stoppedEarly && outcome.error?.errno == .invalidArgument && outcome.failedRange == nil)
        #expect(outcome.error?.description.contains("does not take MADV_PAGEOUT for another process") == true, "\(outcome.error!)")
        #expect(refused.calls.map(\.count) == [3, 0])

        // An mlocked range gives EINVAL too, but an empty call passes: only that range is skipped.
        let locked = ScriptedKernel()
        let ranges = Self.pages(3)
        locked.failing[ranges[0].start] = .invalidArgument
        let skipped = locked.advise(ranges)
        #expect(!skipped.stoppedEarly && skipped.failedRangeIndex == 0 && skipped.bytes == 2 * Self.page)
        #expect(skipped.error?.description.contains("mlocked") == true)
        #expect(locked.calls.map(\.count) == [3, 0, 2])
    }

    @Test func aBadAddressInABatchIsFoundRangeByRange() {
        // import_iovec refuses the whole batch when any range is outside user space.
        let kernel = ScriptedKernel()
        let ranges = Self.pages(4)
        kernel.failing[ranges[2].start] = .badAddress
        let outcome = kernel.advise(ranges)
        #expect(outcome.bytes == 3 * Self.page && outcome.failedRangeIndex == 2 && outcome.error?.errno == .badAddress)
        #expect(kernel.calls.map(\.count) == [4, 1, 1, 1, 1])
    }

    @Test func misalignedAndEmptyRangesNeverReachTheKernel() {
        let kernel = ScriptedKernel()
        let ranges = [
            AddressRange(start: 0x10_0000, length: Self.page),
            AddressRange(start: 0x20_0001, length: Self.page),
            AddressRange(start: 0x30_0000, length: 0),
            AddressRange(start: 0x40_0000, length: 2 * Self.page),
        ]
        let outcome = kernel.advise(ranges)
        #expect(outcome.bytes == 3 * Self.page)
        #expect(outcome.failedRangeIndex == 1 && outcome.failedRanges == 1 && outcome.error?.errno == .invalidArgument)
        #expect(outcome.error?.description.contains("page size") == true)
        #expect(kernel.calls == [[ranges[0]], [ranges[3]]])
    }

    @Test func aCallThatStopsInsideAHugeRangeIsContinued() {
        // ~2 GiB per call: a 5 GiB range takes three calls, the last two starting mid-range.
        let kernel = ScriptedKernel()
        let huge = AddressRange(start: 0x7f00_0000_0000, length: 5 << 30)
        let small = AddressRange(start: 0x7f10_0000_0000, length: Self.page)
        let outcome = kernel.advise([huge, small])
        #expect(outcome.bytes == (5 << 30) + Self.page && outcome.isComplete)
        #expect(kernel.calls.count == 3)
        #expect(kernel.calls[1][0].start == huge.start + 0x7fff_f000 && kernel.calls[1].count == 2)
        #expect(kernel.calls[2][0].start == huge.start + 2 * 0x7fff_f000 && kernel.calls[2][0].end == huge.end)
    }

    @Test func temporaryUnavailabilityIsRetried() {
        let kernel = ScriptedKernel()
        kernel.again = 2
        let outcome = kernel.advise(Self.pages(2))
        #expect(outcome.isComplete && outcome.bytes == 2 * Self.page && kernel.calls.count == 3)

        let stuck = ScriptedKernel()
        stuck.again = 100
        let gaveUp = stuck.advise(Self.pages(2))
        #expect(gaveUp.error?.errno == .resourceTemporarilyUnavailable && gaveUp.failedRanges == 2)
    }

    @Test func noRangesMeansNoCall() {
        let kernel = ScriptedKernel()
        let outcome = kernel.advise([])
        #expect(outcome.isComplete && outcome.bytes == 0 && kernel.calls.isEmpty)
    }

    @Test func adviceValuesAreTheKernels() {
        #expect(MemoryAdvice.cold.rawValue == 20 && MemoryAdvice.pageOut.rawValue == 21 && MemoryAdvice.willNeed.rawValue == 3)
        #expect(MemoryAdvice.willNeed.description == "MADV_WILLNEED")
    }
}
