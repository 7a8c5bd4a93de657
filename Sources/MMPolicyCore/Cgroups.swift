import CMMPolicyABI
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Where the memory controller is mounted: the cgroup v1 `memory` hierarchy
/// (this project's build machines) or the unified v2 hierarchy (modern
/// distributions). Scopes and memcg knobs are resolved against it.
public struct MemoryCgroupMount: Sendable, Equatable {
    public enum Version: Sendable, Equatable { case v1, v2 }
    public var version: Version
    public var path: String

    public init(version: Version, path: String) {
        self.version = version
        self.path = path
    }

    /// Finds the memory controller's mount in `mountinfo` (default: this process's).
    public static func detect(mountinfo: String? = nil) -> MemoryCgroupMount? {
        guard let text = mountinfo ?? (try? String(contentsOfProcFile: "/proc/self/mountinfo")) else { return nil }
        var v2: String?
        for line in text.split(separator: "\n") {
            // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
            let halves = line.split(separator: " - ", maxSplits: 1)
            guard halves.count == 2 else { continue }
            let left = halves[0].split(separator: " "), right = halves[1].split(separator: " ")
            guard left.count >= 5, right.count >= 3 else { continue }
            let mountPoint = unescapeMountPath(String(left[4]))
            if right[0] == "cgroup", right[2].split(separator: ",").contains("memory") {
                return MemoryCgroupMount(version: .v1, path: mountPoint)
            }
            if right[0] == "cgroup2", v2 == nil { v2 = mountPoint }
        }
        if let v2, let controllers = try? String(contentsOfProcFile: v2 + "/cgroup.controllers"),
           controllers.split(whereSeparator: { $0 == " " || $0 == "\n" }).contains("memory") {
            return MemoryCgroupMount(version: .v2, path: v2)
        }
        return nil
    }

    static func unescapeMountPath(_ path: String) -> String {
        // mountinfo escapes space, tab, newline and backslash as \ooo.
        var out = "", chars = Array(path), i = 0
        while i < chars.count {
            if chars[i] == "\\", i + 3 < chars.count, let code = UInt8(String(chars[(i + 1)...(i + 3)]), radix: 8) {
                out.append(Character(UnicodeScalar(code))); i += 4
            } else { out.append(chars[i]); i += 1 }
        }
        return out
    }

    var hierarchy: UInt32 {
        version == .v1 ? UInt32(MMPOLICY_HIERARCHY_V1_MEMORY.rawValue) : UInt32(MMPOLICY_HIERARCHY_V2.rawValue)
    }
}

/// A policy's scope resolved against the running system: the whole system,
/// or one existing memory cgroup with the id and depth the BPF side compares
/// tasks against.
public struct ResolvedScope: Sendable, Equatable, CustomStringConvertible {
    /// nil for the system scope.
    public var cgroupPath: String?
    public var cgroupID: UInt64
    public var level: UInt32
    public var mount: MemoryCgroupMount?

    public static let system = ResolvedScope(cgroupPath: nil, cgroupID: 0, level: 0, mount: nil)

    /// A scope as given, not looked up (``cgroup(_:mount:)`` resolves a real one).
    public init(cgroupPath: String?, cgroupID: UInt64, level: UInt32, mount: MemoryCgroupMount?) {
        self.cgroupPath = cgroupPath
        self.cgroupID = cgroupID
        self.level = level
        self.mount = mount
    }

    public var description: String { cgroupPath ?? "system" }

    /// The scope as the ABI carries it into a callback.
    public var abi: mmpolicy_scope {
        guard let mount, cgroupPath != nil else {
            return mmpolicy_scope(cgroup_id: 0, hierarchy: UInt32(MMPOLICY_HIERARCHY_SYSTEM.rawValue), level: 0)
        }
        return mmpolicy_scope(cgroup_id: cgroupID, hierarchy: mount.hierarchy, level: level)
    }

    /// Resolves cgroup `path`: absolute (under the memory mount) or relative
    /// to the memory mount's root. Throws if there is no memory controller or
    /// the cgroup does not exist.
    public static func cgroup(_ path: String, mount: MemoryCgroupMount? = .detect()) throws(ScopeError) -> ResolvedScope {
        guard let mount else {
            throw ScopeError(scope: path, reason: "this system has no memory cgroup controller mounted (neither a v1 'memory' hierarchy nor cgroup2 with 'memory' in cgroup.controllers)",
                             fix: "Mount the memory controller, or use scope 'system'")
        }
        let root = mount.path.hasSuffix("/") ? String(mount.path.dropLast()) : mount.path
        var relative = path
        if path.hasPrefix("/") {
            guard path == root || path.hasPrefix(root + "/") else {
                throw ScopeError(scope: path, reason: "it is not under the memory cgroup mount \(root) (cgroup \(mount.version))",
                                 fix: "Give a path under \(root), or one relative to it such as 'workloads/batch'")
            }
            relative = String(path.dropFirst(root.count))
        }
        let components = relative.split(separator: "/").map(String.init)
        if components.contains("..") || components.contains(".") {
            throw ScopeError(scope: path, reason: "it contains '.' or '..'", fix: "Give the cgroup's plain path")
        }
        let full = ([root] + components).joined(separator: "/")
        var st = stat()
        guard stat(full, &st) == 0 else {
            let code = Errno(rawValue: errno)
            throw ScopeError(scope: path, reason: "cgroup \(full) does not exist (\(code.description))",
                             fix: "Create it (mkdir \(full)) or give an existing cgroup; `ls \(root)` shows them")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR else {
            throw ScopeError(scope: path, reason: "\(full) is not a cgroup directory", fix: "Give a cgroup directory")
        }
        return ResolvedScope(cgroupPath: full, cgroupID: UInt64(st.st_ino), level: UInt32(components.count), mount: mount)
    }
}

/// A scope that names no usable cgroup.
public struct ScopeError: Error, Sendable, CustomStringConvertible {
    public var scope: String
    public var reason: String
    public var fix: String
    public var description: String { "scope '\(scope)' cannot be used: \(reason). \(fix)." }
}
