import BPFKit
import Logging
import MMPolicyCore

/// The daemon's side of `mmpolicy tier`: sets up zram swap an operator
/// asks for, tears it down again, and reports the slow tier.
///
/// What an operator set up is the operator's, not a policy's knob: it is
/// journaled under ``KnobJournal/operatorOwner``, which no restore of
/// everything touches (shutdown, the guardian, the next start), so it stays
/// across daemon stops, crashes and restarts until `teardown-zram`; the
/// journal entry is how a restarted daemon still knows it set it up.
/// Teardown undoes exactly that set-up and nothing else: it refuses a
/// device mmpolicy did not set up, one a policy's manifest set up (it goes
/// with the policy), and the last active swap area while a tiering policy
/// is loaded (that policy relies on it).
struct ZramControl: Sendable {
    let journal: KnobJournal
    let manager: PolicyManager
    let recorder: EventRecorder
    let logger: Logger

    /// `setupZram`: sets the device up and journals it.
    func setUp(_ request: ZramRequest?, peer: PeerCredentials) throws(ZramError) -> ZramSetupStatus {
        guard let request, let sizeBytes = request.sizeBytes else {
            throw ZramError(.sizeNotUnderstood("(none)"), path: "zram size")
        }
        let choice: ZramSwapRequest.DeviceChoice
        switch request.device {
        case nil: choice = .any
        case "new": choice = .new
        case let text?:
            guard let device = ZramDevice(naming: text) else {
                throw ZramError(.noSuchDevice(existing: ZramDevice.all().map(\.path)), path: text)
            }
            choice = .named(device)
        }
        let swapRequest = ZramSwapRequest(size: ByteSize(bytes: sizeBytes), algorithm: request.algorithm ?? ZramSwapRequest.defaultAlgorithm,
                                          priority: request.priority ?? ZramSwapRequest.defaultPriority, device: choice)
        let record = try ZramSwapSetup.setUp(swapRequest, owner: KnobJournal.operatorOwner, journal: journal)
        let summary = "set up zram swap \(record.summary) on request (uid \(peer.uid), pid \(peer.pid)); journaled, it stays across daemon restarts until `mmpolicy tier teardown-zram \(record.device.path)`"
        note(summary)
        logger.notice("\(summary)")
        let entry = journal.entries(owner: KnobJournal.operatorOwner).first { $0.path == record.journalKey }
        return Self.status(record, owner: KnobJournal.operatorOwner, active: true, setUpNs: entry?.recordedNs ?? wallClockNanoseconds())
    }

    /// `teardownZram`: tears down a device set up on request.
    func tearDown(_ request: ZramRequest?, peer: PeerCredentials) async throws(ZramError) -> ZramSetupStatus {
        let setUp = Self.records(journal.entries())
        let device: ZramDevice
        if let text = request?.device {
            guard let named = ZramDevice(naming: text) else {
                throw ZramError(.notSetUpByMMPolicy(setUp: setUp.map(\.record.device.path)), path: text)
            }
            device = named
        } else {
            let requested = setUp.filter { $0.entry.isOperatorRequest }
            guard requested.count == 1 else { throw ZramError(.whichDevice(setUp: requested.map(\.record.device.path)), path: "") }
            device = requested[0].record.device
        }
        guard let found = setUp.first(where: { $0.record.device == device }) else {
            throw ZramError(.notSetUpByMMPolicy(setUp: setUp.map(\.record.device.path)), path: device.path)
        }
        guard found.entry.isOperatorRequest else { throw ZramError(.ownedByPolicy(found.entry.owner), path: device.path) }
        let relying = await manager.policiesNeedingSwap()
        if let refusal = Self.lastSwapRefusal(device: device, active: SlowTier.current().devices.map(\.path), relying: relying) {
            throw refusal
        }
        let record = found.record
        let outcome = try ZramSwapSetup.tearDownJournaled(record, owner: KnobJournal.operatorOwner, journal: journal)
        let done: String
        switch outcome {
        case .tornDown: done = "swapped off and \(record.hotAdded ? "removed (mmpolicy had added it)" : "reset (it existed before)")"
        case .gone(let why): done = "nothing to undo: \(why); its journal entry is forgotten"
        }
        let summary = "tore down zram swap \(record.summary) on request (uid \(peer.uid), pid \(peer.pid)): \(done)"
        note(summary)
        logger.notice("\(summary)")
        return Self.status(record, owner: found.entry.owner, active: false, setUpNs: found.entry.recordedNs, outcome: done)
    }

    /// `tierStatus`.
    func status() async -> TierStatus {
        let tier = SlowTier.current()
        let setUp = Self.records(journal.entries())
        let active = Set(tier.devices.map(\.path))
        let areas = tier.devices.map { device in
            SwapAreaStatus(
                path: device.path, type: device.type, sizeBytes: device.sizeBytes, usedBytes: device.usedBytes, priority: device.priority,
                zram: device.zram.map { stats in
                    ZramAreaStatus(storedBytes: stats.storedBytes, compressedBytes: stats.compressedBytes, memoryBytes: stats.usedBytes,
                                   algorithm: ZramDevice(naming: device.path).flatMap { try? $0.algorithms().selected })
                },
                setUpFor: setUp.first { $0.record.device.path == device.path }?.entry.owner)
        }
        let zram = setUp.map { Self.status($0.record, owner: $0.entry.owner, active: active.contains($0.record.device.path), setUpNs: $0.entry.recordedNs) }
        return TierStatus(areas: areas, zram: zram, relyingPolicies: await manager.policiesNeedingSwap(),
                          unreadable: tier.unreadable.isEmpty ? nil : tier.unreadable)
    }

    /// The refusal to tear down `device` when it is the last active swap
    /// area (of `active`) and policies rely on swap; nil when it may go.
    static func lastSwapRefusal(device: ZramDevice, active: [String], relying: [String]) -> ZramError? {
        guard !relying.isEmpty, active.contains(device.path), active.allSatisfy({ $0 == device.path }) else { return nil }
        return ZramError(.lastSwapOfPolicies(relying), path: device.path)
    }

    /// The zram swap devices a journal records, with their entries.
    static func records(_ entries: [KnobJournalEntry]) -> [(entry: KnobJournalEntry, record: ZramSwapRecord)] {
        entries.compactMap { entry in ZramSwapRecord(entry).map { (entry, $0) } }
    }

    static func status(_ record: ZramSwapRecord, owner: String, active: Bool, setUpNs: Int64, outcome: String? = nil) -> ZramSetupStatus {
        ZramSetupStatus(device: record.device.path, owner: owner, hotAdded: record.hotAdded, uuid: record.uuid, sizeBytes: record.sizeBytes,
                        algorithm: record.algorithm, priority: record.priority, active: active, setUpNs: setUpNs, outcome: outcome)
    }

    private func note(_ summary: String) {
        recorder.record(EventRecord(timeNs: wallClockNanoseconds(), type: .note, policy: nil, summary: summary))
    }
}
