import MMPolicyCore

/// One engine per registered kind, made and started together when the
/// daemon starts; each is then a stage of the daemon's service group,
/// stopped after every policy is unloaded.
///
/// It is the daemon's only link to the kinds: the policy manager asks it for
/// the engine of a manifest's kind and never names a kind itself, so a kind
/// added to the registry runs without a change here.
public final class KindEngines: Sendable {
    private let engines: [(kind: PolicyKind, engine: any KindEngine)]

    /// Makes every kind's engine in registry order; nothing is started yet.
    public init(registry: KindRegistry, environment: KindEnvironment) throws {
        engines = try registry.definitions.map { definition in
            var own = environment
            own.summarize = { definition.summarize($0) }
            return (definition.kind, try definition.makeEngine(own))
        }
    }

    /// The kinds this daemon runs, in registry order.
    public var kinds: [PolicyKind] { engines.map(\.kind) }

    /// Every kind's engine, in registry order.
    public var all: [(kind: PolicyKind, engine: any KindEngine)] { engines }

    public func engine(for kind: PolicyKind) -> (any KindEngine)? {
        engines.first { $0.kind == kind }?.engine
    }

    /// Starts every engine in order; on a failure stops the ones started and rethrows.
    public func start() throws {
        var started: [any KindEngine] = []
        do {
            for (_, engine) in engines {
                try engine.start()
                started.append(engine)
            }
        } catch {
            for engine in started.reversed() { engine.stop() }
            throw error
        }
    }

}
