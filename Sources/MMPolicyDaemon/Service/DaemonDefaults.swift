/// Namespace for the daemon's defaults.
public enum DaemonDefaults {
    public static let socketPath = "/run/mmpolicy/mmpolicy.sock"
    public static let stateDirectory = "/var/lib/mmpolicy"
    public static let pinDirectory = "/sys/fs/bpf/mmpolicy"
}
