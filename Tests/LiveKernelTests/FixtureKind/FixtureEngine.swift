import BPFKit
import MMPolicyCore

#if canImport(Glibc)
import Glibc
#endif

/// `struct mmpolicy_fixture_ctx` of Tests/Fixtures/bpf/fixture_kind.bpf.c.
struct FixtureContext: BitwiseCopyable {
    struct Action: BitwiseCopyable {
        var pid: UInt32 = 0
        var op: UInt32 = 0
        var value: UInt64 = 0
    }

    var round: UInt64 = 0
    var daemonTGID: UInt32 = 0
    var maxActions: UInt32 = 4
    var count: UInt32 = 0
    var pad: UInt32 = 0
    var actions: (Action, Action, Action, Action) = (Action(), Action(), Action(), Action())

    var decoded: [FixturePayload.Action] {
        let all = [actions.0, actions.1, actions.2, actions.3]
        return all.prefix(Int(min(count, maxActions))).map { FixturePayload.Action(pid: $0.pid, op: $0.op, value: $0.value) }
    }
}

/// The fixture kind's engine: one ``CommandLoop`` thread that runs every
/// attached policy's `plan` once per period, validates, records and
/// applies. Written only against Core's kind protocols.
final class FixtureEngine: KindEngine {
    struct AttachFailure: Error, CustomStringConvertible {
        var description: String
    }

    enum Command: Sendable {
        case attach(PolicyAttachment, CommandReply<String?>)
        case detach(String, CommandReply<Void>)
    }

    let environment: KindEnvironment
    let actuator: FixtureActuator
    let board = DecisionHealthBoard()
    let loop: CommandLoop<Command>

    init(environment: KindEnvironment, actuator: FixtureActuator) throws {
        self.environment = environment
        self.actuator = actuator
        loop = try CommandLoop(threadName: "mmpolicy-fixture", role: "the fixture kind's engine thread")
    }

    func start() throws {
        try loop.start { [self] loop in FixtureLoop(engine: self).run(loop) }
    }

    func attach(_ attachment: PolicyAttachment) async throws {
        guard let answer = await loop.request({ .attach(attachment, $0) }) else {
            throw AttachFailure(description: "the fixture engine is stopping")
        }
        if let problem = answer { throw AttachFailure(description: "policy '\(attachment.name)' cannot be attached: \(problem)") }
    }

    func detach(name: String) async {
        _ = await loop.request { .detach(name, $0) }
    }

    func health(of name: String) -> DecisionHealth? { board.health(of: name) }

    func stop() { loop.stop() }
}

/// The engine's thread: its policies and their schedule.
final class FixtureLoop {
    struct Attached {
        var attachment: PolicyAttachment
        var plan: BPFProgram
        var periodNs: UInt64
        var deadlineNs: UInt64
        var nextNs: UInt64
        var round: UInt64 = 0
    }

    let engine: FixtureEngine
    var attached: [String: Attached] = [:]

    init(engine: FixtureEngine) { self.engine = engine }

    func run(_ loop: CommandLoop<FixtureEngine.Command>) {
        while true {
            let batch = loop.takeCommands()
            for command in batch.commands { handle(command) }
            if batch.stopping { break }
            let now = monotonicNanoseconds()
            for name in attached.keys.sorted() where attached[name]!.nextNs <= now { runRound(name, t0: now) }
            let next = attached.values.map(\.nextNs).min() ?? now + 1_000_000_000
            loop.wait(untilNs: next)
        }
        for name in attached.keys { engine.board.close(name) }
        attached.removeAll()
    }

