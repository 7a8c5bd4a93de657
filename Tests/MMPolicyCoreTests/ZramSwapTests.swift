import MMPolicyCore
import MMPolicyTestSupport
import SystemPackage
import Testing

/// The parts of zram swap set-up that need no kernel: sizes, comp_algorithm,
/// device names, the swap header, the journal record, the checks before a
/// device is touched and what their errors say.
@Suite struct ZramSwapTests {
    static let mib: UInt64 = 1 << 20, gib: UInt64 = 1 << 30

    // MARK: sizes

    static let sizes: [(String, UInt64)] = [
        ("1G", gib), ("1g", gib), ("1GiB", gib), ("1GB", gib), ("512M", 512 * mib), ("512MiB", 512 * mib),
        ("2048k", 2 * mib), ("1T", 1024 * gib), ("1073741824", gib), ("100B", 100), (" 4G\n", 4 * gib),
        ("1.5G", 3 * gib / 2), ("0.5M", mib / 2), ("1.25k", 1280),
    ]

    @Test(arguments: sizes)
    func parsesSizes(text: String, bytes: UInt64) {
        #expect(ByteSize(parsing: text)?.bytes == bytes, "\(text)")
    }

    @Test(arguments: ["", "G", "1X", "-1G", "1 G", "1.G", ".5G", "1.5", "1iB", "one", "1e9", "20000000000T", "18446744073709551616"])
    func refusesWhatIsNotASize(text: String) {
        #expect(ByteSize(parsing: text) == nil, "\(text)")
    }

    @Test func printsSizesInBinaryUnits() {
        #expect(ByteSize(bytes: Self.gib).description == "1.0 GiB")
        #expect(ByteSize(bytes: 512 * Self.mib).description == "512.0 MiB")
        #expect(ByteSize(bytes: 1536).description == "1.5 KiB")
        #expect(ByteSize(bytes: 100).description == "100 B")
        #expect(ByteSize(bytes: 4097).roundedUp(to: 4096).bytes == 8192)
        #expect(ByteSize(bytes: 8192).roundedUp(to: 4096).bytes == 8192)
    }

    // MARK: devices and algorithms

    @Test func namesDevices() {
        #expect(ZramDevice(naming: "/dev/zram3") == ZramDevice(number: 3))
        #expect(ZramDevice(naming: "zram12")?.path == "/dev/zram12")
        #expect(ZramDevice(naming: "7")?.sysfs == "/sys/block/zram7")
        for bad in ["/dev/sda", "zram", "/dev/zram", "zram-1", "zram1a", "/dev/zram1/", ""] {
            #expect(ZramDevice(naming: bad) == nil, "\(bad)")
        }
    }

    @Test func readsCompAlgorithm() {
        let text = ZramAlgorithms(parsing: "lzo [lzo-rle] lz4 lz4hc 842 zstd \n")
        #expect(text.available == ["lzo", "lzo-rle", "lz4", "lz4hc", "842", "zstd"])
        #expect(text.selected == "lzo-rle")
        #expect(ZramAlgorithms(parsing: "[lz4]\n") == ZramAlgorithms(available: ["lz4"], selected: "lz4"))
        #expect(ZramAlgorithms(parsing: "lzo lz4\n").selected == nil)
    }

    // MARK: the swap header

