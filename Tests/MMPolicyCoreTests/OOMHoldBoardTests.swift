import MMPolicyCore
import Testing

/// The board the OOM engine, the guardian link and the guardian share.
struct OOMHoldBoardTests {
    @Test func holdsChangeOnlyWhenTheyDoAndSignalIt() throws {
        let board = try OOMHoldBoard()
        board.hold(root: "/m/job", boundNs: 1_000)
        #expect(board.holdsChanged.read() == 1)
        let first = board.currentHolds()
        board.hold(root: "/m/job", boundNs: 1_000)
        #expect(board.holdsChanged.read() == nil, "the same hold again changes nothing")
        #expect(board.currentHolds().generation == first.generation)
        board.hold(root: "/m/job", boundNs: 2_000)
        board.hold(root: "/m/a", boundNs: 3_000)
        #expect(board.currentHolds().holds == [.init(root: "/m/a", boundNs: 3_000), .init(root: "/m/job", boundNs: 2_000)])
        board.release(root: "/m/job")
        board.release(root: "/m/nothing")
        #expect(board.currentHolds().holds == [.init(root: "/m/a", boundNs: 3_000)])
    }

    @Test func anOnsetCountsOnlyForTheOOMItBegan() throws {
        let board = try OOMHoldBoard()
        #expect(board.onset(of: "/m/job", before: 10_000_000_000) == nil)
        board.noteOnset(memcg: "/m/job", onsetNs: 10_000_000_000)
        #expect(board.onset(of: "/m/job", before: 10_400_000_000) == 10_000_000_000, "a daemon 400 ms late")
        #expect(board.onset(of: "/m/job", before: 10_000_000_000 - 1_000_000) == 10_000_000_000,
                "both woke on the same notification: the guardian a little after the daemon")
        #expect(board.onset(of: "/m/job", before: 9_000_000_000) == nil, "a later OOM's onset is not an earlier decision's")
        #expect(board.onset(of: "/m/job", before: 100_000_000_000) == nil, "an onset a minute old belongs to another OOM")
        #expect(board.onset(of: "/m/other", before: 10_400_000_000) == nil)
    }

    @Test func handoversAreTakenOnce() throws {
        let board = try OOMHoldBoard()
        let handover = OOMHoldBoard.Handover(memcg: "/m/job", onsetNs: 5, handedNs: 1_000_000_005, killCount: 0)
        board.noteHandover(handover)
        #expect(board.takeHandovers() == [handover])
        #expect(board.takeHandovers().isEmpty)
        #expect(board.onset(of: "/m/job", before: 10) == 5, "a handover says when its OOM began")
    }
}

/// How a kind's status figures read.
struct KindFigureTests {
    @Test func figuresReadInTheirUnits() {
        #expect(KindFigure("demoted", 512 * 1_048_576, unit: "bytes").text == "demoted 512.0 MiB")
        #expect(KindFigure("saved", 3 * 1_073_741_824 / 2, unit: "bytes").text == "saved 1.5 GiB")
        #expect(KindFigure("saved", -2048, unit: "bytes").text == "saved -2.0 KiB")
        #expect(KindFigure("stored", 100, unit: "bytes").text == "stored 100 B")
        #expect(KindFigure("refaulted pages", 12, unit: "count").text == "refaulted pages 12")
        #expect(KindFigure("compression", 3.1, unit: "ratio").text == "compression 3.10x")
    }
}
