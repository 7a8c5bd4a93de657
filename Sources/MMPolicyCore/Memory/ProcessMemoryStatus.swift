/// How much of a process's memory is resident, by kind, and how much is in
/// swap: RssAnon, RssFile, RssShmem and VmSwap of /proc/PID/status.
///
/// Tiering checks its actions with it: after MADV_PAGEOUT a process's
/// anonymous memory moves from `rssAnonBytes` to `swapBytes`. `swapBytes`
/// counts swap entries in the page tables: pages read back by MADV_WILLNEED
/// stay counted until the process touches them.
public struct ProcessMemoryStatus: Sendable, Equatable {
    /// Resident anonymous memory (RssAnon).
    public var rssAnonBytes: UInt64
    /// Resident file-backed memory (RssFile).
    public var rssFileBytes: UInt64
    /// Resident shared memory: shmem, tmpfs, MAP_SHARED|MAP_ANONYMOUS (RssShmem).
    public var rssShmemBytes: UInt64
    /// Anonymous memory swapped out, shared memory excluded (VmSwap).
    public var swapBytes: UInt64

    public init(rssAnonBytes: UInt64, rssFileBytes: UInt64, rssShmemBytes: UInt64, swapBytes: UInt64) {
        self.rssAnonBytes = rssAnonBytes
        self.rssFileBytes = rssFileBytes
        self.rssShmemBytes = rssShmemBytes
        self.swapBytes = swapBytes
    }

    /// All resident memory (VmRSS is the same sum).
    public var residentBytes: UInt64 { rssAnonBytes + rssFileBytes + rssShmemBytes }

    /// Parses the text of /proc/PID/status ("Key:\t   1234 kB" lines).
    /// A zombie has no memory lines and gives ESRCH; a kernel thread has
    /// none either and gives EBADMSG.
    public init(parsing text: String, target: String = "/proc/PID/status") throws(SystemCallError) {
        var values: [Substring: UInt64] = [:]
        var state: Substring = ""
        for line in text.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon]
            let words = line[line.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\t" })
            if key == "State" { state = words.first ?? ""; continue }
            guard key.hasPrefix("Rss") || key == "VmSwap", words.count == 2, words[1] == "kB",
                  let kib = UInt64(words[0]) else { continue }
            values[key] = kib * 1024
        }
        if state == "Z" || state == "X" {
            throw SystemCallError(operation: "parse", target: target, errno: .noSuchProcess,
                                  fix: "The process has exited (state \(state)); it holds no memory any more.")
        }
        func value(_ key: Substring) throws(SystemCallError) -> UInt64 {
            guard let found = values[key] else {
                throw SystemCallError.format(target, "The '\(key):' line is missing: a kernel thread has no user memory, and RssAnon/RssFile/RssShmem need Linux 4.5.")
            }
            return found
        }
        self.init(rssAnonBytes: try value("RssAnon"), rssFileBytes: try value("RssFile"),
                  rssShmemBytes: try value("RssShmem"), swapBytes: try value("VmSwap"))
    }

    /// Reads /proc/PID/status. A process that is gone gives ESRCH or ENOENT
    /// (`SystemCallError.meansGone`).
    public static func read(pid: Int32) throws(SystemCallError) -> ProcessMemoryStatus {
        let path = "/proc/\(pid)/status"
        let text = try KernelFile.read(path, fix: { code in
            code == .noSuchProcess || code == .noSuchFileOrDirectory ? "Process \(pid) no longer exists." : KernelFile.defaultFix(code)
        })
        return try ProcessMemoryStatus(parsing: text, target: path)
    }

    /// Reads the status of the process `pidfd` refers to, checking that it
    /// was still alive after the read (see `PidFD.checkAlive(after:)`).
    public static func read(_ pidfd: PidFD) throws(SystemCallError) -> ProcessMemoryStatus {
        let status = try read(pid: pidfd.pid)
        try pidfd.checkAlive(after: "/proc/\(pidfd.pid)/status")
        return status
    }
}