    @Test func writesTheSwapHeaderWhereTheKernelReadsIt() {
        let header = SwapHeader.forArea(sizeBytes: 256 * Self.mib, pageSize: 4096)
        let page = header.bytes
        #expect(page.count == 4096)
        #expect(Array(page[4086..<4096]) == Array("SWAPSPACE2".utf8), "the magic ends the page")
        func word(_ offset: Int) -> UInt32 { page[offset..<offset + 4].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } }
        #expect(word(1024) == 1, "version 1")
        #expect(word(1028) == 65_535, "last_page: 65536 pages, the first is the header")
        #expect(word(1032) == 0, "no bad pages")
        #expect(Array(page[1036..<1052]) == header.uuid)
        #expect(Array(page[1052..<1060]) == Array("mmpolicy".utf8) && page[1060] == 0, "the label")
        #expect(page[0..<1024].allSatisfy { $0 == 0 }, "the boot block is cleared")
        #expect(header.uuid[6] >> 4 == 4 && header.uuid[8] >> 6 == 2, "a version 4 UUID")
        #expect(SwapHeader(parsing: page, pageSize: 4096) == header, "it reads back")
    }

    @Test func readsOnlyAVersion1SwapArea() {
        let page = SwapHeader.forArea(sizeBytes: 64 * Self.mib, pageSize: 4096).bytes
        #expect(SwapHeader(parsing: [UInt8](repeating: 0, count: 4096), pageSize: 4096) == nil, "no magic: a reset device")
        #expect(SwapHeader(parsing: [], pageSize: 4096) == nil, "nothing read: a device without a size")
        #expect(SwapHeader(parsing: Array(page.prefix(2048)), pageSize: 4096) == nil)
        var old = page
        old.replaceSubrange(4086..<4096, with: Array("SWAP-SPACE".utf8))
        #expect(SwapHeader(parsing: old, pageSize: 4096) == nil, "the version 0 magic")
        var other = page
        other[1024] = 2
        #expect(SwapHeader(parsing: other, pageSize: 4096) == nil, "another version")
    }

    @Test func writesAndReadsUUIDs() {
        let uuid: [UInt8] = [0x1b, 0x4e, 0x28, 0xba, 0x2f, 0xa1, 0x41, 0xd2, 0x88, 0x3f, 0x00, 0x16, 0xd3, 0xcc, 0xa4, 0x27]
        #expect(SwapHeader.uuidString(uuid) == "1b4e28ba-2fa1-41d2-883f-0016d3cca427")
        #expect(SwapHeader.uuid(parsing: "1b4e28ba-2fa1-41d2-883f-0016d3cca427") == uuid)
        #expect(SwapHeader.uuid(parsing: "1b4e28ba-2fa1-41d2-883f") == nil)
        #expect(SwapHeader.uuid(parsing: "zz4e28ba-2fa1-41d2-883f-0016d3cca427") == nil)
        let a = SwapHeader.forArea(sizeBytes: Self.mib, pageSize: 4096), b = SwapHeader.forArea(sizeBytes: Self.mib, pageSize: 4096)
        #expect(a.uuid != b.uuid, "each area gets a UUID of its own")
    }

    // MARK: the journal record

    @Test func theJournalRecordReadsBack() throws {
        let record = ZramSwapRecord(device: ZramDevice(number: 5), hotAdded: true, uuid: "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
                                    sizeBytes: Self.gib, algorithm: "lz4", priority: 100)
        #expect(record.journalKey == "zram-swap:/dev/zram5")
        #expect(record.journalText == "hot_added=1 uuid=1b4e28ba-2fa1-41d2-883f-0016d3cca427 algorithm=lz4 disksize=1073741824 priority=100")
        #expect(ZramSwapRecord(journalKey: record.journalKey, text: record.journalText) == record)
        let entry = KnobJournalEntry(path: record.journalKey, original: record.journalText, owner: "p", recordedNs: 1)
        #expect(ZramSwapRecord(entry) == record)
        #expect(ZramSwapRecord.isJournalKey("zram-swap:/dev/zram5") && !ZramSwapRecord.isJournalKey("/sys/block/zram5/disksize"))
        #expect(record.summary == "/dev/zram5 (added by mmpolicy): 1.0 GiB, lz4, priority 100")
    }

    @Test func aJournalEntryThatIsNotARecordIsNotReadAsOne() {
        let key = "zram-swap:/dev/zram5"
        #expect(ZramSwapRecord(journalKey: "/proc/sys/vm/swappiness", text: "60") == nil)
        #expect(ZramSwapRecord(journalKey: "zram-swap:/dev/sda", text: "hot_added=1") == nil)
        #expect(ZramSwapRecord(journalKey: key, text: "60") == nil)
        #expect(ZramSwapRecord(journalKey: key, text: "hot_added=2 uuid=1b4e28ba-2fa1-41d2-883f-0016d3cca427 algorithm=lz4 disksize=1 priority=1") == nil)
        #expect(ZramSwapRecord(journalKey: key, text: "hot_added=1 uuid=nope algorithm=lz4 disksize=1 priority=1") == nil)
        #expect(ZramSwapRecord(journalKey: key, text: "hot_added=1 uuid=1b4e28ba-2fa1-41d2-883f-0016d3cca427 algorithm=lz4 priority=1") == nil)
    }

    // MARK: checks and their errors

    @Test func aRequestIsCheckedBeforeAnyDeviceIsTouched() throws {
        let memTotal = 8 * Self.gib
        try ZramSwapRequest(size: ByteSize(bytes: 2 * Self.gib)).check(memTotal: memTotal)
        try ZramSwapRequest(size: ByteSize(bytes: memTotal), priority: 32767).check(memTotal: memTotal)

        let large = #expect(throws: ZramError.self) { try ZramSwapRequest(size: ByteSize(bytes: 16 * Self.gib)).check(memTotal: memTotal) }
        #expect(large?.reason == .sizeTooLarge(requested: 16 * Self.gib, memTotal: memTotal))
        let text = large?.description ?? ""
        #expect(text.contains("16.0 GiB is more than this machine's memory (MemTotal 8.0 GiB)") && text.contains("Use at most 8.0 GiB"), "\(text)")

        let small = #expect(throws: ZramError.self) { try ZramSwapRequest(size: ByteSize(bytes: 4096)).check(memTotal: memTotal) }
        #expect(small?.description == "zram size 4.0 KiB is too small for a swap area: use at least 1.0 MiB.")

        let priority = #expect(throws: ZramError.self) {
            try ZramSwapRequest(size: ByteSize(bytes: Self.gib), priority: 40000).check(memTotal: memTotal)
        }
        #expect(priority?.description.contains("swap priority 40000 is out of range: use 0 to 32767") == true)
        #expect(throws: ZramError.self) { try ZramSwapRequest(size: ByteSize(bytes: Self.gib), priority: -1).check(memTotal: memTotal) }
    }

    @Test func errorsNameTheThingAndTheFix() {
        let algorithm = ZramError(.algorithmUnavailable(requested: "zstd", available: ["lzo", "lzo-rle", "lz4"]),
                                  path: "/sys/block/zram1/comp_algorithm").description
        #expect(algorithm.contains("'zstd' is not available") && algorithm.contains("offers lzo, lzo-rle, lz4") && algorithm.contains("--algorithm"),
                "\(algorithm)")
        let busy = ZramError(.deviceBusy("it is an active swap area already (/proc/swaps)"), path: "/dev/zram0").description
        #expect(busy.hasPrefix("/dev/zram0 is busy: it is an active swap area already") && busy.contains("leave the device out"), "\(busy)")
        #expect(busy.contains("echo 1 > /sys/block/zram0/reset"), "\(busy)")
        let notOurs = ZramError(.notSetUpByMMPolicy(setUp: ["/dev/zram2"]), path: "/dev/zram0").description
        #expect(notOurs.hasPrefix("/dev/zram0 was not set up by mmpolicy (it has set up /dev/zram2), so mmpolicy will not touch it"), "\(notOurs)")
        let policy = ZramError(.ownedByPolicy("tier_cold"), path: "/dev/zram2").description
        #expect(policy.contains("tiering policy 'tier_cold'") && policy.contains("`mmpolicy unload tier_cold`"), "\(policy)")
        let last = ZramError(.lastSwapOfPolicies(["a", "b"]), path: "/dev/zram2").description
        #expect(last.contains("last active swap area and tiering policies 'a', 'b' rely on it") && last.contains("nothing was torn down"), "\(last)")
        #expect(ZramError(.whichDevice(setUp: []), path: "").description.contains("has set up no zram device"))
        #expect(ZramError(.whichDevice(setUp: ["/dev/zram1", "/dev/zram2"]), path: "").description
            .contains("name the one to tear down, e.g. `mmpolicy tier teardown-zram /dev/zram1`"))
        let swapoff = ZramError(.systemCall(operation: "swapoff of"), path: "/dev/zram1", errno: .noMemory).description
        #expect(swapoff.hasPrefix("swapoff of /dev/zram1 failed: Cannot allocate memory (errno 12).") && swapoff.contains("not enough free memory"),
                "\(swapoff)")
        let swapon = ZramError(.systemCall(operation: "swapon (priority 100) of"), path: "/dev/zram1", errno: .notPermitted).description
        #expect(swapon.contains("(errno 1)") && swapon.contains("more than 32 swap areas"), "\(swapon)")
        let unreadable = ZramError(.journal("disk full"), path: "/dev/zram1").description
        #expect(unreadable.contains("(disk full), so nothing was changed"), "\(unreadable)")
        #expect(ZramError(.sizeNotUnderstood("lots"), path: "zram size").description
            == "zram size 'lots' is not a size: use \(ByteSize.rule).")
    }
}