    func handle(_ command: FixtureEngine.Command) {
        switch command {
        case .attach(let attachment, let reply):
            guard let slot = attachment.policy.ops.program(for: "plan"), let plan = attachment.policy.object.program(named: slot) else {
                return reply.resume("its ops table binds no plan callback")
            }
            let settings = attachment.manifest?.kindSettings as? FixtureSettings ?? .defaults
            let deadlineMs = attachment.manifest?.guards.deadlineMs ?? 100
            attached[attachment.name] = Attached(attachment: attachment, plan: plan, periodNs: UInt64(settings.periodMs) * 1_000_000,
                                                 deadlineNs: UInt64(deadlineMs) * 1_000_000, nextNs: monotonicNanoseconds())
            engine.board.open(attachment.name)
            reply.resume(nil)
        case .detach(let name, let reply):
            attached.removeValue(forKey: name)
            engine.board.close(name)
            reply.resume()
        }
    }

    func runRound(_ name: String, t0: UInt64) {
        guard var entry = attached[name] else { return }
        entry.round += 1
        entry.nextNs = t0 + entry.periodNs
        attached[name] = entry
        let attachment = entry.attachment
        var record = DecisionRecord(kind: FixtureKind.name, trigger: "period", scope: attachment.scope.description,
                                    origin: attachment.scope.description, mode: attachment.mode, outcome: .fellBack,
                                    wokenBy: "timer")
        var context = FixtureContext(round: entry.round, daemonTGID: UInt32(engine.environment.daemonPID))
        let status: UInt32
        do {
            status = try entry.plan.run(context: &context)
        } catch {
            record.outcome = .error
            record.detail = "plan failed to run: \(error)"
            return finish(record, name: name, health: .error, policy: attachment.policy)
        }
        let decided = monotonicNanoseconds()
        record.timing.decidedUs = Double(decided - t0) / 1000
        let actions = context.decoded
        record.payload = DecisionPayload(FixturePayload(round: entry.round, actions: actions))
        if status != 0 && status != 1 {
            record.outcome = .error
            record.detail = "plan returned \(Int32(bitPattern: status)) (neither MMPOLICY_DECIDED nor MMPOLICY_NO_DECISION)"
            return finish(record, name: name, health: .error, policy: attachment.policy)
        }
        if decided - t0 > entry.deadlineNs {
            record.detail = "plan missed its deadline"
            return finish(record, name: name, health: .deadlineMiss, policy: attachment.policy)
        }
        if status == 1 || actions.isEmpty {
            record.detail = "the policy made no decision"
            return finish(record, name: name, health: .fallback, policy: attachment.policy)
        }
        if let problem = Self.validate(actions, daemonPID: engine.environment.daemonPID) {
            record.outcome = .rejected
            record.detail = problem
            return finish(record, name: name, health: .rejection, policy: attachment.policy)
        }
        if attachment.mode == .observe {
            record.outcome = .observed
            return finish(record, name: name, health: .observed, policy: attachment.policy)
        }
        engine.actuator.apply(actions, policy: name)
        record.timing.set("applied", Double(monotonicNanoseconds() - t0) / 1000)
        record.outcome = .carriedOut
        finish(record, name: name, health: .carriedOut(actions: actions.count), policy: attachment.policy)
    }

    /// Why `actions` may not be carried out, or nil.
    static func validate(_ actions: [FixturePayload.Action], daemonPID: Int32) -> String? {
        for action in actions {
            guard action.op == 1 || action.op == 2 else { return "op \(action.op) is not an operation of the fixture kind (1 or 2)" }
            guard action.pid > 1, Int32(bitPattern: action.pid) != daemonPID else { return "pid \(action.pid) is protected" }
            guard kill(pid_t(action.pid), 0) == 0 || errno == EPERM else { return "pid \(action.pid) is not alive" }
        }
        return nil
    }

    func finish(_ record: DecisionRecord, name: String, health: DecisionHealth.Event, policy: Policy) {
        var record = record
        if record.outcome == .error, let report = (try? policy.errorReport(clear: true)) ?? nil {
            record.policyError = PolicyErrorInfo(code: report.code, message: report.message)
        }
        engine.board.count(health, for: name)
        engine.environment.recordDecision(record, policy: name)
    }
}
