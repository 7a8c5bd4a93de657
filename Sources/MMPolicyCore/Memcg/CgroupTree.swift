#if canImport(Glibc)
import Glibc
#endif

/// Walks a cgroup subtree in the file system: the groups in it, the group
/// with a given id, and every process in it.
///
/// A policy's scope is a subtree, and the BPF side names cgroups by id (the
/// directory's inode number on cgroupfs), so the engine needs to go from a
/// scope to its groups and processes and from an id back to a directory.
public enum CgroupTree {
    /// Whether directory `path` is `ancestor` or below it.
    public static func isWithin(_ path: String, _ ancestor: String) -> Bool {
        let a = ancestor.hasSuffix("/") ? String(ancestor.dropLast()) : ancestor
        return path == a || path.hasPrefix(a + "/")
    }

    /// Every cgroup directory in the subtree at `path`, parents before their
    /// children. Files are skipped and symbolic links are not followed.
    /// Groups removed during the walk are left out.

    public static func descendants(of path: String, includingSelf: Bool = true) -> [String] {
        let root = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
        var info = stat()
        guard lstat(root, &info) == 0, info.st_mode & S_IFMT == S_IFDIR else { return [] }
        var result: [String] = includingSelf ? [root] : []
        // Breadth-first: a directory is listed before anything below it.
        var queue = [root], next = 0
        while next < queue.count {
            let directory = queue[next]
            next += 1
            for child in subdirectories(of: directory) {
                result.append(child)
                queue.append(child)
            }
        }
        return result
    }

    /// The directory in the subtree at `root` whose inode number (the cgroup
    /// id the kernel and BPF use) is `id`, or nil.
    public static func directory(withID id: UInt64, under root: String) -> String? {
        for directory in descendants(of: root) {
            var info = stat()
            if lstat(directory, &info) == 0, UInt64(info.st_ino) == id { return directory }
        }
        return nil
    }

    /// The processes of every group in the subtree at `path` (each group's
    /// cgroup.procs), without duplicates, in walk order.
    public static func processes(under path: String) -> [Int32] {
        var seen = Set<Int32>()
        var result: [Int32] = []
        for directory in descendants(of: path) {
            guard let pids = try? KernelFile.readPIDs(directory + "/cgroup.procs") else { continue }
            for pid in pids where seen.insert(pid).inserted { result.append(pid) }
        }
        return result
    }

    /// Sorted subdirectories of `directory`, not following symbolic links.
    static func subdirectories(of directory: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var children: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard name != ".", name != ".." else { continue }
            let child = directory + "/" + name
            switch Int32(entry.pointee.d_type) {
            case Int32(DT_DIR): children.append(child)
            case Int32(DT_UNKNOWN):
                var info = stat()
                if lstat(child, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { children.append(child) }
            default: continue  // files, symbolic links, ...
            }
        }
        return children.sorted()
    }
}