/// How the knob journal keeps zram swap devices and operators' requests.
@Suite struct KnobJournalZramTests {
    /// A zram device number no machine has: its device counts as gone.
    static let absent = ZramDevice(number: 999_999)

    static func record(_ device: ZramDevice = absent) -> ZramSwapRecord {
        ZramSwapRecord(device: device, hotAdded: true, uuid: "1b4e28ba-2fa1-41d2-883f-0016d3cca427", sizeBytes: 1 << 30,
                       algorithm: "lz4", priority: 100)
    }

    @Test func aRestoreOfEverythingLeavesAnOperatorsRequestAlone() throws {
        let scratch = try ScratchDirectory()
        let knob = try scratch.write("knob", "5")
        let storage = InMemoryKnobJournalStorage()
        let journal = KnobJournal(storage: storage)
        try journal.write("7", to: knob, owner: "policy")
        let record = Self.record()
        _ = try storage.journalOriginal(path: record.journalKey, original: record.journalText, owner: KnobJournal.operatorOwner)

        let everything = journal.restoreReporting()
        #expect(everything.restored.map(\.path) == [knob] && everything.failures.isEmpty)
        #expect(journal.entries().map(\.path) == [record.journalKey], "the operator's request stays journaled")
        #expect(journal.entries().first?.isOperatorRequest == true)

        let asked = journal.restoreReporting(owner: KnobJournal.operatorOwner)
        #expect(asked.vanished.map(\.path) == [record.journalKey], "restored when its owner is named: the device is gone")
        #expect(journal.entries().isEmpty)
    }

