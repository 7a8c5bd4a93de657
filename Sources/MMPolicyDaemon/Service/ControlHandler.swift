import BPFKit
import Logging
import MMPolicyCore

/// Answers control-socket requests from the policy manager and the store.
public struct ControlHandler: Sendable {
    let manager: PolicyManager
    let store: StateStore
    let recorder: EventRecorder
    let watchdog: Watchdog
    let daemon: DaemonInfo
    let zram: ZramControl

    /// `journal` must be the one the kinds' engines write through (its lock
    /// orders zram set-ups, teardowns and restores).
    public init(manager: PolicyManager, store: StateStore, recorder: EventRecorder, watchdog: Watchdog, daemon: DaemonInfo,
                journal: KnobJournal, logger: Logger) {
        self.manager = manager
        self.store = store
        self.recorder = recorder
        self.watchdog = watchdog
        self.daemon = daemon
        self.zram = ZramControl(journal: journal, manager: manager, recorder: recorder, logger: logger)
    }

    public func handle(_ request: ControlRequest, peer: PeerCredentials) async -> ControlResponse {
        do {
            switch request.command {
            case .ping:
                return ControlResponse(daemon: daemon)
            case .load:
                guard let load = request.load else { return .failure("a load request needs a `load` object naming the policy.") }
                let status = try await manager.load(load)
                return ControlResponse(daemon: daemon, policies: [status])
            case .unload:
                guard let name = request.name else { return .failure("an unload request needs the policy's `name`.") }
                try await manager.unload(name, reason: "unloaded by request (uid \(peer.uid), pid \(peer.pid))")
                return ControlResponse(daemon: daemon)
            case .status:
                await recorder.flush()
                let policies = await manager.statuses(history: max(0, min(request.history ?? 0, 300)))
                let loaded = Set(policies.map(\.name))
                let dayAgo = wallClockNanoseconds() - 86_400 * 1_000_000_000
                let exits = (try? store.recentExits(sinceNs: dayAgo))?.filter { !loaded.contains($0.policy ?? "") }
                let failures = await manager.failures()
                var response = ControlResponse(daemon: daemon, policies: policies, exits: exits, watchdog: watchdog.cost,
                                               failedPolicies: failures.isEmpty ? nil : failures)
                let lost = recorder.lostEventCount
                response.lostEvents = lost > 0 ? lost : nil
                response.stateProblems = store.health.problems.nilIfEmpty
                return response
            case .events:
                // What was recorded up to now is visible to this query.
                await recorder.flush()
                return ControlResponse(events: try store.events(request.query ?? EventQuery()))
            case .setupZram:
                var response = ControlResponse()
                response.zram = try zram.setUp(request.zram, peer: peer)
                return response
            case .teardownZram:
                var response = ControlResponse()
                response.zram = try await zram.tearDown(request.zram, peer: peer)
                return response
            case .tierStatus:
                var response = ControlResponse()
                response.tier = await zram.status()
                return response
            }
        } catch let error as DaemonRequestError {
            return .failure(error.description)
        } catch {
            return .failure("\(error)")
        }
    }
}
