import MMPolicyCore

/// Puts back what a daemon that is gone left changed: every journaled knob,
/// or, when the journal cannot be read, the kernel defaults that can be
/// identified without it (``OOMKillerSweep``). One implementation for the
/// daemon's start and for its guardian.
///
/// The rule for the identifiable defaults: every cgroup v1 memcg whose
/// kernel OOM killer is off (`oom_kill_disable 1`) under the cgroup v1
/// scopes of the desired set (read from the same database, or salvaged from
/// a damaged one), because only there can this daemon have turned it off;
/// when the desired set cannot be read either, every such memcg of the
/// whole v1 hierarchy. It is reset to 0, the kernel's default. That is the
/// safe side: a memcg wrongly reset has the kernel's own OOM killer back (a
/// userspace OOM handler other than mmpolicy loses its say there; one task is
/// killed by the kernel's rule instead of the handler's), while a memcg
/// wrongly left off keeps every task that reaches its limit waiting forever
/// with nobody to resolve the OOM, which is what the journal exists to
/// prevent. Other knobs (oom_score_adj of a process on cgroup v2) cannot be
/// identified without the journal and are left as they are; none of them can
/// make a task wait.
struct KnobRecovery {
    /// Where the journaled originals come from.
    enum Source {
        /// A journal to read and restore from (the store's, or entries salvaged from a damaged one).
        case journal(KnobJournal)
        /// No journal can be read, and why.
        case unreadable(String)
    }

    /// The sweep done because the journal could not be read.
    struct Sweep: Sendable {
        var journalError: String
        var roots: [String]
        /// The rule applied, in words, for the log.
        var rule: String
        var result: OOMKillerSweep.Result
    }

    /// What ``run(_:desiredSet:mount:)`` did.
    struct Outcome: Sendable {
        var restoration = KnobRestoration()
        /// Set when the journal could not be read and the sweep ran instead.
        var sweep: Sweep?

        /// Knobs that could not be put back (journaled ones stay journaled).
        var failures: [String] {
            restoration.failures.filter { $0.path != "(journal)" }.map(\.description) + (sweep?.result.failures ?? [])
        }
        /// Whether anything was found changed or failed.
        var didAnything: Bool {
            !(restoration.restored.isEmpty && restoration.inherited.isEmpty && restoration.vanished.isEmpty && failures.isEmpty)
                || sweep.map { !$0.result.reset.isEmpty } ?? false
        }
    }

    /// Restores from `source`; if it cannot be read, sweeps the memcgs the
    /// rule above names (`desiredSet` is read only then).
    static func run(_ source: Source, desiredSet: () -> Result<[DesiredPolicy], StateStoreError>,
                    mount: MemoryCgroupMount?) -> Outcome {
        var outcome = Outcome()
        let journalError: String
        switch source {
        case .journal(let journal):
            outcome.restoration = journal.restoreReporting()
            guard let error = outcome.restoration.journalError else { return outcome }
            journalError = error
        case .unreadable(let error):
            journalError = error
        }
        let (roots, rule) = sweepRoots(desiredSet: desiredSet(), mount: mount)
        outcome.sweep = Sweep(journalError: journalError, roots: roots, rule: rule, result: OOMKillerSweep.run(roots: roots))
        return outcome
    }

    /// Where the kernel OOM killer may have been turned off by this daemon,
    /// as far as `desiredSet` tells, and the rule in words.
    static func sweepRoots(desiredSet: Result<[DesiredPolicy], StateStoreError>,
                           mount: MemoryCgroupMount?) -> (roots: [String], rule: String) {
        guard let mount, mount.version == .v1 else {
            return ([], "there is no cgroup v1 memory hierarchy, so no memcg's kernel OOM killer can have been turned off")
        }
        let root = mount.path.hasSuffix("/") ? String(mount.path.dropLast()) : mount.path
        switch desiredSet {
        case .failure(let error):
            return ([root], "the desired set cannot be read either (\(error.summary)), so every memcg of the v1 hierarchy \(root) whose kernel OOM killer was off got it back")
        case .success(let policies):
            var scopes = Set(policies.map(\.scope).filter { $0 == root || $0.hasPrefix(root + "/") })
            // A scope inside another is swept with it.
            scopes = scopes.filter { scope in !scopes.contains { $0 != scope && scope.hasPrefix($0 + "/") } }
            let roots = scopes.sorted()
            if roots.isEmpty {
                return ([], "the desired set has no cgroup v1 scope, so this daemon turned no memcg's kernel OOM killer off")
            }
            return (roots, "every memcg under the desired set's cgroup v1 scopes (\(roots.joined(separator: ", "))) whose kernel OOM killer was off got it back")
        }
    }

    /// One line for the log and the audit trail about the sweep.
    static func describe(_ sweep: Sweep) -> String {
        var text = "the knob journal could not be read (\(sweep.journalError)), so the kernel defaults were restored instead: "
        text += "\(sweep.rule) (oom_kill_disable=0, the kernel default)"
        let reset = sweep.result.reset
        text += reset.isEmpty ? "; none had it off (\(sweep.result.examined) examined)"
            : "; \(reset.count) of \(sweep.result.examined) memcg(s) reset: \(reset.joined(separator: ", "))"
        if !sweep.result.failures.isEmpty {
            text += "; \(sweep.result.failures.count) FAILED: " + sweep.result.failures.joined(separator: " ")
        }
        return text + ". Any other knob the journal held (oom_score_adj of a steered process) stays as it is."
    }
}