    @Test func aZramEntryIsRestoredByTearingItsDeviceDown() throws {
        let journal = KnobJournal(storage: InMemoryKnobJournalStorage())
        let record = Self.record()
        try journal.transaction { (journal: borrowing KnobJournalTransaction) throws(KnobError) in
            try journal.record(record.journalText, at: record.journalKey, owner: "tier_cold")
        }
        #expect(KnobJournal.writeBack(journal.entries()[0], journaled: []).vanished, "a device that is gone has nothing to undo")
        #expect(journal.restore(paths: [record.journalKey]).isEmpty)
        #expect(journal.entries().isEmpty)
    }

    @Test func aZramEntryThisBuildCannotReadStaysJournaled() throws {
        let storage = InMemoryKnobJournalStorage()
        _ = try storage.journalOriginal(path: "zram-swap:/dev/zram999999", original: "written by a future mmpolicy", owner: "p")
        let journal = KnobJournal(storage: storage)
        let failures = journal.restore()
        #expect(failures.count == 1 && failures[0].description.contains("is not one this mmpolicy wrote"), "\(failures)")
        #expect(journal.entries().count == 1)
    }

    @Test func aTransactionRecordsForgetsAndHandsOver() throws {
        let storage = InMemoryKnobJournalStorage()
        let journal = KnobJournal(storage: storage)
        let key = Self.record().journalKey
        try journal.transaction { (journal: borrowing KnobJournalTransaction) throws(KnobError) in
            try journal.record("first", at: key, owner: "a")
            #expect(try journal.entry(at: key)?.owner == "a")
            #expect(throws: KnobError.self, "an entry is never journaled twice") { try journal.record("second", at: key, owner: "b") }
            try journal.reassign(key, to: "b")
        }
        #expect(journal.entries(owner: "b").map(\.original) == ["first"], "handed over, original kept")
        try journal.transaction { (journal: borrowing KnobJournalTransaction) throws(KnobError) in try journal.forget(key) }
        #expect(journal.entries().isEmpty)
    }
}
