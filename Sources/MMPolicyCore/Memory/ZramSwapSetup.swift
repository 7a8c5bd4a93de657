import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Sets up a zram swap device and tears it down again, exactly: the slow
/// tier a tiering policy needs, for an operator who asks (`mmpolicy tier
/// setup-zram`) or for a policy whose manifest asks (`[tiering] setup_zram`).
///
/// Set-up, under the knob journal's lock (``KnobJournal/transaction(_:)``),
/// so no other set-up, teardown or restore interleaves:
/// 1. pick the device: one of mmpolicy's own (hot_add) where the kernel can
///    add devices, else the first free one (disksize 0, not swap); or the
///    device named, if it is free;
/// 2. journal it, durably (``ZramSwapRecord``: which device, whether it was
///    added, the UUID its swap area will carry), before changing it;
/// 3. select the algorithm, set the size, write the swap header
///    (``SwapHeader``), swapon(2) at the priority.
/// Any failure undoes what was done (the added device removed, or the
/// device reset if mmpolicy had set its size) and forgets the entry.
///
/// Teardown touches only a device that still holds the swap area mmpolicy
/// wrote (its UUID): swapoff(2), then remove the device if mmpolicy added it,
/// else reset it, leaving it as it was found. A device that is gone or
/// holds something else is left alone.
public enum ZramSwapSetup {
    /// What a teardown found.
    public enum Teardown: Sendable, Equatable {
        /// Swapped off and removed (or reset).
        case tornDown
        /// Nothing of mmpolicy's was there any more (why), and nothing was touched.
        case gone(String)
    }

    static var pageSize: Int { Int(ProcessSnapshot.pageSize) }

    /// Sets up `request`, journaled under `owner`; the record of what was
    /// set up.
    public static func setUp(_ request: ZramSwapRequest, owner: String, journal: KnobJournal) throws(ZramError) -> ZramSwapRecord {
        let memTotal: UInt64
        do { memTotal = try MemInfo.read().memTotal } catch { throw .file("reading", error) }
        try request.check(memTotal: memTotal)
        let size = request.size.roundedUp(to: UInt64(pageSize))
        return try journal.transaction { (journal: borrowing KnobJournalTransaction) throws(ZramError) -> ZramSwapRecord in
            let (device, added) = try claim(request.device)
            var journaled = false, sized = false
            do throws(ZramError) {
                let algorithms = try device.algorithms()
                guard algorithms.available.contains(request.algorithm) else {
                    throw ZramError(.algorithmUnavailable(requested: request.algorithm, available: algorithms.available),
                                    path: device.sysfs + "/comp_algorithm")
                }
                let header = SwapHeader.forArea(sizeBytes: size.bytes, pageSize: pageSize)
                let record = ZramSwapRecord(device: device, hotAdded: added, uuid: header.uuidString, sizeBytes: size.bytes,
                                            algorithm: request.algorithm, priority: request.priority)
                do throws(KnobError) {
                    // An entry left for a device that is free now (it was reset or removed
                    // by someone else since) records nothing that is still there.
                    if try journal.entry(at: record.journalKey) != nil { try journal.forget(record.journalKey) }
                    try journal.record(record.journalText, at: record.journalKey, owner: owner)
                } catch {
                    throw ZramError(.journal(error.description), path: device.path)
                }
                journaled = true
                try configure(device, record, header, sized: &sized)
                return record
            } catch {
                if added {
                    try? device.remove()
                } else if sized {
                    try? device.reset()
                }
                // If this fails the entry stays; a later restore finds the device free of
                // mmpolicy's swap area and forgets it.
                if journaled { try? journal.forget(ZramSwapRecord.journalKey(device)) }
                throw error
            }
        }
    }

    /// How long a teardown asked for (an operator's, a policy's unload)
    /// keeps trying a swapoff that fails with ENOMEM.
    public static let requestPatienceMs = 5_000

    /// Tears down what `record` set up, if it is still there. A swapoff that
    /// fails with ENOMEM is tried again every 250 ms for `patienceMs`: pages
    /// charged to a memory cgroup at its limit cannot come back until that
    /// group has room, which its reclaim or an exiting process often makes
    /// soon. Restores of everything (the guardian, a start, a shutdown) use
    /// none: they must not hold the state directory's lock for long, and the
    /// entry stays journaled for the next one.
    public static func tearDown(_ record: ZramSwapRecord, patienceMs: Int = 0) throws(ZramError) -> Teardown {
        let device = record.device
        guard device.exists else { return .gone("\(device.path) no longer exists") }
        guard try holdsArea(of: record) else {
            return .gone("\(device.path) no longer holds the swap area mmpolicy made (UUID \(record.uuid)): someone else reset or reused it, so it was left alone")
        }
        if try SwapArea.isActive(device.path) {
            var waitedMs = 0
            while true {
                do throws(ZramError) {
                    try SwapArea.off(device.path)
                    break
                } catch where error.errno == .noMemory && waitedMs < patienceMs {
                    usleep(250_000)
                    waitedMs += 250
                }
            }
        }
        if record.hotAdded { try device.remove() } else { try device.reset() }
        return .tornDown
    }

