import MMPolicyCore

/// The rules a policy gets from the guard table (``GuardTable``: the shared
/// entries plus its kind's own, with its kind's defaults) and its
/// manifest's `[guards]`.
///
/// A manifest value replaces the default for that guard, tighter or looser;
/// a manifest may also turn on a guard that is off for its kind.
public enum GuardDefaults {
    /// Consecutive breached windows before a guard trips, when a manifest
    /// does not say (`breach_windows` in the guard table).
    public static let breachWindows = Int(GuardTable.sharedEntry("breach_windows")?.sharedDefault ?? 3)
    /// Windows a ``GuardMonitor`` keeps for `mmpolicy status --watch`: 5 min of 1 s windows.
    public static let historyWindows = 300

    /// The rules for a policy of `definition`'s kind with manifest `[guards]`
    /// `settings`: every per-window guard with a threshold, the manifest's
    /// where it sets one, else the kind's default. In table order (shared
    /// entries, then the kind's own). With no definition, the shared table's
    /// defaults alone.
    public static func rules(for definition: (any PolicyKindDefinition)?, settings: GuardSettings = GuardSettings()) -> [GuardRule] {
        GuardTable.entries(for: definition).compactMap { entry in
            guard let metric = entry.metric,
                  let threshold = settings[entry.key] ?? GuardTable.defaultValue(of: entry, for: definition) else { return nil }
            return GuardRule(name: entry.key, metric: metric, comparator: entry.comparator, threshold: threshold,
                             minimumActivity: entry.minimumActivity)
        }
    }

    /// The manifest's breach_windows, or the default.
    public static func breachWindows(_ settings: GuardSettings) -> Int {
        max(1, settings.breachWindows ?? breachWindows)
    }
}