    /// Tears down the device `record` journals and forgets its entry, under
    /// the journal's lock: for a teardown asked for (``requestPatienceMs``).
    /// Throws ``ZramError/Reason/notSetUpByMMPolicy(setUp:)`` when the entry
    /// is no longer there, or no longer `owner`'s (another teardown was first).
    public static func tearDownJournaled(_ record: ZramSwapRecord, owner: String, journal: KnobJournal,
                                         patienceMs: Int = requestPatienceMs) throws(ZramError) -> Teardown {
        try journal.transaction { (journal: borrowing KnobJournalTransaction) throws(ZramError) -> Teardown in
            guard (try? journal.entry(at: record.journalKey))?.owner == owner else {
                throw ZramError(.notSetUpByMMPolicy(setUp: []), path: record.device.path)
            }
            let outcome = try tearDown(record, patienceMs: patienceMs)
            do throws(KnobError) { try journal.forget(record.journalKey) } catch {
                throw ZramError(.journal("it was torn down, but its journal entry could not be forgotten (\(error)); the next teardown or restore forgets it"),
                                path: record.device.path)
            }
            return outcome
        }
    }

    /// Whether `record`'s device still holds the swap area mmpolicy wrote.
    public static func holdsArea(of record: ZramSwapRecord) throws(ZramError) -> Bool {
        let page: [UInt8]
        do {
            let file = try BlockDeviceFile(path: record.device.path, writable: false)
            page = try file.read(count: pageSize, at: 0)
        } catch where error.errno == .noSuchFileOrDirectory || error.errno == .noSuchAddressOrDevice {
            return false
        }
        return SwapHeader(parsing: page, pageSize: pageSize)?.uuidString == record.uuid
    }

    /// Whether `device` is free: not set up (disksize 0) and not swap.
    public static func isFree(_ device: ZramDevice) -> Bool {
        (try? checkFree(device)) != nil
    }

    // MARK: steps

    /// The device to use, and whether it was added for this.
    static func claim(_ choice: ZramSwapRequest.DeviceChoice) throws(ZramError) -> (ZramDevice, Bool) {
        switch choice {
        case .new:
            return (try ZramDevice.add(), true)
        case .any:
            if ZramDevice.canAddDevices { return (try ZramDevice.add(), true) }
            let existing = ZramDevice.all()
            guard let free = existing.first(where: isFree) else {
                let why = existing.isEmpty ? "there is no zram device and none can be added (no \(ZramDevice.control)/hot_add)"
                    : "every zram device is in use (\(existing.map(\.path).joined(separator: ", "))) and no other can be added (no \(ZramDevice.control)/hot_add)"
                throw ZramError(.zramUnavailable(why), path: "/sys/block")
            }
            return (free, false)
        case .named(let device):
            guard device.exists else { throw ZramError(.noSuchDevice(existing: ZramDevice.all().map(\.path)), path: device.path) }
            try checkFree(device)
            return (device, false)
        }
    }

    /// Throws ``ZramError/Reason/deviceBusy(_:)`` unless `device` is free.
    static func checkFree(_ device: ZramDevice) throws(ZramError) {
        if try SwapArea.isActive(device.path) {
            throw ZramError(.deviceBusy("it is an active swap area already (/proc/swaps)"), path: device.path)
        }
        let size = try device.diskSize()
        guard size == 0 else {
            throw ZramError(.deviceBusy("it is set up already (disksize \(ByteSize(bytes: size)))"), path: device.path)
        }
    }

    /// Algorithm, size, header, swapon; `sized` once the size is set (the
    /// device is then mmpolicy's to reset).
    static func configure(_ device: ZramDevice, _ record: ZramSwapRecord, _ header: SwapHeader, sized: inout Bool) throws(ZramError) {
        try device.select(algorithm: record.algorithm)
        try device.setDiskSize(record.sizeBytes)
        sized = true
        // Someone who selected another algorithm between the two writes would have had it used.
        let selected = try device.algorithms().selected
        guard selected == record.algorithm else {
            throw ZramError(.deviceBusy("someone else selected its algorithm (\(selected ?? "none")) while mmpolicy set it up"), path: device.path)
        }
        do {
            // Closed before swapon, which claims the device exclusively too.
            let file = try BlockDeviceFile(path: device.path, writable: true)
            try file.write(header.bytes, at: 0)
        }
        try SwapArea.on(device.path, priority: record.priority)
    }
}
